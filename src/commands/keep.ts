// `nixremote disable NAME…`, `nixremote enable NAME…` and `nixremote keep`: builders taken out
// of what Nix uses and put back, so that one that is down costs no build a connect timeout.
// Nix's build hook reads the machines file afresh for each build (build-remote.cc), so no
// daemon restart is needed. Exit 0; 1 when keep found a builder down; 2 on a usage error.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { exec } from '../io/exec.js';
import { readText } from '../io/files.js';
import { lockBuildUserFiles, lockPathFor } from '../io/lock.js';
import { makeOutput } from '../io/output.js';
import { detectInstall, type Install } from '../init/install.js';
import { applyPlan, editFile, renderPlan, StepFailed, type Step } from '../plan/plan.js';
import { planReporter } from '../plan/reporter.js';
import { readRegistry, selectBuilders, type BuilderEntry } from '../builders/registry.js';
import { realRegistryCtx } from '../builders/context.js';
import { fleetStatus, machineTarget, reachOf, realStatusCtx } from '../builders/status.js';
import { keepingWrites, liveMachines, stamp, toggleTakesEffect } from '../builders/keeping.js';
import { parseMachines, uriHost, type Disabled } from '../nix/machines-file.js';
import { UsageError, validatePositiveInt } from '../validate.js';
import {
  KEEPER_MARKERS,
  keeperFiles,
  keeperModuleBody,
  keeperStart,
  keeperStop,
  liveMachinesPath,
  MARK,
  plainPath,
  type KeeperCommand,
} from '../builders/keeper-service.js';
import { rebuildFor, TARGETS, targetByName } from '../targets/index.js';
import { MODULE_HEADER, moduleSystemOf, upsertModuleBlock } from '../nix/nixos-module.js';
import { removeBlock } from '../text/managed-block.js';

export interface KeepFlags {
  dryRun?: boolean;
  why?: string;
  module?: string;
}

function rootOnly(install: Install, what: string): void {
  if (install.multiUser && install.user.uid !== 0)
    throw new UsageError(
      `on a multi-user install the builders live in /etc/nix; re-run with sudo: sudo nixremote ${what}`,
    );
}

/** The plan shown, then applied under the lock. */
async function apply(steps: Step[], flags: { dryRun?: boolean }, out: ReturnType<typeof makeOutput>, home: string) {
  out.info(renderPlan(steps));
  if (flags.dryRun) {
    out.ok('Dry run: nothing was changed.');
    return false;
  }
  const release = await lockBuildUserFiles(lockPathFor(home), out);
  try {
    await applyPlan(steps, { reporter: planReporter(out) });
  } finally {
    release();
  }
  return true;
}

export async function toggleCommand(names: string[], enable: boolean, flags: KeepFlags): Promise<number> {
  const install = detectInstall();
  rootOnly(install, enable ? 'enable' : 'disable');
  const out = makeOutput();
  const reg = readRegistry(realRegistryCtx(install, flags.module));
  const chosen = selectBuilders(reg.builders, names);
  const disable: Disabled | null = enable ? null : { by: 'user', at: stamp(), why: flags.why ?? 'taken out by hand' };
  // A builder the keeper took out, disabled by hand, becomes the user's: keep then leaves it out.
  // On NixOS and nix-darwin the keeper's outs are in its live file, not the module: its next round decides.
  const kept = (b: BuilderEntry) => b.kind === 'module' && b.disabled?.by === 'keep';
  const todo = chosen.filter((b) => (enable ? b.disabled !== null && !kept(b) : b.disabled?.by !== 'user'));
  for (const b of chosen.filter((b) => !todo.includes(b)))
    out.info(
      enable && kept(b)
        ? `${b.name} was taken out by the keeper (${b.disabled!.why}); its next round puts it back once it answers`
        : `${b.name} is ${enable ? 'in use' : 'disabled'} already`,
    );
  const steps: Step[] = keepingWrites(
    todo.map((b) => ({ b, disable })),
    readText,
  );
  if (!steps.length) return 0;
  for (const b of todo.filter((b, i) => todo.findIndex((x) => x.kind === b.kind) === i))
    steps.push(toggleTakesEffect(b, readText));
  if (await apply(steps, flags, out, install.user.home))
    for (const b of todo) out.ok(`${b.name} ${enable ? 'is in use again' : `is disabled: ${disable!.why}`}`);
  return 0;
}

