// What `why` reads before it decides: the derivations a build would build (not the valid
// or substitutable ones), this Nix's settings as its build hook gets them, the builders it
// would list, the slots other builds hold, and the builders' answer to status's cheap
// checks. It instantiates what it is given (as `nix build --dry-run` does) and builds nothing.
import type { Exec } from '../io/exec.js';
import { drvNeeds, parseDerivation } from '../nix/derivation.js';
import { atLeast, nixCommandFlags, type Version } from '../nix/version.js';
import { UsageError } from '../validate.js';
import type { LocalSide, WhyDrv } from './model.js';

export interface Target {
  file?: string;
  attrs: string[];
  installables: string[];
}

const lastLine = (s: string) => s.trim().split('\n').pop() ?? '';

/** The store derivations of what the user named: .drv paths, -f FILE -A ATTR, or installables. */
export async function resolveDrvs(exec: Exec, v: Version, t: Target): Promise<string[]> {
  const out: string[] = [];
  const instantiate = async (file: string, attrs: string[]) => {
    const r = await exec('nix-instantiate', [file, ...attrs.flatMap((a) => ['-A', a])]);
    if (r.exitCode !== 0) throw new UsageError(`nix-instantiate ${file}: ${lastLine(r.stderr)}`);
    out.push(...r.stdout.split('\n').filter((l) => l.endsWith('.drv')));
  };
  if (t.file !== undefined) await instantiate(t.file, t.attrs);
  else if (t.attrs.length) throw new UsageError('-A/--attr needs -f/--file FILE');
  for (const i of t.installables) {
    if (/^\/.*\.drv$/.test(i)) {
      out.push(i);
      continue;
    }
    if (/\.nix$/.test(i) && !i.includes('#')) {
      await instantiate(i, []);
      continue;
    }
    // A flake reference or another installable: its derivation, as `nix build` would take it.
    const flakes = i.includes('#') && atLeast(v, 2, 4) ? ['--extra-experimental-features', 'flakes'] : [];
    const r = await exec('nix', [...nixCommandFlags(v), ...flakes, 'path-info', '--derivation', i]);
    if (r.exitCode !== 0) throw new UsageError(`${i}: ${lastLine(r.stderr)}`);
    out.push(...r.stdout.split('\n').filter((l) => l.endsWith('.drv')));
  }
  if (!out.length) throw new UsageError('name something to build: a .drv, -f FILE [-A ATTR], or an installable');
  return [...new Set(out)];
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

export async function dryRun(exec: Exec, drvs: string[]): Promise<DryRun> {
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
