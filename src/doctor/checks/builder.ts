// The checks for one builder, in the order the Nix daemon's build hook meets them: the
// machine line, root's ssh config, the key, the network, the host key, the login, the
// shell, the remote Nix, what the builder can build, trust, the store ping, and a real
// build. Each observes; none guesses.
import type { Check } from '../types.js';
import type { BuilderState } from './builder-state.js';
import { networkChecks } from './network.js';
import { remoteChecks } from './remote.js';
import { storeChecks } from './store.js';

export { builderState, cleanup, type BuilderState } from './builder-state.js';
export { cannotTake } from './builder-state.js';

export function builderChecks(withDrv = false): Check<BuilderState>[] {
  const all = [...networkChecks, ...remoteChecks, ...storeChecks];
  return withDrv ? all : all.filter((c) => c.id !== 'derivation');
}
