// Running programs. The only place that imports execa.
import { execa } from 'execa';

export interface ExecResult {
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ExecOptions {
  input?: string;
  timeoutMs?: number;
  env?: Record<string, string | undefined>;
  /** Kills the command when aborted. */
  signal?: AbortSignal;
  /** In a process group of its own, so a terminal's Ctrl-C reaches only nixremote. */
  ownGroup?: boolean;
}

export type Exec = (file: string, args: string[], opts?: ExecOptions) => Promise<ExecResult>;

/** How a command is shown to a person: shell-quoted where it needs it. */
export function showCommand(file: string, args: string[]): string {
  return [file, ...args].map(shellQuote).join(' ');
}

export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export const exec: Exec = async (file, args, opts = {}) => {
  const r = await execa(file, args, {
    reject: false,
    input: opts.input,
    stdin: opts.input === undefined ? 'ignore' : undefined,
    timeout: opts.timeoutMs,
    env: opts.env,
    // A given env is the whole environment: callers use it to drop variables (SSH_AUTH_SOCK).
    extendEnv: opts.env === undefined,
    stripFinalNewline: false,
    cancelSignal: opts.signal,
    detached: opts.ownGroup,
  });
  return {
    command: showCommand(file, args),
    exitCode: typeof r.exitCode === 'number' ? r.exitCode : r.timedOut ? 124 : 1,
    stdout: String(r.stdout ?? ''),
    stderr: String(r.stderr ?? '') + (r.failed && r.exitCode === undefined && !r.timedOut ? r.message : ''),
    timedOut: Boolean(r.timedOut),
  };
};
