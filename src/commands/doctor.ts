// `nixremote doctor`: walk the path the nix-daemon walks, for every builder, and name the
// first broken link with its fix. Exit 0 when everything passes (warnings allowed), 1 when
// anything fails, 2 on a usage error.
import { exec } from '../io/exec.js';
import { makeOutput } from '../io/output.js';
import { detectInstall } from '../init/install.js';
import { realCtx, type DrvInfo } from '../doctor/context.js';
import { macBuildersApply } from '../doctor/checks/mac-builders.js';
import { localChecks, localState, seesDaemonFiles } from '../doctor/checks/local.js';
import { BuilderFacts, prefetchSshConfigs } from '../path/facts.js';
import { pathChecks } from '../path/walk.js';
import { runChecks, worst } from '../doctor/runner.js';
import { printReport, summarize, type BuilderReport, type DoctorReport } from '../doctor/report.js';
import { readRegistry, selectBuilders } from '../builders/registry.js';
import { realRegistryCtx } from '../builders/context.js';
import { UsageError, validatePositiveInt } from '../validate.js';
import type { CheckReport, FixAction } from '../doctor/types.js';
import { nixCommandFlags, parseNixVersion, atLeast } from '../nix/version.js';
import { mapLimit } from '../util/map-limit.js';
import { applyPlan, renderPlan } from '../plan/plan.js';
import { planReporter } from '../plan/reporter.js';
import { lockBuildUserFiles, lockPathFor } from '../io/lock.js';
import { fleetWidth } from '../builders/status.js';

export interface DoctorFlags {
  json?: boolean;
  fix?: boolean;
  yes?: boolean;
  build: boolean;
  drv?: string;
  attr?: string;
  file?: string;
  jobs?: string;
  verbose?: boolean;
  strict?: boolean;
}

export async function doctorCommand(names: string[], flags: DoctorFlags): Promise<number> {
  if (flags.json && flags.fix)
    throw new UsageError('--fix asks before it changes anything, so it cannot be combined with --json');
  if ((flags.drv || flags.attr) && names.length === 0)
    throw new UsageError('--drv and --attr need a builder NAME to check against');
  const width = flags.jobs === undefined ? fleetWidth() : validatePositiveInt(flags.jobs, '--jobs');
  const out = makeOutput(flags.json ? process.stderr : process.stdout);
  const drv = flags.drv || flags.attr ? await readDrv(flags) : null;
  const install = detectInstall();
  const ctx = { ...realCtx(exec, install, { build: flags.build, drv }), strict: Boolean(flags.strict) };

  const run = async (): Promise<DoctorReport> => {
    const ls = localState(ctx);
    // The builders Nix uses now, from the one model list, status and remove read.
    const active = readRegistry(realRegistryCtx(install)).builders.filter((b) => b.machine !== null);
    const machines = selectBuilders(active, names).map((b) => b.machine!);
    // The local checks and the builders' side by side: the builders need of this machine
    // only that this run can read the build user's files (the 'access' check).
    const accessOk = seesDaemonFiles(install);
    if (accessOk) prefetchSshConfigs(ctx, machines);
    // A Mac's own Linux builders are looked at on a Mac, or where the files name one.
    const localRun = runChecks(
      localChecks().filter((c) => c.id !== 'mac-builders' || macBuildersApply(ls)),
      ls,
    );
    if (!flags.json && accessOk && machines.length)
      out.step(
        `Checking ${machines.length} builder${machines.length > 1 ? 's' : ''}${flags.build ? ', with a real build each' : ''}...`,
      );
    // On a terminal, a line that says how far it is; nothing of it reaches a pipe or a file.
    const progress = !flags.json && process.stdout.isTTY && machines.length ? progressLine(machines.length) : null;
    const buildersRun: Promise<BuilderReport[]> = accessOk
      ? mapLimit(machines, width, async (m) => {
          const f = new BuilderFacts(ctx, m, { share: true });
          progress?.start(f.name);
          try {
            const checks = await runChecks(pathChecks('doctor', drv !== null), f);
            return {
              name: f.name,
              uri: m.uri,
              source: `${m.source.file}:${m.source.line}`,
              status: worst(checks),
              checks,
            };
          } finally {
            progress?.done(f.name);
            f.close();
          }
        })
      : Promise.resolve([]);
    const [local, builders] = await Promise.all([localRun, buildersRun]).finally(() => progress?.stop());
    // max-jobs = 0 turns "no usable builder" from slow builds into failed ones.
    const maxJobs = ls.cfg.settings.get('max-jobs')?.at(-1)?.value;
    if (maxJobs === '0' && machines.length && !builders.some((b) => b.status !== 'fail')) {
      local.push({
        id: 'max-jobs',
        title: 'max-jobs',
        status: 'fail',
        ms: 0,
        summary: 'max-jobs = 0 and no builder works',
        cause:
          'every build fails with "unable to start any build; either increase \'--max-jobs\' or enable remote builds"',
        fix: 'fix a builder above, or allow local builds (max-jobs = auto)',
      });
    }
    return {
      status: worst([...local, ...builders.flatMap((b) => b.checks)]),
      local,
      builders,
      summary: summarize(local, builders),
    };
  };

  let report = await run();
  if (flags.fix) {
    const fixed = await applyFixes(report, flags, out, install.user.home);
    if (fixed) {
      out.info('');
      out.step('Checking again after the fixes');
      report = await run();
    }
  }
  if (flags.json)
    process.stdout.write(
      JSON.stringify(
        report,
        (k, v) => (k === 'action' ? (v ? { description: (v as FixAction).description } : undefined) : v),
        2,
      ) + '\n',
    );
  else printReport(out, report, Boolean(flags.verbose));
  return report.status === 'fail' ? 1 : 0;
}

