// `nixremote apply FILE` and `nixremote export [NAME…]`: a team's builders in one file
// (src/team/builders-file.ts). apply plans each builder as init would, one after another
// against the files as the ones before will leave them, and applies all of it as one plan:
// each file's diff once, one lock, one backup per file, one rollback; a proof build on each
// builder added or changed. Host keys come from the file: nothing is trusted on first use.
// Exit 0; 1 when a step failed, or (--check) when this machine does not match; 2 on bad input.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { exec } from '../io/exec.js';
import { readText, setReadOverlay, writeAtomic } from '../io/files.js';
import { lockBuildUserFiles, lockPathFor } from '../io/lock.js';
import { makeOutput } from '../io/output.js';
import { inquirerPrompter, type Prompter } from '../io/prompts.js';
import { Answers } from '../init/answers.js';
import { detectInstall } from '../init/install.js';
import type { InitFlags } from '../init/options.js';
import { planInit, type InitPlan } from '../init/wizard.js';
import { applyPlan, renderPlan, type Step, type WriteStep } from '../plan/plan.js';
import { planReporter } from '../plan/reporter.js';
import { realRegistryCtx } from '../builders/context.js';
import { readRegistry, selectBuilders } from '../builders/registry.js';
import { removalWrites } from '../builders/removal.js';
import { formatTeamFile, parseTeamFile, type TeamBuilder, type TeamFile } from '../team/builders-file.js';
import { fingerprint, keyLine } from '../ssh/host-key.js';
import { UsageError } from '../validate.js';
import { readBlock } from '../text/managed-block.js';
import { hostBlockMarkers } from '../ssh/ssh-config.js';

export interface ApplyFlags {
  dryRun?: boolean;
  check?: boolean;
  prune?: boolean;
  passwordStdin?: boolean;
  testBuild: boolean;
  json?: boolean;
}

/** init's flags for one builder of the file: every answer given, nothing asked but a password. */
export function initFlagsOf(b: TeamBuilder, f: TeamFile, a: ApplyFlags): InitFlags {
  const list = (x: string[] | null) => (x === null ? undefined : x.join(',') || '-');
  return {
    host: b.host,
    port: String(b.port),
    user: b.user,
    name: b.name,
    key: f.options.key,
    hostKeyFingerprint: b.hostKeyFingerprint,
    protocol: b.protocol,
    access: b.access,
    restrict: true,
    restrictToNix: b.restrictToNix ?? undefined,
    connectTimeout: f.options.connectTimeout === undefined ? undefined : String(f.options.connectTimeout),
    systems: list(b.systems),
    features: list(b.features),
    mandatoryFeatures: list(b.mandatoryFeatures),
    maxJobs: b.jobs === null ? undefined : String(b.jobs),
    speedFactor: b.speedFactor === null ? undefined : String(b.speedFactor),
    target: f.options.target,
    output: f.options.module,
    testBuild: a.testBuild,
    yes: true,
    dryRun: a.dryRun || a.check,
    passwordStdin: a.passwordStdin,
  };
}

/** Whether a builder's plan changes anything: a file, the builder, a key, the daemon. */
const changes = (steps: Step[]) =>
  steps.some((s) => (s.kind === 'write' ? s.before !== s.after : s.kind !== 'check' && s.kind !== 'note'));

/**
 * The builders' plans as one: each file written once (its first write, carrying the last
 * one's content, at the first one's place), a key made once, a command run once.
 */
export function mergeSteps(steps: Step[]): Step[] {
  const out: Step[] = [];
  const writes = new Map<string, WriteStep>();
  const seen = new Set<string>();
  for (const s of steps) {
    if (s.kind === 'write') {
      const first = writes.get(s.path);
      if (first) {
        first.after = s.after;
        if (!first.title.includes(s.title)) first.title = `${first.title}; ${s.title}`;
        continue;
      }
      const copy = { ...s };
      writes.set(s.path, copy);
      out.push(copy);
      continue;
    }
    const key = s.kind === 'keygen' || s.kind === 'command' || s.kind === 'note' ? `${s.kind} ${s.title}` : null;
    if (key && seen.has(key)) continue;
    if (key) seen.add(key);
    out.push(s);
  }
  return out.filter((s) => s.kind !== 'write' || s.before !== s.after);
}

async function readPasswords(): Promise<string[]> {
  if (process.stdin.isTTY)
    throw new UsageError('--password-stdin: standard input is a terminal; pipe the passwords in, one per line');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/);
}