/**
 * One round of the keeper: the cheap checks status runs, side by side, on every managed
 * builder in use and every one the keeper disabled; down ones out, answering ones back.
 */
export async function keepCommand(flags: KeepFlags): Promise<number> {
  const install = detectInstall();
  rootOnly(install, 'keep');
  const out = makeOutput();
  const reg = readRegistry(realRegistryCtx(install, flags.module));
  const watched = reg.builders.filter(
    (b) => b.managed && b.kind === 'machines' && (b.machine !== null || b.disabled?.by === 'keep'),
  );
  // A builder the keeper disabled is tried by the line it would have in use.
  const statuses = await fleetStatus(
    realStatusCtx(exec, install),
    watched.map((b) => ({ ...b, machine: b.machine ?? b.line! })),
  );
  const seen = watched.map((b, i) => ({ b, s: statuses[i]! }));
  const at = stamp();
  const changes: { b: BuilderEntry; disable: Disabled | null; said: string }[] = [];
  for (const { b, s } of seen) {
    const reach = reachOf(s);
    const cannot = reach?.kind === 'unusable';
    if (b.disabled === null && cannot)
      changes.push({ b, disable: { by: 'keep', at, why: reach.why }, said: `disabled ${b.name}: ${reach.why}` });
    else if (b.disabled?.by === 'keep' && !cannot)
      changes.push({ b, disable: null, said: `enabled ${b.name}: it answers again` });
  }
  if (!changes.length) {
    const down = seen.filter(({ b, s }) => b.disabled && reachOf(s)?.kind === 'unusable').length;
    out.info(nothingToChange(seen.length, down));
    return down ? 1 : 0;
  }
  if (flags.dryRun) {
    for (const c of changes) out.info(`keep: would have ${c.said}`);
    return changes.some((c) => c.disable) ? 1 : 0;
  }
  // Under the lock, against the files as they are now: another round may have made a change
  // meanwhile, and a builder disabled by hand since must stay so. Only what still applies is done.
  const release = await lockBuildUserFiles(lockPathFor(install.user.home), out);
  let done: typeof changes = [];
  try {
    const now = readRegistry(realRegistryCtx(install, flags.module)).builders;
    done = changes.flatMap((c) => {
      const b = now.find((x) => x.name === c.b.name && x.managed && x.kind === 'machines');
      if (!b) return [];
      const still = c.disable ? b.disabled === null : b.disabled?.by === 'keep';
      return still ? [{ ...c, b }] : [];
    });
    const steps = keepingWrites(done, readText);
    if (steps.length) await applyPlan(steps, { reporter: { start: () => {}, done: () => {} } });
  } finally {
    release();
  }
  // One line per change, for the log (journald takes stdout under systemd).
  for (const c of done) out.info(`keep: ${c.said}`);
  return changes.some((c) => c.disable) ? 1 : 0;
}

/**
 * One round on NixOS or nix-darwin (the keeper's block in nixremote's module runs it): the
 * live machines file written afresh from the one the configuration built, with the module's
 * builders that are down commented out in nixremote's blocks. Lines of the user's own, and
 * builders disabled by hand, are copied as they are.
 */
