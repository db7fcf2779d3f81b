// One model of a builder, read from everywhere Nix and ssh keep its parts: the machine line
// (from every source Nix reads: nix.conf's `builders` inline or as `@file`, its includes,
// the machines file), the module nixremote wrote for NixOS, the build user's Host block and
// the pinned host key. init writes these parts; list, status, remove and doctor read them
// back through here. Pure: files come in through `read` and `readdir`.
import * as path from 'node:path';
import { daemonBuilders, daemonScopes, type BuildWho } from '../nix/effective-config.js';
import { secretKeyFiles } from '../nix/signing.js';
import {
  disabledMachines,
  machineMarkers,
  type Disabled,
  parseStoreUri,
  type MachinesParseError,
  type MachineSource,
  type ParsedMachine,
} from '../nix/machines-file.js';
import { parseModuleBuilders } from '../nix/nixos-module.js';
import { LIVE_HEADER } from './keeper-service.js';
import { MODULE_PATHS } from '../targets/index.js';
import { macBuilders, type MacBuilder } from './vm-builders.js';
import { findBlock } from '../text/managed-block.js';
import { splitLines, type Line } from '../text/lines.js';
import { globRegExp, hostSectionsFor, parseSshConfig, type HostSection } from '../ssh/ssh-config.js';
import { findKnownHost } from '../ssh/known-hosts.js';
import { hostKeyFromMachinesField, type HostKey } from '../ssh/host-key.js';
import { UsageError } from '../validate.js';

/** Where init writes its module for NixOS and for nix-darwin, unless --output said otherwise. */
export const DEFAULT_MODULES = MODULE_PATHS;

export interface RegistryCtx {
  read: (p: string) => string | null;
  /** Entries of a directory, or [] when it cannot be read. */
  readdir: (p: string) => string[];
  env: NodeJS.ProcessEnv;
  /** Who builds: the daemon (root) on a multi-user install, else the user. */
  who: BuildWho;
  /** The module nixremote may have written (default: DEFAULT_MODULES). */
  modulePath?: string;
}

export type Pin = { where: 'machine-line' } | { where: 'known_hosts'; file: string; line: number; as: string };

export interface HostBlockRef {
  file: string;
  line: number;
  managed: boolean;
}

export interface BuilderEntry {
  /** The host part of the store URI: what Nix hands ssh, and the ssh alias. */
  name: string;
  uri: string;
  protocol: string;
  /** As ssh will reach it, where the Host block says (else the store URI's parts or null). */
  hostName: string | null;
  port: number | null;
  user: string | null;
  keyPath: string | null;
  /** The machine line's own pinned host key (8th field). */
  hostKey: HostKey | null;
  remoteProgram: string | null;
  systems: string[];
  maxJobs: number;
  speedFactor: number;
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  /** Where it is defined: the machine line, or the module's block. */
  source: MachineSource;
  /** Written by nixremote (between its markers), so nixremote may change or remove it. */
  managed: boolean;
  /** Nix uses it now; false for a module entry that nixos-rebuild has not switched to yet. */
  active: boolean;
  /** 'machines': a machine line; 'module': a block of nixremote's NixOS module. */
  kind: 'machines' | 'module';
  hostBlock: HostBlockRef | null;
  pin: Pin | null;
  /** The machine as Nix parsed it; null for a module entry that is not active, or a disabled builder. */
  machine: ParsedMachine | null;
  /** A disabled builder's line as it would be in use (for the keeper to try it). */
  line?: ParsedMachine;
  /**
   * How its ssh user may build there: 'signed' over ssh-ng while this machine signs what it
   * builds (secret-key-files; the builder trusting that key is doctor's to see), else 'trusted'.
   */
  access: 'signed' | 'trusted';
  /** Taken out of what Nix uses (nixremote disable, or the keeper), with who, when and why; else null. */
  disabled: Disabled | null;
}

export interface Registry {
  builders: BuilderEntry[];
  /** Machine lines Nix rejects (it then ignores the whole list). */
  errors: MachinesParseError[];
  sshConfig: string;
  knownHosts: string[];
  modulePaths: string[];
  /** A Mac's own Linux builders (vm-builders.ts): recognised, never managed. */
  macBuilders: MacBuilder[];
}

export function sshConfigPath(home: string): string {
  return path.join(home, '.ssh', 'config');
}