export async function applyCommand(file: string, flags: ApplyFlags): Promise<number> {
  const text = readText(file);
  if (text === null) throw new UsageError(`${file}: no such file`);
  const team = parseTeamFile(text, file);
  const install = detectInstall();
  if (install.multiUser && install.user.uid !== 0)
    throw new UsageError("on a multi-user install the builders live in /etc/nix and root's ~/.ssh; re-run with sudo");
  const quiet = flags.check || flags.json;
  const out = makeOutput(quiet ? process.stderr : process.stdout);
  const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY) && !flags.passwordStdin;
  let prompter: Prompter | null = null;
  // One password per line, for the builders that need one, in the file's order.
  let passwords: Promise<string[]> | null = null;
  let used = 0;
  const nextPassword = async () => {
    passwords ??= readPasswords();
    const p = (await passwords)[used++];
    if (!p)
      throw new UsageError(`--password-stdin: no password on line ${used} for the ${used}th builder that needs one`);
    return p;
  };
  const atExit: (() => void)[] = [];
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
  };
  process.on('SIGINT', onSigint);
  const release = flags.dryRun || flags.check ? null : await lockBuildUserFiles(lockPathFor(install.user.home), out);
  const plans: InitPlan[] = [];
  const verdicts: { name: string; state: 'matches' | 'differs' | 'added' | 'removed'; files: string[] }[] = [];
  try {
    const before = readRegistry(realRegistryCtx(install, team.options.module)).builders;
    // Each builder planned against the files as the ones before it leave them.
    const overlay = new Map<string, string | null>();
    const all: Step[] = [];
    for (const b of team.builders) {
      out.step(`${b.name}: planning, as init would`);
      setReadOverlay(overlay);
      let plan: InitPlan;
      try {
        plan = await planInit(initFlagsOf(b, team, flags), {
          exec,
          out,
          answers: new Answers({
            yes: true,
            prompter: async () => {
              if (!interactive) return null;
              prompter ??= await inquirerPrompter();
              return prompter;
            },
          }),
          readStdin: nextPassword,
          isInterrupted: () => interrupted,
          beginApply: () => {},
          onExit: (fn) => atExit.push(fn),
          pause: async () => {
            throw new UsageError('apply cannot wait for a key added by hand; give the password (--password-stdin)');
          },
          locked: true,
        });
      } catch (e) {
        if (e instanceof Error) e.message = `builders.${b.name}: ${e.message}`;
        throw e;
      } finally {
        setReadOverlay(null);
      }
      plans.push(plan);
      const changed = changes(plan.steps);
      const files = plan.steps.flatMap((s) => (s.kind === 'write' && s.before !== s.after ? [s.path] : []));
      const known = before.some((x) => x.name === b.name && x.managed);
      verdicts.push({ name: b.name, state: !changed ? 'matches' : known ? 'differs' : 'added', files });
      if (changed) all.push(...plan.steps);
      for (const s of plan.steps) if (s.kind === 'write') overlay.set(s.path, s.after);
    }
    // --prune: the managed builders the file no longer lists, never one written by hand.
    if (flags.prune) {
      setReadOverlay(overlay);
      try {
        const reg = readRegistry(realRegistryCtx(install, team.options.module));
        const gone = reg.builders.filter((x) => x.managed && !team.builders.some((b) => b.name === x.name));
        for (const g of selectBuilders(
          gone,
          gone.map((x) => x.name),
        )) {
          const steps = removalWrites(g, {
            read: readText,
            knownHosts: path.join(install.user.home, '.ssh', 'known_hosts'),
            owner: { uid: install.user.uid, gid: install.user.gid },
          });
          for (const s of steps) overlay.set(s.path, s.after);
          all.push(...steps);
          verdicts.push({ name: g.name, state: 'removed', files: steps.map((s) => s.path) });
        }
      } finally {
        setReadOverlay(null);
      }
    }
    const steps = mergeSteps(all);
    const drift = verdicts.filter((v) => v.state !== 'matches');
    if (flags.check) {
      if (flags.json)
        process.stdout.write(`${JSON.stringify({ file, matches: drift.length === 0, builders: verdicts }, null, 2)}\n`);
      else
        for (const v of verdicts)
          process.stdout.write(
            `${v.name}: ${v.state === 'matches' ? 'matches the file' : v.state === 'added' ? 'missing here' : v.state === 'removed' ? 'here, not in the file (--prune removes it)' : `differs (${[...new Set(v.files)].join(', ')})`}\n`,
          );
      return drift.length ? 1 : 0;
    }
    if (!steps.length) {
      out.ok(`Nothing to change: this machine matches ${file}.`);
      return 0;
    }
    out.info('');
    out.info(out.bold(flags.dryRun ? 'Plan (dry run: nothing will be changed):' : 'Plan:'));
    out.info(renderPlan(steps));
    out.info('');
    if (flags.dryRun) {
      out.ok('Dry run: nothing was changed, locally or on the builders.');
      return 0;
    }
    await applyPlan(steps, {
      isInterrupted: () => interrupted,
      stepDelayMs: Number(process.env.NIXREMOTE_TEST_STEP_DELAY_MS) || undefined,
      reporter: planReporter(out),
    });
    out.info('');
    for (const v of drift)
      out.ok(
        v.state === 'removed'
          ? `${v.name} is removed`
          : `${v.name} is ${v.state === 'added' ? 'set up' : 'updated'}${flags.testBuild ? ' and a build ran on it' : ''}`,
      );
    for (const v of verdicts.filter((x) => x.state === 'matches')) out.info(`  ${v.name} matched the file already`);
    return 0;
  } finally {
    setReadOverlay(null);
    for (const p of plans) await p.close();
    release?.();
    process.off('SIGINT', onSigint);
    for (const fn of atExit) fn();
  }
}