export async function keepLiveCommand(flags: KeepFlags & { live: string }): Promise<number> {
  const install = detectInstall();
  rootOnly(install, 'keep');
  const out = makeOutput();
  const live = path.resolve(flags.live);
  const from = path.join(install.confDir, 'machines');
  if (live === from) throw new UsageError(`--live: ${live} is the machines file the configuration writes`);
  const source = readText(from) ?? '';
  const reg = readRegistry(realRegistryCtx(install, flags.module));
  const ours = new Set(
    reg.builders.filter((b) => b.managed && b.kind === 'module' && b.disabled?.by !== 'user').map((b) => b.name),
  );
  const lines = parseMachines(source, from).machines.filter((m) => ours.has(uriHost(m.uri)));
  const statuses = await fleetStatus(realStatusCtx(exec, install), lines.map(machineTarget));
  const downAt = new Map<number, { name: string; why: string }>();
  lines.forEach((m, i) => {
    const reach = reachOf(statuses[i]!);
    if (reach?.kind === 'unusable') downAt.set(m.source.line, { name: uriHost(m.uri), why: reach.why });
  });
  const round = (before: string | null) => liveMachines(source, from, downAt, before, ours);
  const was = readText(live);
  const first = round(was);
  let said = first.said;
  if (flags.dryRun) for (const l of said) out.info(`keep: would have ${l}`);
  else if (first.text !== was) {
    const release = await lockBuildUserFiles(lockPathFor(install.user.home), out);
    try {
      // Against the file as it is under the lock: a round beside this one may have written it.
      const now = readText(live);
      const next = round(now);
      said = next.said;
      if (next.text !== now)
        await applyPlan([editFile('The live machines file', live, now, next.text, { dirMode: 0o755 })], {
          reporter: { start: () => {}, done: () => {} },
        });
      if (now === null) out.info(`keep: wrote ${live}, the builders Nix takes from ${from} without the ones down`);
    } finally {
      release();
    }
    for (const l of said) out.info(`keep: ${l}`);
  }
  if (!said.length) out.info(nothingToChange(lines.length, downAt.size));
  return downAt.size ? 1 : 0;
}

/** The line of a round that changed nothing: how many answer, and how many stay out. */
function nothingToChange(n: number, down: number): string {
  return `keep: ${n - down} of ${n} builder${n === 1 ? '' : 's'} answer${down ? `, ${down} still down and out of use` : ''}; nothing to change`;
}

/** Paths a service command line holds: systemd splits ExecStart at spaces, so none may need quoting. */
function servicePaths(paths: string[]): void {
  for (const p of paths)
    if (!plainPath(p)) throw new UsageError(`${p}: a path the service runs must have no spaces or quotes`);
}

export interface KeeperFlags {
  install?: boolean;
  uninstall?: boolean;
  interval?: string;
  dryRun?: boolean;
  module?: string;
  target?: string;
  live?: string;
}

/**
 * This node and this nixremote by paths that stay: on NixOS and nix-darwin the node running
 * is a store path that a later generation's garbage collection may remove, and the system
 * profile's node is the one that stays.
 */
function keeperPaths(execPath: string, argv1: string): KeeperCommand {
  const profileNode = '/run/current-system/sw/bin/node';
  const node = execPath.startsWith('/nix/store/') && fs.existsSync(profileNode) ? profileNode : execPath;
  return { node, cli: fs.realpathSync(argv1) };
}

/**
 * keep --install on NixOS or nix-darwin: the keeper's block in nixremote's module (the
 * service, and Nix's builders at the live file), applied by the rebuild, never files in /etc.
 */
