// What `why` reads before it decides: the derivations a build would build (not the valid
// or substitutable ones), this Nix's settings as its build hook gets them, the builders it
// would list, the slots other builds hold, and the builders' answer to status's cheap
// checks. It asks Nix for a dry run of what it is given, as `nix build --dry-run`, and builds nothing.
import type { Exec } from '../io/exec.js';
import {
  daemonScopes,
  readBuilders,
  readNixConfig,
  type BuildWho,
  type Builders,
  type NixConfig,
  type Reader,
} from '../nix/effective-config.js';
import { machineRules, parseBuildersSetting, type ParsedMachine } from '../nix/machines-file.js';
import { drvNeeds, parseDerivation } from '../nix/derivation.js';
import { atLeast, nixCommandFlags, type Version } from '../nix/version.js';
import { UsageError } from '../validate.js';
import type { LocalSide, WhyDrv } from './model.js';
import { parseExternalBuilders } from '../builders/vm-builders.js';

export interface Target {
  file?: string;
  attrs: string[];
  installables: string[];
}

const lastLine = (s: string) => s.trim().split('\n').pop() ?? '';

/**
 * What a build of what the user named would build and fetch: .drv paths, -f FILE -A ATTR,
 * or installables. A file is evaluated and asked in one process, `nix-build --dry-run`, as
 * a build of it would be (its own process start is most of what why adds over one); the
 * rest become store derivations asked together with `nix-store --realise --dry-run`.
 */
export async function whatWouldBuild(exec: Exec, version: Promise<Version>, t: Target): Promise<DryRun> {
  const runs: Promise<DryRun>[] = [];
  const drvs: string[] = [];
  const file = (f: string, attrs: string[]) => {
    const run = exec('nix-build', ['--dry-run', '--no-out-link', f, ...attrs.flatMap((a) => ['-A', a])]).then((r) => {
      if (r.exitCode !== 0) throw new UsageError(`nix-build ${f}: ${lastLine(r.stderr)}`);
      return parseDryRun(r.stderr);
    });
    // Awaited with the rest below; never unhandled when an installable after it fails first.
    run.catch(() => {});
    runs.push(run);
  };
  let rest = t.installables;
  // nix-build's own way: `why default.nix -A hello` (a file, or a directory with default.nix).
  if (t.file === undefined && t.attrs.length && rest.length === 1 && /(\.nix|\/|^\.)$/.test(rest[0]!)) {
    file(rest[0]!, t.attrs);
    rest = [];
  } else if (t.file !== undefined) file(t.file, t.attrs);
  else if (t.attrs.length)
    throw new UsageError('-A/--attr needs a file: -f FILE, or FILE before it as nix-build takes it');
  for (const i of rest) {
    if (/^\/.*\.drv$/.test(i)) drvs.push(i);
    else if (/\.nix$/.test(i) && !i.includes('#')) file(i, []);
    else {
      // A flake reference or another installable: its derivation, as `nix build` would take it.
      const v = await version;
      const flakes = i.includes('#') && atLeast(v, 2, 4) ? ['--extra-experimental-features', 'flakes'] : [];
      const r = await exec('nix', [...nixCommandFlags(v), ...flakes, 'path-info', '--derivation', i]);
      if (r.exitCode !== 0) throw new UsageError(`${i}: ${lastLine(r.stderr)}`);
      drvs.push(...r.stdout.split('\n').filter((l) => l.endsWith('.drv')));
    }
  }
  if (drvs.length) runs.push(dryRun(exec, [...new Set(drvs)]));
  if (!runs.length) throw new UsageError('name something to build: a .drv, -f FILE [-A ATTR], or an installable');
  const all = await Promise.all(runs);
  return {
    build: [...new Set(all.flatMap((d) => d.build))],
    fetch: [...new Set(all.flatMap((d) => d.fetch))],
  };
}

export interface DryRun {
  build: string[];
  fetch: string[];
}

/**
 * `nix-store --realise --dry-run`'s lists, from its stderr: "these derivations will be
 * built:" (2.8: "these N derivations will be built:", "this derivation will be built:")
 * and "… will be fetched …", each followed by indented store paths.
 */
export function parseDryRun(stderr: string): DryRun {
  const r: DryRun = { build: [], fetch: [] };
  let into: string[] | null = null;
  for (const line of stderr.split('\n')) {
    if (/will be built:\s*$/.test(line)) into = r.build;
    else if (/will be fetched/.test(line)) into = r.fetch;
    else if (/^\s+\/\S+/.test(line) && into) into.push(line.trim());
    else if (!/^\s/.test(line)) into = null;
  }
  return r;
}

async function dryRun(exec: Exec, drvs: string[]): Promise<DryRun> {
  const r = await exec('nix-store', ['--realise', '--dry-run', ...drvs]);
  if (r.exitCode !== 0) throw new UsageError(`nix-store --realise --dry-run: ${lastLine(r.stderr)}`);
  return parseDryRun(r.stderr);
}

/** The derivations to build, read from their .drv files, with their inputs among them. */
export function readDrvs(read: (p: string) => string | null, paths: string[]): WhyDrv[] {
  const set = new Set(paths);
  return paths.map((p) => {
    const text = read(p);
    if (text === null) throw new UsageError(`${p}: cannot read it`);
    const d = parseDerivation(text, p);
    const n = drvNeeds(d);
    return {
      path: p,
      name: d.name,
      system: n.system,
      features: n.features,
      preferLocal: n.preferLocal,
      builtin: d.builder.startsWith('builtin:'),
      inputs: d.inputDrvs.filter((i) => set.has(i)),
    };
  });
}

