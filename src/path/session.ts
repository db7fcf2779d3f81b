// ssh as the build hook runs it, in one place: the arguments Nix gives ssh (-x -a, the
// machine line's key, a port from the store URI on Nix 2.31+), the machine line's pinned
// host key written to a known_hosts file of its own the way Nix writes it, the user's
// environment without an agent (the daemon has none), no terminal to ask on (BatchMode),
// and what each run printed kept as evidence. doctor, init's checks and status all reach
// a builder through this.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { shellQuote, type Exec, type ExecResult } from '../io/exec.js';
import type { HostKey } from '../ssh/host-key.js';
import { envWithoutAgent, nixSshArgs, pinnedKnownHosts } from '../ssh/system-ssh.js';

export interface Evidence {
  command: string;
  output: string;
}

export interface SshRun extends ExecResult {
  ev: Evidence;
}

/** What of a machine line decides how its ssh runs. */
export interface HookTarget {
  /** user@host or host, as Nix passes it to ssh. */
  target: string;
  /** The store URI's host: what Nix pins the host key under. */
  name: string;
  key: string | null;
  /** A port in the store URI (Nix 2.31+ passes it as -p). */
  port: number | null;
  pinned: HostKey | null;
}

export interface HookSshOptions {
  /**
   * Share one connection among this session's runs (a control master that ends itself 3 s
   * after its last run): later checks cost a round trip instead of a handshake. The real
   * build never shares it; the store ping may (sharedConnection).
   */
  share?: boolean;
  /** ConnectTimeout, for runs that must answer within a bound (status). */
  connectTimeoutS?: number;
}

export interface RunOptions {
  timeoutMs?: number;
  /** Extra ssh options for this run only. */
  options?: string[];
  input?: string;
  signal?: AbortSignal;
  ownGroup?: boolean;
  /** How to show the remote command in the evidence, when it is too long to read (the probe). */
  show?: string;
  onStdout?: (chunk: Buffer) => void;
}

/** What a run printed, as evidence: both streams, cut to a readable length. */
export function evidenceOf(r: ExecResult, show?: { command: string; as: string }): Evidence {
  return {
    command: show ? r.command.replace(shellQuote(show.command), show.as) : r.command,
    output: (r.stdout + r.stderr).trim().slice(0, 2000) || `(no output, exit ${r.exitCode})`,
  };
}

export class HookSsh {
  private dir: string | null = null;

  constructor(
    private readonly exec: Exec,
    readonly t: HookTarget,
    private readonly o: HookSshOptions = {},
  ) {}

  private tmp(): string {
    this.dir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-ssh-'));
    return this.dir;
  }

  /** Nix writes the pinned key to a known_hosts file of its own, under the store URI's host. */
  private knownHosts(): string | null {
    return this.t.pinned ? pinnedKnownHosts(this.tmp(), this.t.name, this.t.pinned) : null;
  }

  args(command: string[], extra: string[] = []): string[] {
    const options = [...extra];
    if (this.o.connectTimeoutS) options.push('-o', `ConnectTimeout=${this.o.connectTimeoutS}`);
    if (this.o.share)
      options.push(
        '-o',
        'ControlMaster=auto',
        '-o',
        `ControlPath=${path.join(this.tmp(), 'cm')}`,
        '-o',
        'ControlPersist=3',
      );
    return nixSshArgs(this.t.target, command, {
      key: this.t.key,
      port: this.t.port,
      knownHosts: this.knownHosts(),
      options,
    });
  }

  /**
   * ssh options that send another ssh (Nix's, given them in NIX_SSHOPTS) over this session's
   * shared connection while it is open, or null: not shared, not open yet, or a path that
   * NIX_SSHOPTS (split at white space) cannot carry. With ControlMaster=no an ssh that finds
   * no master there connects on its own (ssh_config(5), ControlPath).
   */
  sharedConnection(): string[] | null {
    if (!this.o.share || !this.dir) return null;
    const socket = path.join(this.dir, 'cm');
    if (/\s/.test(socket) || !fs.existsSync(socket)) return null;
    return ['-o', 'ControlMaster=no', '-o', `ControlPath=${socket}`];
  }

  async run(command: string[], o: RunOptions = {}): Promise<SshRun> {
    const r = await this.exec('ssh', this.args(command, o.options), {
      env: envWithoutAgent(),
      timeoutMs: o.timeoutMs ?? 30_000,
      input: o.input,
      signal: o.signal,
      ownGroup: o.ownGroup,
      onStdout: o.onStdout,
    });
    return { ...r, ev: evidenceOf(r, o.show ? { command: command[command.length - 1]!, as: o.show } : undefined) };
  }

  /** The temporary files (the pinned known_hosts, the control socket) go. */
  close(): void {
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
  }
}

/** ssh got to authentication (so past the host key): it succeeded, or was refused there. */
export const reachedAuth = (r: { exitCode: number; stderr: string }) =>
  r.exitCode !== 255 || /Permission denied \(|Too many authentication failures/.test(r.stderr);
