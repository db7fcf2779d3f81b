// One builder as doctor sees it, and how its checks reach it: ssh run the way the build
// hook runs it, and the store URI the build hook opens.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DoctorCtx } from '../context.js';
import { showCommand, type ExecResult } from '../../io/exec.js';
import type { Evidence } from '../types.js';
import { formatMachineLine, parseStoreUri, type ParsedMachine } from '../../nix/machines-file.js';
import { buildProbe, type ProbeBuild } from '../../nix/probe-build.js';
import type { HostKey } from '../../ssh/host-key.js';
import { envWithoutAgent, nixSshArgs, pinnedKnownHosts } from '../../ssh/system-ssh.js';
import { asShCommand, PROBE_SCRIPT, type ProbeResult } from '../../remote/scripts.js';
import { parseNixVersion, storePingArgs, type Version } from '../../nix/version.js';

export interface BuilderState {
  ctx: DoctorCtx;
  machine: ParsedMachine;
  /** The host part of the store URI: what ssh is given and what Nix pins the key under. */
  name: string;
  /** user@host or host, as Nix passes it to ssh. */
  target: string;
  /** A port in the store URI (Nix 2.31+ passes it as -p). */
  uriPort: number | null;
  scheme: string;
  remoteProgram: string | null;
  g: Map<string, string[]>;
  hostName: string;
  port: number;
  keyPath: string | null;
  pinned: HostKey | null;
  tmpDir: string;
  authStdout: string;
  probe: ProbeResult | null;
  /**
   * The store ping and the real build, started as soon as the login works instead of after
   * the checks between (the shell, the remote Nix, capabilities, trust), which they do not
   * depend on. Their checks still wait for those and report them in the same place; a
   * builder that fails earlier never reaches them, and they are not started.
   */
  early: { ping: ReturnType<typeof storePing>; build: Promise<ProbeBuild> | null } | null;
  /** The login tried with only the pinned host key acceptable (see `pinnedLogin`). */
  attempt: ReturnType<typeof ssh> | null;
  /** The builder probe's run, when the login itself ran it. */
  probeRun: Awaited<ReturnType<typeof ssh>> | null;
}

export function builderState(ctx: DoctorCtx, machine: ParsedMachine): BuilderState {
  const u = parseStoreUri(machine.uri);
  return {
    ctx,
    machine,
    name: u.host,
    target: u.user ? `${u.user}@${u.host}` : u.host,
    uriPort: u.port,
    scheme: u.scheme,
    remoteProgram: u.params.get('remote-program'),
    g: new Map(),
    hostName: u.host,
    port: u.port ?? 22,
    keyPath: machine.sshKey,
    pinned: null,
    tmpDir: '',
    authStdout: '',
    probe: null,
    early: null,
    attempt: null,
    probeRun: null,
  };
}

export const first = (s: BuilderState, k: string) => s.g.get(k)?.[0];

/**
 * ssh as the build hook runs it (src/libstore/ssh.cc): -x -a, the machine's key, its
 * pinned host key. The first login also opens a control master that the later checks'
 * commands reuse, so they cost a round trip instead of a handshake each; the store ping
 * and the build go through Nix's own ssh, unshared. The master ends itself 3 s after its
 * last session (a check after a long build opens a new one): no `ssh -O exit` to start,
 * since under load each process doctor starts holds up all the others (node --cpu-prof on
 * 8 builders: half of doctor's time was spent in spawn).
 */
function sshArgs(s: BuilderState, command: string[], extra: string[] = []): string[] {
  const control = [
    ...extra,
    '-o',
    'ControlMaster=auto',
    '-o',
    `ControlPath=${path.join(s.tmpDir, 'cm')}`,
    '-o',
    'ControlPersist=3',
  ];
  return nixSshArgs(s.target, command, {
    key: s.machine.sshKey,
    port: s.uriPort,
    knownHosts: s.pinned ? pinnedKnownHosts(s.tmpDir, s.name, s.pinned) : null,
    options: control,
  });
}

export async function ssh(s: BuilderState, command: string[], timeoutMs = 30_000, extra: string[] = []) {
  const r = await s.ctx.exec('ssh', sshArgs(s, command, extra), { env: envWithoutAgent(), timeoutMs });
  const ev: Evidence = {
    command: r.command,
    output: (r.stdout + r.stderr).trim().slice(0, 2000) || `(no output, exit ${r.exitCode})`,
  };
  return { ...r, ev };
}

export const remoteCommand = (s: BuilderState) =>
  s.remoteProgram ?? (s.scheme === 'ssh-ng' ? 'nix-daemon' : 'nix-store');

// One `nix --version` per doctor run, for the local checks and every builder alike.
const versions = new WeakMap<DoctorCtx, Promise<ExecResult>>();
export function localNixVersionRun(ctx: DoctorCtx): Promise<ExecResult> {
  let v = versions.get(ctx);
  if (!v) {
    v = ctx.exec('nix', ['--version']);
    versions.set(ctx, v);
  }
  return v;
}
const localNixVersion = async (ctx: DoctorCtx): Promise<Version | null> => {
  const r = await localNixVersionRun(ctx);
  return r.exitCode === 0 ? parseNixVersion(r.stdout) : null;
};

/** The store ping of the local Nix version, against the store the build hook would open. */
export async function storePing(s: BuilderState) {
  const v = await localNixVersion(s.ctx);
  if (!v) return null;
  const r = await s.ctx.exec('nix', storePingArgs(v, hookStoreUri(s)), { env: envWithoutAgent(), timeoutMs: 80_000 });
  return { v, r, ev: { command: r.command, output: (r.stdout + r.stderr).trim() } };
}

