// `nixremote why INSTALLABLE…`: where a build of it would go now, derivation by derivation,
// and why not elsewhere; decided by the rules of this Nix's build hook (src/why/model.ts)
// from what is true now: the builders' lines, the slots held, and status's cheap checks of
// the builders that could take something. It builds nothing and changes nothing.
// Exit 0, or 1 when some derivation would fail for want of anywhere to build it; 2 on a usage error.
import * as os from 'node:os';
import { exec } from '../io/exec.js';
import { readText } from '../io/files.js';
import { makeOutput, type Output } from '../io/output.js';
import { detectInstall } from '../init/install.js';
import { daemonScopes, readBuilders, readNixConfig, type Builders } from '../nix/effective-config.js';
import { machineRules, parseMachines, uriHost, type ParsedMachine } from '../nix/machines-file.js';
import { formatVersion, parseNixVersion } from '../nix/version.js';
import {
  builderStatus,
  fleetWidth,
  heldFlocks,
  realStatusCtx,
  slotsInUse,
  type BuilderStatus,
} from '../builders/status.js';
import { mapLimit } from '../util/map-limit.js';
import { UsageError } from '../validate.js';
import { applyOverrides, dryRun, localSettings, readDrvs, resolveDrvs, type LocalSettings } from '../why/gather.js';
import { decide, lineRefuses, type Reach, type Verdict, type WhyMachine } from '../why/model.js';
import { changes } from '../why/advice.js';

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

/** The checks status runs whose failure means the build hook cannot connect ("cannot build on"). */
const CONNECT_FAILS = new Set(['uri', 'login', 'login-shell', 'shell', 'remote-nix', 'builder-daemon']);

export function reachOf(s: BuilderStatus): Reach {
  if (s.state === 'down') return { kind: 'unusable', why: s.error ?? 'the login failed' };
  if (s.state === 'broken' && s.check && CONNECT_FAILS.has(s.check))
    return { kind: 'unusable', why: s.error ?? `${s.check} failed` };
  if (s.state === 'broken') return { kind: 'fails-there', why: s.error ?? `${s.check} failed` };
  return { kind: 'up' };
}