export function readRegistry(ctx: RegistryCtx): Registry {
  const { builders, cfg } = daemonBuilders(ctx.read, ctx.env, ctx.who);
  const signs = secretKeyFiles(cfg, daemonScopes(cfg, ctx.read, ctx.who)).length > 0;
  const sshFiles = sshConfigFiles(ctx);
  const knownHosts = [
    path.join(ctx.who.home, '.ssh', 'known_hosts'),
    path.join(ctx.who.home, '.ssh', 'known_hosts2'),
    '/etc/ssh/ssh_known_hosts',
    '/etc/ssh/ssh_known_hosts2',
  ];
  // Managed: inside nixremote's block for this very builder. A user's own builders merged
  // into nixremote's nix.conf block are inside markers too, but they are still the user's.
  const texts = new Map<string, Line[]>();
  const isManaged = (src: MachineSource, name: string) => {
    if (!texts.has(src.file)) texts.set(src.file, splitLines(ctx.read(src.file) ?? ''));
    try {
      const at = findBlock(texts.get(src.file)!, machineMarkers(name));
      return at !== null && src.line > at.start + 1 && src.line <= at.end;
    } catch {
      return false; // damaged markers: not ours to touch
    }
  };

  // A machine line as an entry: in use (`machine`), or disabled inside nixremote's block.
  const fromLine = (m: ParsedMachine, use: { managed: boolean; disabled: Disabled | null }): BuilderEntry => {
    const u = parseStoreUri(m.uri);
    return complete(ctx, sshFiles, knownHosts, {
      name: u.host,
      uri: m.uri,
      protocol: u.scheme,
      access: u.scheme === 'ssh-ng' && signs ? 'signed' : 'trusted',
      hostName: null,
      port: u.port,
      user: u.user,
      keyPath: m.sshKey,
      hostKey: m.hostKey ? hostKeyFromMachinesField(m.hostKey) : null,
      remoteProgram: u.params.get('remote-program'),
      systems: m.systems,
      maxJobs: m.maxJobs,
      speedFactor: m.speedFactor,
      supportedFeatures: m.supportedFeatures,
      mandatoryFeatures: m.mandatoryFeatures,
      source: m.source,
      managed: use.managed,
      active: use.disabled === null,
      kind: 'machines',
      machine: use.disabled === null ? m : null,
      disabled: use.disabled,
      ...(use.disabled ? { line: m } : {}),
    });
  };
  const entries: BuilderEntry[] = builders.machines.map((m) =>
    fromLine(m, { managed: isManaged(m.source, parseStoreUri(m.uri).host), disabled: null }),
  );

  // Disabled builders: their lines commented inside nixremote's own blocks, in the machines
  // files Nix reads (the default, and each @file of the builders setting).
  for (const file of machinesFiles(builders, ctx.env)) {
    for (const d of disabledMachines(ctx.read(file) ?? '', file)) {
      if (!d.machine || entries.some((e) => e.name === d.name)) continue;
      entries.push(fromLine(d.machine, { managed: true, disabled: d.disabled }));
    }
  }

  // nixremote's NixOS module: once switched to, NixOS writes its builders into the machines
  // file (a link into the store) and they are listed above; the module is where they are
  // defined and managed. Before the switch they are listed as not active yet.
  const modulePaths = ctx.modulePath ? [ctx.modulePath] : DEFAULT_MODULES;
  // The keeper's live file (keeper-service.ts) holds the module's builders that are down.
  const liveFiles = new Set(
    entries
      .filter((e) => e.disabled?.by === 'keep')
      .map((e) => e.source.file)
      .filter((f) => (ctx.read(f) ?? '').startsWith(LIVE_HEADER)),
  );
  const live = (e: BuilderEntry) => e.disabled?.by === 'keep' && liveFiles.has(e.source.file);
  for (const modulePath of modulePaths) {
    const moduleText = ctx.read(modulePath);
    for (const b of moduleText === null ? [] : parseModuleBuilders(moduleText)) {
      const source = { file: modulePath, line: b.line };
      const i = entries.findIndex((e) => e.name === b.name && (!e.managed || live(e)));
      if (i >= 0) {
        // Switched to: listed above from the generated machines file; disabled in the module,
        // it stays in use until the next rebuild.
        const disabled = b.disabled ?? entries[i]!.disabled;
        entries[i] = { ...entries[i]!, source, managed: true, kind: 'module', disabled };
        continue;
      }
      entries.push(
        complete(ctx, sshFiles, knownHosts, {
          name: b.name,
          uri: `${b.protocol ?? 'ssh'}://${b.sshUser ? `${b.sshUser}@` : ''}${b.name}`,
          protocol: b.protocol ?? 'ssh',
          access: b.protocol === 'ssh-ng' && signs ? 'signed' : 'trusted',
          hostName: null,
          port: null,
          user: b.sshUser || null,
          keyPath: b.sshKey,
          hostKey: b.publicHostKey ? hostKeyFromMachinesField(b.publicHostKey) : null,
          remoteProgram: null,
          systems: b.systems,
          maxJobs: b.maxJobs,
          speedFactor: b.speedFactor,
          supportedFeatures: b.features,
          mandatoryFeatures: b.mandatoryFeatures,
          source,
          managed: true,
          active: false,
          kind: 'module',
          machine: null,
          disabled: b.disabled,
        }),
      );
    }
  }
  const mac = macBuilders((p) => ctx.read(p) !== null, builders.machines, cfg);
  return {
    builders: entries,
    errors: builders.errors,
    sshConfig: sshFiles[0]!,
    knownHosts,
    modulePaths,
    macBuilders: mac,
  };
}