async function moduleKeeper(
  flags: KeeperFlags,
  target: 'nixos' | 'nix-darwin',
  k: KeeperCommand,
  interval: number,
  install: Install,
  out: ReturnType<typeof makeOutput>,
): Promise<number> {
  const module = path.resolve(flags.module ?? targetByName(target).module!.path);
  const text = readText(module);
  if (text === null || !text.startsWith(MODULE_HEADER))
    throw new UsageError(
      `${module}: ${text === null ? 'no such file' : 'not a module nixremote wrote'}; the keeper goes into the module \`nixremote init --target ${target}\` writes (pass it with --module FILE)`,
    );
  const system = moduleSystemOf(text);
  const rebuild = rebuildFor(system);
  let after: string;
  if (flags.install) {
    servicePaths([k.node, k.cli, module]);
    after = upsertModuleBlock(text, KEEPER_MARKERS, keeperModuleBody(system, k, module, interval)).text;
  } else {
    if (!text.includes(KEEPER_MARKERS.begin)) {
      out.info(`No keeper in ${module}.`);
      return 0;
    }
    after = removeBlock(text, KEEPER_MARKERS).text;
  }
  if (after === text) {
    out.info(`The keeper in ${module} runs every ${interval} s already.`);
    return 0;
  }
  const live = liveMachinesPath(system);
  const steps: Step[] = [
    editFile(`The keeper, in nixremote's module`, module, text, after),
    {
      kind: 'note',
      title: flags.install
        ? `Then run ${rebuild}: it starts the keeper, and Nix takes its builders from ${live}, which each round writes`
        : `Then run ${rebuild}: Nix takes its builders from /etc/nix/machines again`,
    },
  ];
  await apply(steps, flags, out, install.user.home);
  return 0;
}

/** `keep --install` / `--uninstall`: the service that runs a round every --interval seconds. */
export async function keeperCommand(flags: KeeperFlags): Promise<number> {
  if (flags.install && flags.uninstall) throw new UsageError('--install or --uninstall, not both');
  if (flags.live) throw new UsageError('--live is what a round of the installed keeper runs, not a flag of --install');
  const install = detectInstall();
  rootOnly(install, `keep --${flags.install ? 'install' : 'uninstall'}`);
  const target = flags.target ?? install.target;
  const names = TARGETS.map((t) => t.name as string);
  if (!names.includes(target)) throw new UsageError(`--target: '${target}' is not one of ${names.join(', ')}`);
  const out = makeOutput();
  const platform = process.platform;
  const interval = validatePositiveInt(flags.interval ?? '60', '--interval');
  const k = keeperPaths(process.execPath, process.argv[1]!);
  if (target === 'nixos' || target === 'nix-darwin') return moduleKeeper(flags, target, k, interval, install, out);
  if (platform !== 'darwin') servicePaths([k.node, k.cli]);
  const files = keeperFiles(platform, k, interval);
  // Where the service manager runs, init's way: it is told; elsewhere (a container, a chroot) the command is said.
  const managed = platform === 'darwin' || fs.existsSync('/run/systemd/system');
  const run = (title: string, cmd: string): Step =>
    managed
      ? {
          kind: 'command',
          title,
          detail: cmd,
          run: async () => {
            const r = await exec('sh', ['-c', cmd], { timeoutMs: 60_000 });
            if (r.exitCode !== 0) throw new StepFailed('command', `${cmd} failed: ${r.stderr.trim()}`);
          },
        }
      : { kind: 'note', title: `${title}: ${cmd}`, detail: 'the service manager does not run here' };
  const steps: Step[] = [];
  if (flags.install) {
    for (const f of files)
      steps.push(editFile(`The keeper (${path.basename(f.path)})`, f.path, readText(f.path), f.text));
    steps.push(run(`Start it, every ${interval} s`, keeperStart(platform)));
  } else {
    const ours = files.filter((f) => readText(f.path)?.includes(MARK.replace(/^# /, '')));
    if (!ours.length) {
      out.info('No keeper installed by nixremote here.');
      return 0;
    }
    steps.push(run('Stop it', keeperStop(platform)));
    steps.push({
      kind: 'command',
      title: `Remove ${ours.map((f) => f.path).join(', ')}`,
      detail: 'the files nixremote wrote, and only those',
      run: async () => {
        for (const f of ours) fs.rmSync(f.path, { force: true });
      },
    });
  }
  await apply(steps, flags, out, install.user.home);
  return 0;
}
