// Facts first, then verdicts: everything the checks judge about one builder, each fact
// gathered once, when the first check asks for it, and then shared. A check reads facts and
// returns a verdict; it never writes one for a later check to read. The facts come from
// the machine line, root's ssh config (ssh -G), one login as Nix makes it that runs the
// builder probe, and Nix itself (the store ping and a real build).
import { localNixVersionRun, type DoctorCtx } from '../doctor/context.js';
import { daemonScopes, readNixConfig } from '../nix/effective-config.js';
import { publicKeysOf, secretKeyFiles } from '../nix/signing.js';
import { shellQuote, showCommand, type ExecResult } from '../io/exec.js';
import { formatMachineLine, parseStoreUri, type ParsedMachine, type UriParts } from '../nix/machines-file.js';
import { buildInput, buildProbe, type ProbeBuild, type ProbeInput } from '../nix/probe-build.js';
import { nixCommandFlags, parseNixVersion, storePingArgs, type Version } from '../nix/version.js';
import { hostKeyFromMachinesField, parseKeyLine, type HostKey } from '../ssh/host-key.js';
import { parseSshG } from '../ssh/ssh-config.js';
import { envWithoutAgent } from '../ssh/system-ssh.js';
import type { Names } from './entry.js';
import { PROBE_BEGIN, parseProbe, probeCommand, shellNoise, type ProbeResult } from './probe.js';
import { evidenceOf, HookSsh, reachedAuth, type Evidence, type SshRun } from './session.js';

/** How the login reaches the builder, when it is not ssh as the hook runs it (init's password session). */
export interface Transport {
  run(command: string, input?: string): Promise<ExecResult>;
}

export interface SshConfigFacts {
  run: ExecResult;
  ok: boolean;
  g: Map<string, string[]>;
  hostName: string;
  port: number;
  /** The key ssh will offer: the machine line's, else the first IdentityFile that exists. */
  keyPath: string | null;
}

export interface Login {
  run: SshRun;
  /** Authentication succeeded: ssh ran a command there, whatever the command did. */
  authOk: boolean;
  /** What the shell printed on stdout before the probe's first line. */
  noise: string;
  /** The probe's answers, when the command sent is what ran. */
  probe: ProbeResult | null;
}

export interface Ping {
  v: Version;
  r: ExecResult;
  ev: Evidence;
}

export interface FactOptions {
  /** ConnectTimeout for the login (status bounds a dead builder with it). */
  connectTimeoutS?: number;
  /** Share one connection among the runs (doctor), see HookSsh. */
  share?: boolean;
  /** The login through this instead of ssh (init's session, before anything is written). */
  transport?: Transport;
  /** The ssh user, where no ssh config says it yet (init, before it writes the Host block). */
  user?: string;
  /** The signing key init is setting up (signed access), before nix.conf names it. */
  signingKeyFile?: string;
  signal?: AbortSignal;
}

const first = (g: Map<string, string[]>, k: string) => g.get(k)?.[0];

/** The probe in evidence: a hundred lines of sh that tell a reader nothing there. */
const PROBE_SHOWN = "'<the builder probe, src/path/probe.ts>'";

export class BuilderFacts {
  readonly uri: UriParts;
  /** The host part of the store URI: what ssh is given and what Nix pins the key under. */
  readonly name: string;
  /** user@host or host, as Nix passes it to ssh. */
  readonly target: string;
  readonly scheme: string;
  readonly remoteProgram: string | null;
  /** The 8th field decoded; `pinnedBad` when it is there but is not a key. */
  readonly pinned: HostKey | null;
  readonly pinnedBad: boolean;
  readonly ssh: HookSsh;
  private memo = new Map<string, Promise<unknown>>();