export interface ExportFlags {
  output?: string;
  module?: string;
}

/** The builders this machine has, as a file apply takes: the managed ones, or those named. */
export async function exportCommand(names: string[], flags: ExportFlags): Promise<number> {
  const install = detectInstall();
  const reg = readRegistry(realRegistryCtx(install, flags.module));
  const chosen = names.length ? selectBuilders(reg.builders, names) : reg.builders.filter((b) => b.managed);
  if (!chosen.length)
    throw new UsageError('no builder set up by nixremote here to export (name one to export it anyway)');
  const keys = [...new Set(chosen.map((b) => b.keyPath).filter(Boolean))];
  const builders: TeamBuilder[] = chosen.map((b) => {
    const pinned = b.hostKey ?? null;
    if (!pinned && !b.pin)
      throw new UsageError(
        `${b.name}: its host key is not pinned here, and the file must pin it (nixremote doctor ${b.name})`,
      );
    return {
      name: b.name,
      host: b.hostName ?? b.name,
      port: b.port ?? 22,
      user: b.user ?? 'root',
      hostKey: pinned ? keyLine(pinned) : null,
      hostKeyFingerprint: pinned ? fingerprint(pinned) : '',
      protocol: b.protocol === 'ssh-ng' ? 'ssh-ng' : 'ssh',
      access: b.access,
      restrictToNix: null,
      systems: b.systems,
      features: b.supportedFeatures,
      mandatoryFeatures: b.mandatoryFeatures,
      jobs: b.maxJobs,
      speedFactor: b.speedFactor,
    };
  });
  const missing = builders.find((b) => !b.hostKey);
  if (missing)
    throw new UsageError(
      `${missing.name}: its host key is pinned in known_hosts, not on its machine line; the file needs the key itself`,
    );
  // The Host blocks' ConnectTimeout, when they all have one and the same.
  const timeouts = new Set(
    chosen.map((b) => {
      const block = b.hostBlock ? readBlock(readText(b.hostBlock.file) ?? '', hostBlockMarkers(b.name)) : null;
      return /^\s*ConnectTimeout\s+(\d+)/im.exec((block ?? []).join('\n'))?.[1] ?? null;
    }),
  );
  const timeout = timeouts.size === 1 ? [...timeouts][0] : null;
  const text = formatTeamFile({
    options: {
      ...(keys.length === 1 ? { key: keys[0]! } : {}),
      ...(timeout ? { connectTimeout: Number(timeout) } : {}),
      ...(flags.module ? { module: flags.module } : {}),
    },
    builders,
  });
  // Read back as apply will: what export writes, apply takes.
  parseTeamFile(text, flags.output ?? 'export');
  if (flags.output) {
    if (fs.existsSync(flags.output)) throw new UsageError(`--output: ${flags.output} exists; name a new file`);
    writeAtomic(flags.output, text, { mode: 0o644 });
    makeOutput().ok(`wrote ${flags.output}: ${builders.length} builder${builders.length === 1 ? '' : 's'}`);
  } else process.stdout.write(text);
  return 0;
}
