// The daemon's path for one builder, in the order the build hook walks it: the machine
// line, root's ssh config, the key, the network, the host key, the login, the shell, free
// space there, Nix there and what it can build, the builder's health (its daemon, trust,
// max-jobs, ssh file modes), the store ping and a real build. Each tier runs a part of it.
import type { Check } from '../doctor/types.js';
import { forTier, type PathCheck, type Tier } from './check.js';
import type { BuilderFacts } from './facts.js';
import { capabilitiesCheck, derivationCheck, remoteNixCheck } from './checks/builder-nix.js';
import { daemonCheck, jobsCheck, modesCheck, spaceCheck, trustCheck } from './checks/builder-health.js';
import { loginChecks } from './checks/login.js';
import { buildCheck, storePingCheck } from './checks/through-nix.js';
import { uriCheck } from './checks/uri.js';
import { wayInChecks } from './checks/way-in.js';

export const PATH_CHECKS: PathCheck[] = [
  uriCheck,
  ...wayInChecks,
  ...loginChecks,
  // Before Nix there: a full disk is the cause of the SQLite error nix-store then prints.
  spaceCheck,
  remoteNixCheck,
  capabilitiesCheck,
  derivationCheck,
  daemonCheck,
  trustCheck,
  jobsCheck,
  modesCheck,
  storePingCheck,
  buildCheck,
];

export function pathChecks(tier: Tier, withDrv = false): Check<BuilderFacts>[] {
  const all = forTier(PATH_CHECKS, tier);
  return withDrv ? all : all.filter((c) => c.id !== 'derivation');
}
