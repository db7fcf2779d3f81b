// Which builders Nix will use, read the way Nix reads them (src/libstore/globals.cc,
// loadConfFile): the system nix.conf (NIX_CONF_DIR, default /etc/nix) with its includes,
// then the user's files (NIX_USER_CONF_FILES, or nix/nix.conf under XDG_CONFIG_DIRS and
// XDG_CONFIG_HOME), then NIX_CONFIG. A later value wins. Unset, `builders` is
// @$NIX_CONF_DIR/machines, which is also where NixOS writes nix.buildMachines.
import * as path from 'node:path';
import { parseNixConf } from './nix-conf.js';
import {
  parseBuildersSetting,
  type MachineRules,
  type MachinesParseError,
  type ParsedMachine,
} from './machines-file.js';

export type Scope = 'system' | 'user' | 'env';

export interface SettingSource {
  scope: Scope;
  file: string;
  line: number;
  value: string;
}

export interface NixConfig {
  /** Every place a setting was given, in the order Nix applies them. */
  settings: Map<string, SettingSource[]>;
  files: string[];
  /** The files the nix-daemon itself reads (at start): the system's, with their includes. */
  systemFiles: string[];
  errors: string[];
}

export type Reader = (p: string) => string | null;

export function readNixConfig(read: Reader, env: NodeJS.ProcessEnv, home: string, includeUser: boolean): NixConfig {
  const cfg: NixConfig = { settings: new Map(), files: [], systemFiles: [], errors: [] };
  const apply = (text: string, file: string, scope: Scope, depth: number) => {
    cfg.files.push(file);
    if (scope === 'system') cfg.systemFiles.push(file);
    const { settings, includes } = parseNixConf(text);
    // Nix applies lines in order, includes where they stand; settings and includes are
    // merged back into line order here.
    const items = [...settings.map((s) => ({ line: s.line, s })), ...includes.map((i) => ({ line: i.line, i }))].sort(
      (a, b) => a.line - b.line,
    );
    for (const it of items) {
      if ('s' in it) {
        const list = cfg.settings.get(it.s.name) ?? [];
        list.push({ scope, file, line: it.s.line, value: it.s.value });
        cfg.settings.set(it.s.name, list);
      } else {
        const p = path.isAbsolute(it.i.path) ? it.i.path : path.join(path.dirname(file), it.i.path);
        const sub = depth < 8 ? read(p) : null;
        if (sub === null) {
          if (!it.i.optional)
            cfg.errors.push(
              `${file}:${it.line}: include ${p} does not exist (Nix fails on this; use !include for optional files)`,
            );
        } else apply(sub, p, scope, depth + 1);
      }
    }
  };
  const confDir = env.NIX_CONF_DIR || '/etc/nix';
  const system = path.join(confDir, 'nix.conf');
  const sysText = read(system);
  if (sysText !== null) apply(sysText, system, 'system', 0);
  if (includeUser) {
    for (const f of userConfFiles(env, home)) {
      const t = read(f);
      if (t !== null) apply(t, f, 'user', 0);
    }
    if (env.NIX_CONFIG) apply(env.NIX_CONFIG, 'NIX_CONFIG', 'env', 0);
  }
  return cfg;
}

export function userConfFiles(env: NodeJS.ProcessEnv, home: string): string[] {
  if (env.NIX_USER_CONF_FILES) return env.NIX_USER_CONF_FILES.split(':').filter(Boolean);
  const dirs = [
    env.XDG_CONFIG_HOME || path.join(home, '.config'),
    ...(env.XDG_CONFIG_DIRS || '/etc/xdg').split(':').filter(Boolean),
  ];
  // Nix applies them lowest priority first: XDG_CONFIG_DIRS in reverse, then XDG_CONFIG_HOME.
  return dirs.reverse().map((d) => path.join(d, 'nix', 'nix.conf'));
}

export function effective(
  cfg: NixConfig,
  name: string,
  scopes: Scope[] = ['system', 'user', 'env'],
): SettingSource | null {
  const list = (cfg.settings.get(name) ?? []).filter((s) => scopes.includes(s.scope));
  return list.length ? list[list.length - 1]! : null;
}

export interface Builders {
  /** Where the value came from; null: Nix's default @NIX_CONF_DIR/machines. */
  source: SettingSource | null;
  value: string;
  machines: ParsedMachine[];
  errors: MachinesParseError[];
}

export function readBuilders(
  cfg: NixConfig,
  read: Reader,
  env: NodeJS.ProcessEnv,
  scopes: Scope[],
  rules?: MachineRules,
): Builders {
  const source = effective(cfg, 'builders', scopes);
  const value = source ? source.value : `@${path.join(env.NIX_CONF_DIR || '/etc/nix', 'machines')}`;
  // An inline machine is defined on the setting's own line of its nix.conf.
  const r = source
    ? parseBuildersSetting(value, source.file, read, source.line, rules)
    : parseBuildersSetting(value, 'builders (default)', read, 1, rules);
  return { source, value, ...r };
}

/** Who builds: the daemon's client on a multi-user install (root, under init), else the user. */
export interface BuildWho {
  multiUser: boolean;
  home: string;
  name: string;
}

/** A user's groups, from passwd (the primary group) and group (the members). */
export function groupsOf(read: Reader, user: string): string[] {
  const gid = (read('/etc/passwd') ?? '')
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[0] === user)?.[3];
  const out: string[] = [];
  for (const line of (read('/etc/group') ?? '').split('\n')) {
    const f = line.split(':');
    if (f.length < 4) continue;
    if (f[2] === gid || f[3]!.split(',').includes(user)) out.push(f[0]!);
  }
  return out;
}

/**
 * Whether the nix-daemon trusts this user, by its own files: trusted-users (default root)
 * and extra-trusted-users, by name, @group or * (daemon.cc, matchUser).
 */
export function daemonTrusts(cfg: NixConfig, read: Reader, user: string): boolean {
  const sys = (name: string) => (cfg.settings.get(name) ?? []).filter((x) => x.scope === 'system');
  const base = sys('trusted-users').at(-1)?.value ?? 'root';
  const list = [base, ...sys('extra-trusted-users').map((x) => x.value)].join(' ').split(/\s+/).filter(Boolean);
  if (list.includes('*') || list.includes(user)) return true;
  return groupsOf(read, user).some((g) => list.includes(`@${g}`));
}

/**
 * The settings the Nix that builds takes. A single-user Nix reads them all. The nix-daemon
 * reads the system's files, and takes what a client sends of its own (its user files,
 * NIX_CONFIG, the command line; globals.cc, loadConfFile: "we only want to send overrides
 * to the daemon") only from a user it trusts: `builders` is a restricted setting.
 */
export function daemonScopes(cfg: NixConfig, read: Reader, who: BuildWho): Scope[] {
  return !who.multiUser || daemonTrusts(cfg, read, who.name) ? ['system', 'user', 'env'] : ['system'];
}

/** The builders the Nix that builds will use (see daemonScopes). */
export function daemonBuilders(
  read: Reader,
  env: NodeJS.ProcessEnv,
  who: BuildWho,
): { cfg: NixConfig; builders: Builders } {
  const cfg = readNixConfig(read, env, who.home, true);
  return { cfg, builders: readBuilders(cfg, read, env, daemonScopes(cfg, read, who)) };
}