async function applyFixes(
  report: DoctorReport,
  flags: DoctorFlags,
  out: ReturnType<typeof makeOutput>,
  home: string,
): Promise<number> {
  const all: CheckReport[] = [...report.local, ...report.builders.flatMap((b) => b.checks)];
  const actions = all.filter((c) => (c.status === 'fail' || c.status === 'warn') && c.action);
  if (!actions.length) {
    out.info('No fix that nixremote can apply safely here; the report says what to do.');
    return 0;
  }
  const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  // The same engine as init: each fix a plan shown with its diffs, applied under the lock,
  // never over a file changed since it was read, and put back if a step fails.
  const release = await lockBuildUserFiles(lockPathFor(home), out);
  let n = 0;
  try {
    for (const c of actions) {
      const a = c.action!;
      out.step(`Fix for "${c.title}": ${a.description}`);
      out.info(renderPlan(a.steps));
      const question = a.confirm ?? (flags.yes ? null : `Apply: ${a.description}?`);
      if (question) {
        if (!interactive) {
          out.warn('not applied: it needs a confirmation and there is no terminal to ask on');
          continue;
        }
        const { confirm } = await import('@inquirer/prompts');
        if (!(await confirm({ message: question, default: false }))) continue;
      }
      try {
        await applyPlan(a.steps, { reporter: planReporter(out) });
        out.ok(`applied: ${a.description}`);
        n++;
      } catch (e) {
        const back = (e as { rolledBack?: string[] }).rolledBack;
        out.fail(`could not apply it: ${(e as Error).message}${back?.length ? `; put back: ${back.join(', ')}` : ''}`);
      }
    }
  } finally {
    release();
  }
  return n;
}

/** --drv PATH, or --attr ATTR of --file (default <nixpkgs>), to the derivation's system and features. */
async function readDrv(flags: DoctorFlags): Promise<DrvInfo> {
  let drvPath = flags.drv;
  if (!drvPath) {
    const r = await exec('nix-instantiate', [flags.file ?? '<nixpkgs>', '-A', flags.attr!]);
    if (r.exitCode !== 0)
      throw new UsageError(`--attr ${flags.attr}: nix-instantiate failed: ${r.stderr.trim().split('\n').pop()}`);
    drvPath = r.stdout.trim().split('\n').pop()!;
  }
  const v = parseNixVersion((await exec('nix', ['--version'])).stdout) ?? [2, 8, 0];
  // `nix show-derivation` became `nix derivation show` in 2.15.
  const sub = atLeast(v, 2, 15) ? ['derivation', 'show'] : ['show-derivation'];
  const r = await exec('nix', [...nixCommandFlags(v), ...sub, drvPath]);
  if (r.exitCode !== 0) throw new UsageError(`--drv ${drvPath}: ${r.stderr.trim().split('\n').pop()}`);
  const doc = JSON.parse(r.stdout) as Record<string, { system: string; env: Record<string, string> }>;
  const d = Object.values(doc)[0];
  if (!d) throw new UsageError(`--drv ${drvPath}: not a derivation`);
  const features = (d.env.requiredSystemFeatures ?? '').split(/\s+/).filter(Boolean);
  return { path: drvPath, system: d.system, requiredFeatures: features };
}

/** "3 of 8 builders done; waiting for big, old", redrawn in place on the terminal, then erased. */
function progressLine(total: number) {
  const waiting = new Set<string>();
  let done = 0;
  const draw = () => {
    const names = [...waiting];
    const text = `${done} of ${total} builder${total === 1 ? '' : 's'} done${names.length ? `; waiting for ${names.slice(0, 4).join(', ')}${names.length > 4 ? ', ...' : ''}` : ''}`;
    const cols = process.stdout.columns || 80;
    process.stdout.write(`\r\x1b[2K${text.slice(0, cols - 1)}`);
  };
  const timer = setInterval(draw, 250);
  return {
    start: (name: string) => {
      waiting.add(name);
    },
    done: (name: string) => {
      waiting.delete(name);
      done++;
    },
    stop: () => {
      clearInterval(timer);
      process.stdout.write('\r\x1b[2K');
    },
  };
}
