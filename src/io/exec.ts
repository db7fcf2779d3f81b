// Running programs: the one place that starts a child process for the product code.
import { spawn, type ChildProcess } from 'node:child_process';

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
  /** Each piece of standard output as it arrives (all of it is still in the result). */
  onStdout?: (chunk: Buffer) => void;
}

export type Exec = (file: string, args: string[], opts?: ExecOptions) => Promise<ExecResult>;

/** How a command is shown to a person: shell-quoted where it needs it. */
export function showCommand(file: string, args: string[]): string {
  return [file, ...args].map(shellQuote).join(' ');
}

export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Children still running, ended with this process (a speculative build, say), unless in a group of their own. */
const running = new Set<ChildProcess>();
let exitHook = false;

/**
 * node:child_process directly: execa, which this replaced, cost doctor a tenth of its CPU
 * in loading and per-call machinery (measured with node --cpu-prof), for the few things
 * used here: input, a timeout, a whole environment, an abort signal, a process group.
 */
export const exec: Exec = (file, args, opts = {}) =>
  new Promise((resolve) => {
    const command = showCommand(file, args);
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        // A given env is the whole environment: callers use it to drop variables (SSH_AUTH_SOCK).
        env: opts.env ?? process.env,
        detached: opts.ownGroup,
      });
    } catch (e) {
      resolve({ command, exitCode: 1, stdout: '', stderr: `${command}: ${(e as Error).message}`, timedOut: false });
      return;
    }
    if (!opts.ownGroup) {
      running.add(child);
      if (!exitHook) {
        exitHook = true;
        process.on('exit', () => {
          for (const c of running) c.kill('SIGTERM');
        });
      }
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => {
      out.push(b);
      opts.onStdout?.(b);
    });
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    let timedOut = false;
    let spawnError: Error | null = null;
    const kill = () => {
      child.kill('SIGTERM');
      // As execa did: what ignores SIGTERM gets SIGKILL 5 s later.
      setTimeout(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'), 5000).unref();
    };
    const timer =
      opts.timeoutMs === undefined
        ? null
        : setTimeout(() => {
            timedOut = true;
            kill();
          }, opts.timeoutMs);
    const onAbort = () => kill();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.input !== undefined) {
      // A child that exits without reading its input is not an error here.
      child.stdin!.on('error', () => {});
      child.stdin!.end(opts.input);
    }
    child.on('error', (e) => {
      spawnError = e;
    });
    child.on('close', (code) => {
      running.delete(child);
      if (timer) clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      const stderr = Buffer.concat(err).toString('utf8');
      resolve({
        command,
        exitCode: spawnError ? 1 : typeof code === 'number' ? code : timedOut ? 124 : 1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: spawnError ? `${stderr}${command}: ${spawnError.message}` : stderr,
        timedOut,
      });
    });
  });
