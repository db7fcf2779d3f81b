// What doctor's checks may do to the world, handed in rather than imported, so that the
// unit tests can give recorded command output instead.
import * as dns from 'node:dns/promises';
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { Exec, ExecResult } from '../io/exec.js';
import { readText } from '../io/files.js';
import { fetchHostKey } from '../io/ssh2-session.js';
import type { HostKey } from '../ssh/host-key.js';
import { DAEMON_SOCKET, type Install } from '../init/install.js';
import { targetByName, type TargetCtx } from '../targets/index.js';

export type TcpResult = { ok: true; ms: number } | { ok: false; code: string; message: string };

export interface FileInfo {
  uid: number;
  mode: number;
  isFile: boolean;
}

export interface DoctorCtx {
  exec: Exec;
  read: (p: string) => string | null;
  stat: (p: string) => FileInfo | null;
  resolve: (host: string) => Promise<string[]>;
  tcp: (host: string, port: number, timeoutMs: number) => Promise<TcpResult>;
  hostKey: (host: string, port: number) => Promise<HostKey>;
  env: NodeJS.ProcessEnv;
  install: Install;
  build: boolean;
  /** The running nix-daemon, if one is visible: when it started and its PATH; 'unseen'
   * where processes cannot be looked at (no /proc, as on macOS). */
  daemon: () => DaemonInfo | null | 'unseen';
  mtimeMs: (p: string) => number | null;
  /** Derivation to match against the builders (--drv/--attr), already read. */
  drv: DrvInfo | null;
  /** process.platform, handed in (targets read it; nothing else may). */
  platform: string;
  /** doctor --strict: what is sound but could be tighter is a warning (a trusted user where signing would do). */
  strict?: boolean;
}

/**
 * On NixOS and nix-darwin the machines file and /etc/ssh are generated from the system
 * configuration: a fix is written there by the user, never into the generated file (which
 * the next rebuild would replace). Returns the words for where, or null when the files are
 * the user's to edit.
 */
export function declarativeHome(ctx: DoctorCtx): string | null {
  if (ctx.install.settingsFile !== null) return null;
  return targetByName(ctx.install.target).buildersHome(targetCtxOf(ctx));
}

/** What a target needs of the machine, from doctor's context (a unit test's fixtures). */
export function targetCtxOf(ctx: DoctorCtx): TargetCtx {
  return { exists: (p) => ctx.stat(p) !== null, read: ctx.read, platform: ctx.platform, confDir: ctx.install.confDir };
}

export interface DaemonInfo {
  pid: number;
  startedMs: number;
  path: string | null;
}

export interface DrvInfo {
  path: string;
  system: string;
  requiredFeatures: string[];
}

export function realCtx(exec: Exec, install: Install, opts: { build: boolean; drv: DrvInfo | null }): DoctorCtx {
  return {
    exec,
    read: readText,
    stat: (p) => {
      try {
        const s = fs.statSync(p);
        return { uid: s.uid, mode: s.mode & 0o7777, isFile: s.isFile() };
      } catch {
        return null;
      }
    },
    resolve: async (host) => (await dns.lookup(host, { all: true })).map((a) => a.address),
    tcp: (host, port, timeoutMs) =>
      new Promise((resolve) => {
        const t0 = Date.now();
        const s = net.connect({ host, port });
        const timer = setTimeout(() => {
          s.destroy();
          resolve({ ok: false, code: 'ETIMEDOUT', message: `no answer within ${timeoutMs / 1000} s` });
        }, timeoutMs);
        s.on('connect', () => {
          clearTimeout(timer);
          s.destroy();
          resolve({ ok: true, ms: Date.now() - t0 });
        });
        s.on('error', (e: NodeJS.ErrnoException) => {
          clearTimeout(timer);
          resolve({ ok: false, code: e.code ?? 'ERROR', message: e.message });
        });
      }),
    hostKey: (host, port) => fetchHostKey({ host, port }),
    daemon: findDaemon,
    mtimeMs: (p) => {
      try {
        return fs.statSync(p).mtimeMs;
      } catch {
        return null;
      }
    },
    env: process.env,
    install,
    build: opts.build,
    drv: opts.drv,
    platform: process.platform,
  };
}

/**
 * The oldest nix-daemon serving the socket this machine's Nix uses (the listener; its
 * children serve connections). nix-daemon runs in a mount namespace of its own, so a
 * daemon is recognised by the socket file it sees (through /proc/PID/root) being the very
 * file we see; daemons of containers and other namespaces are not ours. Its start is
 * /proc/PID/stat field 22, in clock ticks since boot, placed in time by /proc/uptime.
 */
function findDaemon(): DaemonInfo | null | 'unseen' {
  let uptimeMs: number;
  let sock: fs.Stats;
  try {
    uptimeMs = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;
  } catch {
    return 'unseen';
  }
  try {
    sock = fs.statSync(DAEMON_SOCKET);
  } catch {
    return null;
  }
  const now = Date.now();
  const ticks = 100; // USER_HZ is 100 on every Linux architecture Nix supports
  let best: DaemonInfo | null = null;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/comm`, 'utf8').trim() !== 'nix-daemon') continue;
      const theirs = fs.statSync(`/proc/${d}/root${DAEMON_SOCKET}`);
      if (theirs.ino !== sock.ino || theirs.dev !== sock.dev) continue;
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const startedMs = now - uptimeMs + (Number(fields[19]) / ticks) * 1000;
      let envPath: string | null = null;
      try {
        envPath =
          fs
            .readFileSync(`/proc/${d}/environ`, 'utf8')
            .split('\0')
            .find((e) => e.startsWith('PATH='))
            ?.slice(5) ?? null;
      } catch {
        envPath = null;
      }
      if (!best || startedMs < best.startedMs) best = { pid: Number(d), startedMs, path: envPath };
    } catch {
      // the process went away, or is not ours to look at
    }
  }
  return best;
}

// One `nix --version` per run, for the local checks and every builder alike.
const versions = new WeakMap<DoctorCtx, Promise<ExecResult>>();
export function localNixVersionRun(ctx: DoctorCtx): Promise<ExecResult> {
  let v = versions.get(ctx);
  if (!v) {
    v = ctx.exec('nix', ['--version']);
    versions.set(ctx, v);
  }
  return v;
}
