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
import { builderStatus, fleetWidth, heldFlocks, reachOf, realStatusCtx } from '../builders/status.js';
import { keepingWrites, toggleTakesEffect } from '../builders/keeping.js';
import type { Disabled } from '../nix/machines-file.js';
import { mapLimit } from '../util/map-limit.js';
import { UsageError, validatePositiveInt } from '../validate.js';
import { keeperFiles, keeperStart, keeperStop, MARK } from '../builders/keeper-service.js';

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
  const at = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const disable: Disabled | null = enable ? null : { by: 'user', at, why: flags.why ?? 'taken out by hand' };
  // A builder the keeper took out, disabled by hand, becomes the user's: keep then leaves it out.
  const todo = chosen.filter((b) => (enable ? b.disabled !== null : b.disabled?.by !== 'user'));
  for (const b of chosen.filter((b) => !todo.includes(b)))
    out.info(`${b.name} is ${enable ? 'in use' : 'disabled'} already`);
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
  const sctx = realStatusCtx(exec, install);
  const locks = sctx.locks();
  const held = locks === null ? null : heldFlocks(locks);
  const seen = await mapLimit(watched, fleetWidth(), async (b) => ({
    b,
    s: await builderStatus(sctx, { name: b.name, uri: b.uri, maxJobs: b.maxJobs, machine: b.machine ?? b.line! }, held),
  }));
  const at = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
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
    out.info(
      `keep: ${seen.length - down} of ${seen.length} builder${seen.length === 1 ? '' : 's'} answer${down ? `, ${down} still down and out of use` : ''}; nothing to change`,
    );
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

export interface KeeperFlags {
  install?: boolean;
  uninstall?: boolean;
  interval?: string;
  dryRun?: boolean;
}

/** `keep --install` / `--uninstall`: the service that runs a round every --interval seconds. */
export async function keeperCommand(flags: KeeperFlags): Promise<number> {
  if (flags.install && flags.uninstall) throw new UsageError('--install or --uninstall, not both');
  const install = detectInstall();
  rootOnly(install, `keep --${flags.install ? 'install' : 'uninstall'}`);
  if (install.target === 'nixos' || install.target === 'nix-darwin')
    throw new UsageError(
      `on ${install.target === 'nixos' ? 'NixOS' : 'nix-darwin'} the service files are generated from the configuration: nixremote does not write them there yet; run \`nixremote keep\` from a timer of your configuration`,
    );
  const out = makeOutput();
  const platform = process.platform;
  const interval = validatePositiveInt(flags.interval ?? '60', '--interval');
  const k = { node: process.execPath, cli: fs.realpathSync(process.argv[1]!) };
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
