// What doctor's checks may do to the world, handed in rather than imported, so that the
// unit tests can give recorded command output instead.
import * as dns from 'node:dns/promises';
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { Exec } from '../io/exec.js';
import { readText } from '../io/files.js';
import { fetchHostKey } from '../io/ssh2-session.js';
import type { HostKey } from '../ssh/host-key.js';
import type { Install } from '../init/install.js';

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
  /** The running nix-daemon, if one is visible: when it started and its PATH. */
  daemon: () => DaemonInfo | null;
  mtimeMs: (p: string) => number | null;
  /** Derivation to match against the builders (--drv/--attr), already read. */
  drv: DrvInfo | null;
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
  };
}

/**
 * The oldest process named nix-daemon (the listener; its children serve connections).
 * Start time from /proc/PID/stat (field 22, clock ticks since boot) and /proc/stat btime.
 */
function findDaemon(): DaemonInfo | null {
  let btime: number;
  try {
    btime = Number(/^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'))![1]);
  } catch {
    return null;
  }
  const ticks = 100; // USER_HZ is 100 on every Linux architecture Nix supports
  let best: DaemonInfo | null = null;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/comm`, 'utf8').trim() !== 'nix-daemon') continue;
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const startedMs = (btime + Number(fields[19]) / ticks) * 1000;
      let envPath: string | null = null;
      try {
        envPath = fs.readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').find((e) => e.startsWith('PATH='))?.slice(5) ?? null;
      } catch {
        envPath = null;
      }
      if (!best || startedMs < best.startedMs) best = { pid: Number(d), startedMs, path: envPath };
    } catch {
      // the process went away
    }
  }
  return best;
}