  constructor(
    readonly ctx: DoctorCtx,
    readonly machine: ParsedMachine,
    readonly o: FactOptions = {},
  ) {
    this.uri = parseStoreUri(machine.uri);
    this.name = this.uri.host;
    this.target = this.uri.user ? `${this.uri.user}@${this.uri.host}` : this.uri.host;
    this.scheme = this.uri.scheme;
    this.remoteProgram = this.uri.params.get('remote-program');
    const k = machine.hostKey ? hostKeyFromMachinesField(machine.hostKey) : null;
    this.pinned = k;
    this.pinnedBad = machine.hostKey !== null && k === null;
    // The proof's input is built here while the login is made: it needs nothing of the builder.
    if (ctx.build && !o.transport) probeInput(ctx);
    this.ssh = new HookSsh(
      ctx.exec,
      { target: this.target, name: this.name, key: machine.sshKey, port: this.uri.sshPort, pinned: k },
      { share: o.share, connectTimeoutS: o.connectTimeoutS },
    );
  }

  private once<T>(key: string, make: () => Promise<T>): Promise<T> {
    let p = this.memo.get(key) as Promise<T> | undefined;
    if (!p) {
      p = make();
      // Awaited by the checks that ask, or dropped when an earlier one fails: never unhandled.
      p.catch(() => {});
      this.memo.set(key, p);
    }
    return p;
  }

  /** What nix-store (ssh://) or nix-daemon (ssh-ng://) Nix runs on the builder. */
  get program(): string {
    return this.remoteProgram ?? (this.scheme === 'ssh-ng' ? 'nix-daemon' : 'nix-store');
  }

  /** The builder's names for the catalogue's causes and fixes (the ssh user from ssh -G where it says it). */
  async names(): Promise<Names> {
    const c = this.o.transport ? null : await this.sshConfig();
    return {
      name: this.name,
      user: this.uri.user ?? c?.g.get('user')?.[0] ?? this.o.user ?? null,
      key: c?.keyPath ?? this.machine.sshKey,
      protocol: this.scheme,
      signingKeys: this.signingKeys(),
    };
  }

  /**
   * The public keys this machine's Nix signs locally built paths with, from the settings the
   * Nix that builds takes (secret-key-files, extra-secret-key-files): what a builder must
   * trust for an untrusted ssh user's inputs (signed access).
   */
  signingKeys(): string[] {
    this.keys ??= this.o.signingKeyFile ? publicKeysOf([this.o.signingKeyFile], this.ctx.read) : this.readSigningKeys();
    return this.keys;
  }

  private keys: string[] | undefined;

  private readSigningKeys(): string[] {
    const { read, env, install } = this.ctx;
    const cfg = readNixConfig(read, env, install.user.home, true);
    const who = { multiUser: install.multiUser, home: install.user.home, name: install.user.name };
    return publicKeysOf(secretKeyFiles(cfg, daemonScopes(cfg, read, who)), read);
  }

  /** The public key's base64, for finding its line in the builder's authorized_keys. */
  keyBlob(keyPath: string | null): string | null {
    if (!keyPath) return null;
    return parseKeyLine((this.ctx.read(`${keyPath}.pub`) ?? '').trim())?.base64 ?? null;
  }

  sshConfig(): Promise<SshConfigFacts> {
    return this.once('ssh-config', async () => {
      const args = sshGArgs(this.machine);
      const ready = (await prefetched.get(this.ctx))?.get(this.machine.uri);
      const run: ExecResult =
        ready !== undefined
          ? { command: showCommand('ssh', args), exitCode: 0, stdout: ready, stderr: '', timedOut: false }
          : await this.ctx.exec('ssh', args);
      const g = run.exitCode === 0 ? parseSshG(run.stdout) : new Map<string, string[]>();
      const keyPath =
        this.machine.sshKey ?? (g.get('identityfile') ?? []).find((f) => this.ctx.stat(f)?.isFile) ?? null;
      return {
        run,
        ok: run.exitCode === 0,
        g,
        hostName: first(g, 'hostname') ?? this.name,
        port: Number(first(g, 'port') ?? this.uri.sshPort ?? 22),
        keyPath,
      };
    });
  }

  /**
   * The probe, with this machine's public key to look for in authorized_keys: the machine
   * line's key, or (doctor, which reads ssh -G anyway) the one ssh will offer. status does
   * not start an ssh -G per builder for it.
   */
  private async command(): Promise<string> {
    const key = this.machine.sshKey ?? (this.o.share ? (await this.sshConfig()).keyPath : null);
    return probeCommand(this.keyBlob(key));
  }