export async function whyCommand(installables: string[], flags: WhyFlags): Promise<number> {
  const install = detectInstall();
  if (flags.check && install.multiUser && install.user.uid !== 0)
    throw new UsageError(
      "on a multi-user install the build hook connects with root's ssh key and config; re-run with sudo, or with --no-check to leave the builders' state out",
    );
  const v = parseNixVersion((await exec('nix', ['--version'])).stdout);
  if (!v) throw new UsageError('nix --version said nothing readable: is Nix installed and on PATH?');
  const overrides: [string, string][] = [];
  if (flags.maxJobs !== undefined) overrides.push(['max-jobs', flags.maxJobs]);
  if (flags.system !== undefined) overrides.push(['system', flags.system]);
  if (flags.extraPlatforms !== undefined) overrides.push(['extra-platforms', flags.extraPlatforms]);
  if (flags.systemFeatures !== undefined) overrides.push(['system-features', flags.systemFeatures]);
  const local = applyOverrides(await localSettings(exec, v), overrides, os.availableParallelism());

  // The builders the hook gets: the daemon's own settings, plus a client's when the daemon
  // trusts that client (a restricted setting otherwise; daemon.cc, applyClientSettings).
  const env = process.env;
  const home = install.user.home;
  const cfg = readNixConfig(readText, env, home, true);
  const notes: string[] = [];
  const who = { multiUser: install.multiUser, home, name: install.user.name };
  const scopes = daemonScopes(cfg, readText, who);
  const trusted = scopes.includes('user');
  const rules = machineRules(v);
  let builders: Builders = readBuilders(cfg, readText, env, scopes, rules);
  let ignored: ParsedMachine[] = [];
  if (!trusted) {
    const mine = readBuilders(cfg, readText, env, ['system', 'user', 'env'], rules);
    if (mine.source && mine.source.scope !== 'system') {
      ignored = mine.machines;
      notes.push(
        `builders in ${mine.source.file}:${mine.source.line} is ignored: the daemon takes it only from a user in its trusted-users`,
      );
    }
  }
  if (flags.builders !== undefined) {
    if (trusted || flags.builders === '') {
      const r = parseMachines(flags.builders, '--builders', readText, 0, 1, rules);
      builders = { source: null, value: flags.builders, ...r };
    } else notes.push('--builders is ignored, as Nix ignores it from a user the daemon does not trust');
  }
  if (builders.errors.length) {
    const e = builders.errors[0]!;
    throw new UsageError(
      `${e.file}:${e.line}: ${e.message} (Nix then uses no builder at all; nixremote doctor says more)`,
    );
  }

  const target = { file: flags.file, attrs: flags.attr ?? [], installables };
  const drvPaths = await resolveDrvs(exec, v, target);
  const dry = await dryRun(exec, drvPaths);
  const drvs = readDrvs(readText, dry.build);

  const sctx = realStatusCtx(exec, install);
  const locks = sctx.locks();
  const held = locks === null ? null : heldFlocks(locks);
  const machines: WhyMachine[] = builders.machines.map((m) => ({
    name: uriHost(m.uri),
    uri: m.uri,
    systems: m.systems.length ? m.systems : [local.system],
    supportedFeatures: m.supportedFeatures,
    mandatoryFeatures: m.mandatoryFeatures,
    maxJobs: m.maxJobs,
    speedFactor: m.speedFactor,
    held: slotsInUse(sctx, m.uri, m.maxJobs, held, v),
    reach: null,
  }));
  // Only the builders that could take one of them are looked at: the rest are ruled out by their lines.
  const statuses = new Map<string, BuilderStatus>();
  if (flags.check) {
    const wanted = builders.machines.filter((_, i) => drvs.some((d) => lineRefuses(machines[i]!, d) === null));
    const got = await mapLimit(wanted, fleetWidth(), async (m) =>
      builderStatus(sctx, { name: uriHost(m.uri), uri: m.uri, maxJobs: m.maxJobs, machine: m }, held),
    );
    for (const s of got) statuses.set(s.uri, s);
    for (const m of machines) {
      const s = statuses.get(m.uri);
      if (s) m.reach = reachOf(s);
    }
  }
  const verdicts = decide(drvs, local, machines);
  const advice = changes(verdicts, machines, local);
  const assumed = [
    `the rules of Nix ${formatVersion(v)}'s build hook`,
    'nothing else starts building here meanwhile',
    'derivations that do not depend on each other start together',
    flags.check ? "the builders' slots and logins stay as they are now" : 'every builder reachable (--no-check)',
  ];
  const files = [...new Set([...cfg.files, ...builders.machines.map((m) => m.source.file)])];
  const failing = verdicts.some((x) => x.where === 'fails');

  if (flags.json) {
    process.stdout.write(
      `${JSON.stringify(
        {
          nixVersion: formatVersion(v),
          settings: {
            system: local.system,
            extraPlatforms: local.extraPlatforms,
            systemFeatures: local.systemFeatures,
            maxJobs: local.maxJobs,
            buildersUseSubstitutes: local.buildersUseSubstitutes,
            substituters: local.substituters,
          },
          files,
          builders: machines.map((m) => ({ ...m, state: statuses.get(m.uri)?.state ?? null })),
          ignored: ignored.map((m) => ({ uri: m.uri, source: `${m.source.file}:${m.source.line}` })),
          derivations: verdicts.map((x) => ({
            path: x.drv.path,
            name: x.drv.name,
            system: x.drv.system,
            features: x.drv.features,
            preferLocalBuild: x.drv.preferLocal,
            where: x.where,
            builder: x.builder,
            rule: x.rule,
            failsThere: x.failsThere,
            tried: x.tried,
            firstWould: x.firstWould,
            others: x.others,
            local: x.local,
          })),
          fetched: dry.fetch,
          summary: summary(verdicts),
          changes: advice,
          notes,
          assumed,
        },
        null,
        2,
      )}\n`,
    );
    return failing ? 1 : 0;
  }
  const out = makeOutput();
  printHeader(out, v, local, builders, machines, statuses, flags.check);
  for (const n of notes) out.warn(n);
  if (!verdicts.length) {
    out.ok(
      `Nothing to build${dry.fetch.length ? `: ${dry.fetch.length} path${dry.fetch.length === 1 ? '' : 's'} would be fetched from substituters` : ': every output is already here'}.`,
    );
    return 0;
  }
  out.info(
    `${verdicts.length} derivation${verdicts.length === 1 ? '' : 's'} would be built${dry.fetch.length ? `, ${dry.fetch.length} path${dry.fetch.length === 1 ? '' : 's'} fetched from substituters (${local.buildersUseSubstitutes ? 'builders fetch their inputs themselves: builders-use-substitutes' : 'inputs a builder needs are copied from here'})` : ''}:`,
  );
  out.info('');
  for (const x of verdicts) printVerdict(out, x);
  const s = summary(verdicts);
  const per = Object.entries(s.builders)
    .map(([n, k]) => `${n} ${k}`)
    .join(', ');
  out.info(
    `${s.toBuilders} to builders${per ? ` (${per})` : ''}, ${s.here} here, ${s.waits} would wait, ${s.fails} would fail.`,
  );
  if (advice.length) {
    out.info('What would change it:');
    for (const a of advice) out.info(`  - ${a}`);
  }
  out.info(out.dim(`Assumed: ${assumed.join('; ')}. Read: ${files.join(', ') || "no nix.conf (Nix's defaults)"}.`));
  return failing ? 1 : 0;
}