/** The Host block, ssh's view of where the builder is, and where its host key is pinned. */
function complete(
  ctx: RegistryCtx,
  sshFiles: string[],
  knownHosts: string[],
  e: Omit<BuilderEntry, 'hostBlock' | 'pin'>,
): BuilderEntry {
  let section: HostSection | null = null;
  let hostBlock: HostBlockRef | null = null;
  for (const f of sshFiles) {
    const found = hostSectionsFor(ctx.read(f) ?? '', e.name)[0];
    if (found) {
      section = found;
      hostBlock = { file: f, line: found.line, managed: found.managed };
      break;
    }
  }
  const opt = (k: string) => section?.options.get(k)?.[0];
  const hostName = opt('hostname') ?? null;
  const port = e.port ?? (opt('port') ? Number(opt('port')) : null);
  const withSsh = {
    ...e,
    hostName,
    port,
    user: e.user ?? opt('user') ?? null,
    keyPath: e.keyPath ?? opt('identityfile')?.replace(/^~(?=\/)/, ctx.who.home) ?? null,
  };
  let pin: Pin | null = e.hostKey ? { where: 'machine-line' } : null;
  if (!pin) {
    // ssh looks the key up under HostKeyAlias, else the host name ([host]:port off port 22).
    const alias = opt('hostkeyalias');
    const host = hostName ?? e.name;
    const as = alias && alias !== 'none' ? alias : port && port !== 22 ? `[${host}]:${port}` : host;
    for (const f of knownHosts) {
      const hit = findKnownHost(ctx.read(f) ?? '', [as]);
      if (hit) {
        pin = { where: 'known_hosts', file: f, line: hit.line, as };
        break;
      }
    }
  }
  return { ...withSsh, hostBlock, pin };
}

/**
 * ~/.ssh/config and the files its Include lines name (relative to ~/.ssh; '*' and '?' in
 * the last part), in the order ssh reads them. Includes inside Host/Match sections are
 * taken as if unconditional, which is enough to find a block.
 */
function sshConfigFiles(ctx: RegistryCtx): string[] {
  const main = sshConfigPath(ctx.who.home);
  const files = [main];
  const visit = (file: string, depth: number) => {
    if (depth > 4) return;
    for (const e of parseSshConfig(ctx.read(file) ?? '')) {
      if (e.keyword !== 'include') continue;
      for (const pattern of e.args) {
        const abs = pattern.replace(/^~(?=\/)/, ctx.who.home);
        const full = path.isAbsolute(abs) ? abs : path.join(ctx.who.home, '.ssh', abs);
        for (const f of expand(ctx, full)) {
          files.push(f);
          visit(f, depth + 1);
        }
      }
    }
  };
  visit(main, 0);
  return files;
}

function expand(ctx: RegistryCtx, full: string): string[] {
  const base = path.basename(full);
  if (!/[*?]/.test(base)) return [full];
  const re = globRegExp(base);
  return ctx
    .readdir(path.dirname(full))
    .filter((n) => re.test(n) && !n.startsWith('.'))
    .sort()
    .map((n) => path.join(path.dirname(full), n));
}

/**
 * Builders by the names given (the store URI's host, or the whole URI); all of them when
 * none is given. A name that is not there is a usage error naming what is configured.
 */
export function selectBuilders(all: BuilderEntry[], names: string[]): BuilderEntry[] {
  const unknown = names.filter((n) => !all.some((b) => b.name === n || b.uri === n));
  if (unknown.length)
    throw new UsageError(
      `no builder named ${unknown.join(', ')} (configured: ${all.map((b) => b.name).join(', ') || 'none'})`,
    );
  return names.length ? all.filter((b) => names.includes(b.name) || names.includes(b.uri)) : all;
}

/** The machines files Nix reads: the default one and each @file of the builders setting. */
function machinesFiles(b: { value: string }, env: NodeJS.ProcessEnv): string[] {
  const files = [path.join(env.NIX_CONF_DIR || '/etc/nix', 'machines')];
  for (const e of b.value.split(/[;\n]/)) {
    const t = e.trim();
    if (t.startsWith('@')) files.push(t.slice(1).trim());
  }
  return [...new Set(files)];
}