  /**
   * The login as Nix makes it, except that only the machine line's pinned key is acceptable
   * (StrictHostKeyChecking=yes, no global known_hosts): a login that gets as far as
   * authentication has verified the host key, so one connection checks both. Its command
   * is the probe, so the same session also tells what the shell prints and what the
   * builder has. Asked for by the host key check; the login reuses it.
   */
  pinnedLogin(): Promise<SshRun> {
    return this.once('pinned-login', async () =>
      this.ssh.run([await this.command()], {
        options: ['-o', 'StrictHostKeyChecking=yes', '-o', 'GlobalKnownHostsFile=/dev/null'],
        signal: this.o.signal,
        show: PROBE_SHOWN,
        onStdout: this.watchProbe,
      }),
    );
  }

  /** The login with the key, running the probe: ssh as Nix runs it, or init's session. */
  login(): Promise<Login> {
    return this.once('login', async () => {
      let run: SshRun;
      if (this.o.transport) {
        const command = await this.command();
        const r = await this.o.transport.run(command);
        run = { ...r, ev: evidenceOf(r, { command, as: PROBE_SHOWN }) };
      } else {
        const tried = this.memo.has('pinned-login') ? await this.pinnedLogin() : null;
        run =
          tried && reachedAuth(tried)
            ? tried
            : await this.ssh.run([await this.command()], {
                timeoutMs: this.o.connectTimeoutS ? (this.o.connectTimeoutS + 5) * 1000 : 30_000,
                signal: this.o.signal,
                ownGroup: Boolean(this.o.signal),
                show: PROBE_SHOWN,
                onStdout: this.watchProbe,
              });
      }
      // ssh exits 255 for its own failures, otherwise with the remote command's status.
      const authOk = this.o.transport ? true : run.exitCode !== 255 && !run.timedOut;
      const probe = authOk && run.stdout.includes(PROBE_BEGIN) ? parseProbe(run.stdout) : null;
      return { run, authOk, noise: probe ? shellNoise(run.stdout) : '', probe };
    });
  }

  private probeSeen: string | null = '';

  /**
   * The probe's first line is there: the key was taken and the shell runs what is sent. The
   * store ping and the real build start then (startEarly), while the probe is still
   * gathering the rest of its facts on the builder.
   */
  private readonly watchProbe = (chunk: Buffer): void => {
    if (this.probeSeen === null) return;
    this.probeSeen = (this.probeSeen + chunk.toString('latin1')).slice(-64);
    if (!this.probeSeen.includes(PROBE_BEGIN)) return;
    this.probeSeen = null;
    this.startEarly();
  };

  /** Run one more command in the builder's shell (the same way as the login). */
  async run(command: string[]): Promise<SshRun> {
    if (this.o.transport) {
      const r = await this.o.transport.run(showCommand(command[0]!, command.slice(1)));
      return { ...r, ev: evidenceOf(r) };
    }
    return this.ssh.run(command, { signal: this.o.signal });
  }

  localVersion(): Promise<Version | null> {
    return localNixVersionRun(this.ctx).then((r) => (r.exitCode === 0 ? parseNixVersion(r.stdout) : null));
  }

  /**
   * The store ping of the local Nix version, against the store the build hook would open.
   * Where the login's connection is shared and still open (doctor), the ping goes over it:
   * the login has already made the connection the way Nix's ssh makes it, so the ping then
   * costs Nix's protocol and not a second key exchange. A ping that fails that way is run
   * again on a connection of its own, and that one is what is judged: a failure is always
   * Nix's own ssh, never an artefact of sharing. Not with Nix 2.15: it waits for the line
   * that ssh's LocalCommand prints, which a shared session never runs (libstore/ssh.cc; up to
   * 2.14 nothing waits, from 2.16 `ssh -O check` finds the master and it does not wait, and
   * Lix 2.93 on asks the remote shell to echo it instead).
   */
  ping(scheme?: string): Promise<Ping | null> {
    const uri = hookStoreUri(this.machine, scheme);
    return this.once(`ping ${uri}`, async () => {
      const v = await this.localVersion();
      if (!v) return null;
      const args = storePingArgs(v, uri);
      const shared = v[0] === 2 && v[1] === 15 ? null : this.ssh.sharedConnection();
      if (shared) {
        const opts = [...shared, ...(process.env.NIX_SSHOPTS ? [process.env.NIX_SSHOPTS] : [])].join(' ');
        const r = await this.ctx.exec('nix', args, {
          env: { ...envWithoutAgent(), NIX_SSHOPTS: opts },
          timeoutMs: 30_000,
        });
        if (r.exitCode === 0)
          return { v, r, ev: { command: `NIX_SSHOPTS=${shellQuote(opts)} ${r.command}`, output: pingOutput(r) } };
      }
      const r = await this.ctx.exec('nix', args, { env: envWithoutAgent(), timeoutMs: 80_000 });
      return { v, r, ev: { command: r.command, output: pingOutput(r) } };
    });
  }

