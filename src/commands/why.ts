// `nixremote why INSTALLABLE…`: where a build of it would go now, derivation by derivation,
// and why not elsewhere; decided by the rules of this Nix's build hook (src/why/model.ts)
// from what is true now: the builders' lines, the slots held, and status's cheap checks of
// the builders that could take something. It builds nothing and changes nothing.
// Exit 0, or 1 when some derivation would fail for want of anywhere to build it; 2 on a usage error.
import * as os from 'node:os';
import { exec } from '../io/exec.js';
import { readText } from '../io/files.js';
import { makeOutput } from '../io/output.js';
import { detectInstall } from '../init/install.js';
import { uriHost, type ParsedMachine } from '../nix/machines-file.js';
import { formatVersion, parseNixVersion } from '../nix/version.js';
import {
  builderStatus,
  fleetWidth,
  heldNow,
  machineTarget,
  reachOf,
  realStatusCtx,
  slotsInUse,
  type BuilderStatus,
} from '../builders/status.js';
import { mapLimit } from '../util/map-limit.js';
import { UsageError } from '../validate.js';
import { applyOverrides, hookBuilders, localSettings, readDrvs, whatWouldBuild } from '../why/gather.js';
import { decide, lineRefuses, type Reach, type WhyMachine } from '../why/model.js';
import { changes } from '../why/advice.js';
import { printWhy, whyJson, type WhyResult } from '../why/report.js';

export interface WhyFlags {
  file?: string;
  attr?: string[];
  maxJobs?: string;
  builders?: string;
  system?: string;
  extraPlatforms?: string;
  systemFeatures?: string;
  check: boolean;
  json?: boolean;
}

export async function whyCommand(installables: string[], flags: WhyFlags): Promise<number> {
  const install = detectInstall();
  if (flags.check && install.multiUser && install.user.uid !== 0)
    throw new UsageError(
      "on a multi-user install the build hook connects with root's ssh key and config; re-run with sudo, or with --no-check to leave the builders' state out",
    );
  const version = exec('nix', ['--version']).then((r) => {
    const v = parseNixVersion(r.stdout);
    if (!v) throw new UsageError('nix --version said nothing readable: is Nix installed and on PATH?');
    return v;
  });
  // The dry run starts at once: of a file it needs no version (installables wait for it).
  const target = { file: flags.file, attrs: flags.attr ?? [], installables };
  const dryRun = whatWouldBuild(exec, version, target);
  dryRun.catch(() => {}); // awaited below, after the version; never unhandled if that fails
  const v = await version;
  // The settings beside the dry run, started before the files are read.
  const settingsRun = localSettings(exec, v);
  settingsRun.catch(() => {});
  const overrides: [string, string][] = [];
  if (flags.maxJobs !== undefined) overrides.push(['max-jobs', flags.maxJobs]);
  if (flags.system !== undefined) overrides.push(['system', flags.system]);
  if (flags.extraPlatforms !== undefined) overrides.push(['extra-platforms', flags.extraPlatforms]);
  if (flags.systemFeatures !== undefined) overrides.push(['system-features', flags.systemFeatures]);
  const who = { multiUser: install.multiUser, home: install.user.home, name: install.user.name };
  const { cfg, builders, ignored, notes } = hookBuilders(readText, process.env, who, v, flags.builders);
  const sctx = realStatusCtx(exec, install);
  const held = heldNow(sctx);
  // A fleet that one round of logins covers is looked at while Nix evaluates (a builder that
  // turns out not to be needed is then logged in to for nothing, and shown as not needed);
  // a bigger one only where a line could take a derivation, once they are known.
  const early =
    flags.check && builders.machines.length <= fleetWidth()
      ? new Map(builders.machines.map((m) => [m.uri, builderStatus(sctx, machineTarget(m), held)]))
      : null;
  // Awaited below when needed; never an unhandled rejection when not.
  for (const p of early?.values() ?? []) p.catch(() => {});

  const [settings, dry] = await Promise.all([settingsRun, dryRun]);
  const local = applyOverrides(settings, overrides, os.availableParallelism());
  const drvs = readDrvs(readText, dry.build);
  const asHookSees = (m: ParsedMachine, reach: Reach): WhyMachine => ({
    name: uriHost(m.uri),
    uri: m.uri,
    // An unset systems field is the hook's own system (machines.cc).
    systems: m.systems.length ? m.systems : [local.system],
    supportedFeatures: m.supportedFeatures,
    mandatoryFeatures: m.mandatoryFeatures,
    maxJobs: m.maxJobs,
    speedFactor: m.speedFactor,
    held: slotsInUse(sctx, m.uri, m.maxJobs, held, v),
    reach,
  });
  // Only the builders that could take one of them are logged in to: the rest are ruled out by their lines.
  const statuses = new Map<string, BuilderStatus>();
  if (flags.check) {
    const wanted = builders.machines.filter((m) => drvs.some((d) => lineRefuses(asHookSees(m, null), d) === null));
    const got = await mapLimit(
      wanted,
      fleetWidth(),
      async (m) => early?.get(m.uri) ?? builderStatus(sctx, machineTarget(m), held),
    );
    for (const s of got) statuses.set(s.uri, s);
  }
  const machines = builders.machines.map((m) => {
    const s = statuses.get(m.uri);
    return asHookSees(m, s ? reachOf(s) : null);
  });
  const verdicts = decide(drvs, local, machines);
  const result: WhyResult = {
    version: v,
    local,
    builders,
    machines,
    statuses,
    checked: flags.check,
    ignored,
    notes,
    dry,
    verdicts,
    changes: changes(verdicts, machines, local),
    files: [...new Set([...cfg.files, ...builders.machines.map((m) => m.source.file)])],
    assumed: [
      `the rules of Nix ${formatVersion(v)}'s build hook`,
      'nothing else starts building here meanwhile',
      'derivations that do not depend on each other start together',
      flags.check ? "the builders' slots and logins stay as they are now" : 'every builder reachable (--no-check)',
    ],
  };
  if (flags.json) process.stdout.write(`${JSON.stringify(whyJson(result), null, 2)}\n`);
  else printWhy(makeOutput(), result);
  // 1 when a derivation would fail for want of anywhere to build it.
  return verdicts.some((x) => x.where === 'fails') ? 1 : 0;
}