/**
 * The login as Nix makes it, except that only the machine line's pinned key is acceptable
 * (StrictHostKeyChecking=yes, no global known_hosts): a login that gets as far as
 * authentication has verified the host key, so one connection checks both, where the host
 * key would otherwise take a connection of its own. Its command is the builder probe, so
 * that the same session also tells what the shell prints (whatever comes before the
 * probe's first line) and what Nix the builder has. Made once; the login check reuses it.
 */
export function pinnedLogin(s: BuilderState): ReturnType<typeof ssh> {
  s.attempt ??= ssh(s, [asShCommand(PROBE_SCRIPT)], 30_000, [
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'GlobalKnownHostsFile=/dev/null',
  ]);
  return s.attempt;
}

/** ssh got to authentication (so past the host key): it succeeded, or was refused there. */
export const reachedAuth = (r: { exitCode: number; stderr: string }) =>
  r.exitCode === 0 || /Permission denied \(|Too many authentication failures/.test(r.stderr);

/** ssh -G's arguments for a machine: its store URI's user, host and port, as Nix gives them. */
function sshGArgs(m: ParsedMachine): string[] {
  const u = parseStoreUri(m.uri);
  return ['-G', ...(u.port ? ['-p', String(u.port)] : []), '--', u.user ? `${u.user}@${u.host}` : u.host];
}

const prefetched = new WeakMap<DoctorCtx, Promise<Map<string, string>>>();

/**
 * \`ssh -G\` for every builder at once, in one shell: one process for doctor to start instead
 * of one per builder (each start holds doctor up while the machine is busy). A builder
 * whose config ssh cannot read is left out, and its own ssh -G says why.
 */
export function prefetchSshConfigs(ctx: DoctorCtx, machines: ParsedMachine[]): void {
  if (machines.length < 2) return;
  const script = machines
    .map((m) => `${showCommand('ssh', sshGArgs(m))} 2>/dev/null; echo "NIXREMOTE:rc=$?"`)
    .join('\n');
  prefetched.set(
    ctx,
    ctx.exec('sh', ['-c', script]).then((r) => {
      const out = new Map<string, string>();
      const parts = r.stdout.split(/^NIXREMOTE:rc=(\d+)\n/m);
      machines.forEach((m, i) => {
        if (parts[2 * i + 1] === '0') out.set(m.uri, parts[2 * i]!);
      });
      return out;
    }),
  );
}

/** The builder's effective ssh config, \`ssh -G\` as the build user. */
export async function sshConfig(s: BuilderState): Promise<ExecResult> {
  const args = sshGArgs(s.machine);
  const ready = (await prefetched.get(s.ctx))?.get(s.machine.uri);
  if (ready !== undefined)
    return { command: showCommand('ssh', args), exitCode: 0, stdout: ready, stderr: '', timedOut: false };
  return s.ctx.exec('ssh', args);
}

/** The system the real build is for: the machine line's first, else what the builder says. */
export const buildSystem = (s: BuilderState) => s.machine.systems[0] ?? s.probe?.system ?? 'builtin';

/** The real build: the probe, with exactly the configured line, so it is this builder that takes it. */
export function realBuild(s: BuilderState): Promise<ProbeBuild> {
  return buildProbe(s.ctx.exec, {
    system: buildSystem(s),
    builders: formatMachineLine(s.machine),
    exec: { env: envWithoutAgent() },
  });
}

/** Start the store ping and the real build once the login works (see `early`). */
export function startEarly(s: BuilderState): void {
  // Without a system on the machine line, the build waits for the builder to say its own.
  const build = s.ctx.build && s.machine.systems.length ? realBuild(s) : null;
  s.early = { ping: storePing(s), build };
  // Awaited by their checks, or dropped when an earlier check fails: never unhandled.
  s.early.ping.catch(() => {});
  build?.catch(() => {});
}

/** The store URI the build hook opens: the machine's key and host key as store settings (Machine::openStore). */
export function hookStoreUri(s: BuilderState): string {
  const params = new URLSearchParams();
  if (s.machine.sshKey) params.set('ssh-key', s.machine.sshKey);
  if (s.machine.hostKey) params.set('base64-ssh-public-host-key', s.machine.hostKey);
  const extra = params.toString();
  if (!extra) return s.machine.uri;
  const base = s.machine.uri.includes('://') ? s.machine.uri : `ssh://${s.machine.uri}`;
  return `${base}${base.includes('?') ? '&' : '?'}${extra}`;
}

/** Why Nix would not send a derivation to this machine (build-remote.cc: system, allSupported, mandatoryMet). */
export function cannotTake(
  m: { systems: string[]; supportedFeatures: string[]; mandatoryFeatures: string[] },
  system: string,
  required: string[],
): string | null {
  if (system !== 'builtin' && m.systems.length && !m.systems.includes(system))
    return `it needs system ${system}; the builder offers ${m.systems.join(', ')}`;
  const offered = new Set([...m.supportedFeatures, ...m.mandatoryFeatures]);
  const missing = required.filter((f) => !offered.has(f));
  if (missing.length) return `it requires feature ${missing.join(', ')}, which the builder does not offer`;
  const unmet = m.mandatoryFeatures.filter((f) => !required.includes(f));
  if (unmet.length) return `the builder only takes derivations that require ${unmet.join(', ')}`;
  return null;
}

export async function cleanup(s: BuilderState): Promise<void> {
  if (!s.tmpDir) return;
  await fs.promises.rm(s.tmpDir, { recursive: true, force: true });
}