  /** The system the real build is for: the machine line's first, else what the builder says. */
  async buildSystem(): Promise<string> {
    if (this.machine.systems[0]) return this.machine.systems[0];
    return (await this.login()).probe?.system ?? 'builtin';
  }

  /** The real build: the probe, with exactly the configured line, so it is this builder that takes it. */
  build(): Promise<ProbeBuild> {
    return this.once('build', async () =>
      buildProbe(this.ctx.exec, {
        system: await this.buildSystem(),
        builders: formatMachineLine(this.machine),
        exec: { env: envWithoutAgent() },
        input: probeInput(this.ctx),
        ...(this.o.signingKeyFile ? { signWith: this.o.signingKeyFile } : {}),
      }),
    );
  }

  /**
   * Whether `storePath` is in the builder's store. Through the shell when it runs commands;
   * through Nix's own protocol when a forced command answers instead (nix path-info).
   */
  async has(storePath: string): Promise<SshRun> {
    if ((await this.login()).probe || this.o.transport) return this.run(['test', '-e', storePath]);
    const v = (await this.localVersion()) ?? [2, 8, 0];
    const r = await this.ctx.exec(
      'nix',
      [...nixCommandFlags(v), 'path-info', '--store', hookStoreUri(this.machine), storePath],
      {
        env: envWithoutAgent(),
        timeoutMs: 60_000,
      },
    );
    return { ...r, ev: evidenceOf(r) };
  }

  /**
   * Start the store ping and the real build as soon as the login works: they need nothing
   * else. Only for the walk that has them (doctor's, which shares its connection); status
   * and init's look before writing do not ping.
   */
  startEarly(): void {
    if (!this.o.share) return;
    void this.ping();
    if (this.ctx.build && this.machine.systems.length) void this.build();
  }

  close(): void {
    this.ssh.close();
  }
}

const pingOutput = (r: ExecResult) => (r.stdout + r.stderr).trim();

// One input for the proof per run, started with the first builder's facts, for all of them.
const inputs = new WeakMap<DoctorCtx, ProbeInput>();
export function probeInput(ctx: DoctorCtx): ProbeInput {
  let i = inputs.get(ctx);
  if (!i) {
    i = buildInput(ctx.exec, { env: envWithoutAgent() });
    i.run.catch(() => {});
    inputs.set(ctx, i);
  }
  return i;
}

/** ssh -G's arguments for a machine: its store URI's user, host and port, as Nix gives them. */
function sshGArgs(m: ParsedMachine): string[] {
  const u = parseStoreUri(m.uri);
  return ['-G', ...(u.sshPort ? ['-p', String(u.sshPort)] : []), '--', u.user ? `${u.user}@${u.host}` : u.host];
}

const prefetched = new WeakMap<DoctorCtx, Promise<Map<string, string>>>();

/**
 * `ssh -G` for every builder at once, in one shell: one process for doctor to start instead
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

/** The store URI the build hook opens: the machine's key and host key as store settings (Machine::openStore). */
export function hookStoreUri(m: ParsedMachine, scheme?: string): string {
  const params = new URLSearchParams();
  if (m.sshKey) params.set('ssh-key', m.sshKey);
  if (m.hostKey) params.set('base64-ssh-public-host-key', m.hostKey);
  const extra = params.toString();
  let base = m.uri.includes('://') ? m.uri : `ssh://${m.uri}`;
  if (scheme) base = `${scheme}${base.slice(base.indexOf('://'))}`;
  if (!extra) return base;
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