export interface LocalSettings extends LocalSide {
  buildersUseSubstitutes: boolean;
  substituters: string[];
  trustedUsers: string[];
}

/** This Nix's settings, as `nix show-config --json` (2.20+: `nix config show --json`) gives them. */
export function parseShowConfig(json: string, v: Version): LocalSettings {
  const doc = JSON.parse(json) as Record<string, { value: unknown }>;
  const val = (k: string) => doc[k]?.value;
  const list = (k: string): string[] => {
    const x = val(k);
    if (Array.isArray(x)) return x.map(String);
    return typeof x === 'string' ? x.split(/\s+/).filter(Boolean) : [];
  };
  return {
    version: v,
    system: String(val('system') ?? ''),
    extraPlatforms: list('extra-platforms'),
    systemFeatures: list('system-features'),
    maxJobs: Number(val('max-jobs') ?? 1),
    buildersUseSubstitutes: val('builders-use-substitutes') === true,
    substituters: list('substituters'),
    trustedUsers: list('trusted-users'),
    // Without the experimental feature Nix fails such a build instead (ExternalDerivationBuilder).
    external: list('experimental-features').includes('external-builders')
      ? parseExternalBuilders(val('external-builders'))
      : [],
  };
}

export async function localSettings(exec: Exec, v: Version): Promise<LocalSettings> {
  const sub = atLeast(v, 2, 20) ? ['config', 'show'] : ['show-config'];
  const r = await exec('nix', [...nixCommandFlags(v), ...sub, '--json']);
  if (r.exitCode !== 0) throw new UsageError(`nix ${sub.join(' ')}: ${lastLine(r.stderr)}`);
  return parseShowConfig(r.stdout, v);
}

/**
 * Settings given on why's command line, applied as Nix applies `--option NAME VALUE` and
 * `-j`: max-jobs "auto" is the cores; lists replace the value, `extra-` ones add to it.
 */
export function applyOverrides(s: LocalSettings, options: [string, string][], cores: number): LocalSettings {
  const r = { ...s };
  const words = (x: string) => x.split(/\s+/).filter(Boolean);
  for (const [name, value] of options) {
    if (name === 'max-jobs') {
      const n = value === 'auto' ? cores : Number(value);
      if (!Number.isInteger(n) || n < 0) throw new UsageError(`max-jobs: '${value}' is not a number or 'auto'`);
      r.maxJobs = n;
    } else if (name === 'system') r.system = value;
    else if (name === 'extra-platforms') r.extraPlatforms = words(value);
    else if (name === 'extra-extra-platforms') r.extraPlatforms = [...r.extraPlatforms, ...words(value)];
    else if (name === 'system-features') r.systemFeatures = words(value);
    else if (name === 'extra-system-features') r.systemFeatures = [...r.systemFeatures, ...words(value)];
    else if (name === 'builders-use-substitutes') r.buildersUseSubstitutes = value === 'true';
    else if (name !== 'builders')
      throw new UsageError(
        `--option ${name}: why reads only max-jobs, system, extra-platforms, system-features, builders and builders-use-substitutes`,
      );
  }
  return r;
}

export interface HookBuilders {
  cfg: NixConfig;
  builders: Builders;
  /** Listed where the daemon ignores them: a `builders` of a user it does not trust. */
  ignored: ParsedMachine[];
  notes: string[];
}

/**
 * The builders the hook gets: the daemon's own settings, plus a client's when the daemon
 * trusts that client (a restricted setting otherwise), `--builders` included. A line Nix
 * rejects is a usage error here: Nix then uses no builder at all.
 */
export function hookBuilders(
  read: Reader,
  env: NodeJS.ProcessEnv,
  who: BuildWho,
  v: Version,
  override: string | undefined,
): HookBuilders {
  const cfg = readNixConfig(read, env, who.home, true);
  const scopes = daemonScopes(cfg, read, who);
  const trusted = scopes.includes('user');
  const rules = machineRules(v);
  const notes: string[] = [];
  let builders = readBuilders(cfg, read, env, scopes, rules);
  let ignored: ParsedMachine[] = [];
  if (!trusted) {
    const mine = readBuilders(cfg, read, env, ['system', 'user', 'env'], rules);
    if (mine.source && mine.source.scope !== 'system') {
      ignored = mine.machines;
      notes.push(
        `builders in ${mine.source.file}:${mine.source.line} is ignored: the daemon takes it only from a user in its trusted-users`,
      );
    }
  }
  if (override !== undefined) {
    // Even an untrusted client may clear it (daemon.cc: `builders` set to "").
    if (trusted || override === '')
      builders = { source: null, value: override, ...parseBuildersSetting(override, '--builders', read, 1, rules) };
    else notes.push('--builders is ignored, as Nix ignores it from a user the daemon does not trust');
  }
  const e = builders.errors[0];
  if (e)
    throw new UsageError(
      `${e.file}:${e.line}: ${e.message} (Nix then uses no builder at all; nixremote doctor says more)`,
    );
  return { cfg, builders, ignored, notes };
}