function summary(vs: Verdict[]) {
  const builders: Record<string, number> = {};
  for (const x of vs) if (x.builder) builders[x.builder] = (builders[x.builder] ?? 0) + 1;
  const n = (w: string) => vs.filter((x) => x.where === w).length;
  return { toBuilders: n('builder'), builders, here: n('here'), waits: n('waits'), fails: n('fails') };
}

function printHeader(
  out: Output,
  v: [number, number, number],
  l: LocalSettings,
  b: Builders,
  machines: WhyMachine[],
  statuses: Map<string, BuilderStatus>,
  checked: boolean,
): void {
  out.info(
    `Nix ${formatVersion(v)} here: ${l.system}${l.extraPlatforms.length ? ` (also ${l.extraPlatforms.join(', ')})` : ''}, max-jobs ${l.maxJobs}, system-features ${l.systemFeatures.join(' ') || '(none)'}`,
  );
  const where = b.source ? `${b.source.file}:${b.source.line}` : b.value;
  if (!machines.length) {
    out.info(`No builders (builders = ${b.value || '""'}, from ${where}): Nix builds everything here.`);
    return;
  }
  const states = machines.map((m) => {
    const s = statuses.get(m.uri);
    return `${m.name} ${s ? s.state : checked ? 'not needed' : 'unchecked'} ${m.held}/${m.maxJobs}`;
  });
  out.info(
    `Builders (${machines.length}, from ${b.source ? where : b.value}${checked ? ', logged in to as status does' : ''}; state and slots held): ${states.join(', ')}`,
  );
}

function printVerdict(out: Output, x: Verdict): void {
  const to = x.where === 'builder' ? `→ ${x.builder}` : x.where === 'here' ? '→ here' : x.where;
  const head = `${x.drv.name} ${to}`;
  if (x.where === 'fails') out.fail(head);
  else if (x.where === 'waits' || x.failsThere) out.warn(head);
  else out.ok(head);
  out.info(`    ${x.rule}`);
  if (x.failsThere) out.info(`    but the build will fail there: ${x.failsThere}`);
  if (x.firstWould)
    out.info(`    (after the others that start with it took their slots; asked first, it would go to ${x.firstWould})`);
  // Builders with the same reason on one line: "a, b: not asked (preferLocalBuild)".
  const byWhy = new Map<string, string[]>();
  for (const o of x.others) byWhy.set(o.why, [...(byWhy.get(o.why) ?? []), o.name]);
  for (const [why, names] of byWhy) out.info(out.dim(`    ${names.join(', ')}: ${why}`));
  // Why not here, where the rule has not said it already.
  if ((x.where === 'builder' || x.where === 'waits') && x.local.why) out.info(out.dim(`    here: ${x.local.why}`));
}
