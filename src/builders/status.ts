// The fleet as the build hook sees it now: one ssh login per builder made the way Nix makes
// it, a few read-only facts from the builder, and the build slots this machine's build
// hook holds. It runs no build and changes nothing.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Exec } from '../io/exec.js';
import { envWithoutAgent, nixSshArgs, pinnedKnownHosts } from '../ssh/system-ssh.js';
import { classifySshError } from '../ssh/ssh-errors.js';
import { asShCommand } from '../remote/scripts.js';
import { parseStoreUri } from '../nix/machines-file.js';
import { mapLimit } from '../util/map-limit.js';
import type { BuilderEntry } from './registry.js';

/** What init writes as ConnectTimeout: a dead builder answers no later than this. */
export const CONNECT_TIMEOUT_S = 10;

export type State = 'idle' | 'busy' | 'full' | 'down' | 'broken';

export interface BuilderStatus {
  name: string;
  uri: string;
  state: State;
  reachable: boolean;
  /** The ssh login and the facts script, end to end. */
  latencyMs: number | null;
  nixVersion: string | null;
  slotsInUse: number;
  maxJobs: number;
  /** The builder's 1-minute load average and its cores. */
  load: number | null;
  cores: number | null;
  /** Free bytes on the filesystem of the builder's /nix/store. */
  storeFreeBytes: number | null;
  error?: string;
}

export interface StatusCtx {
  exec: Exec;
  /** This machine's held flock locks, as /proc/locks lists them; null where there is none. */
  locks: () => string | null;
  /** Nix's state directory, whose current-load/ holds the build hook's slot locks. */
  stateDir: string;
  stat: (p: string) => { dev: number; ino: number } | null;
  /** Aborted when the user stops a --watch: the logins in flight are ended. */
  signal?: AbortSignal;
}

export function realStatusCtx(exec: Exec, signal?: AbortSignal, env: NodeJS.ProcessEnv = process.env): StatusCtx {
  return {
    exec,
    signal,
    locks: () => {
      try {
        return fs.readFileSync('/proc/locks', 'utf8');
      } catch {
        return null;
      }
    },
    stateDir: env.NIX_STATE_DIR || '/nix/var/nix',
    stat: (p) => {
      try {
        const s = fs.statSync(p);
        return { dev: s.dev, ino: s.ino };
      } catch {
        return null;
      }
    },
  };
}

/**
 * The build hook takes slot N of a machine by flock on current-load/URI-N, with '/' in the
 * URI as '_' (build-remote.cc: escapeUri, openSlotLock), and holds it while the build runs
 * there. A slot is in use while some process holds that lock.
 */
export function slotLockPath(stateDir: string, uri: string, slot: number): string {
  return path.join(stateDir, 'current-load', `${uri.replace(/\//g, '_')}-${slot}`);
}

/** "MAJOR:MINOR:INODE" of every flock held (not waited for) in /proc/locks text. */
export function heldFlocks(procLocks: string): Set<string> {
  const held = new Set<string>();
  for (const line of procLocks.split('\n')) {
    // "1: FLOCK  ADVISORY  WRITE 1234 00:2e:5678 0 EOF"; waiters have "->" after the number.
    const f = line.trim().split(/\s+/);
    if (f[1] !== 'FLOCK' || !f[5]) continue;
    const [maj, min, ino] = f[5].split(':');
    held.add(`${parseInt(maj!, 16)}:${parseInt(min!, 16)}:${ino}`);
  }
  return held;
}

/** glibc's major/minor of a dev_t, as /proc/locks shows them. */
export function devKey(dev: number, ino: number): string {
  const major = (Math.floor(dev / 256) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | (Math.floor(dev / 4096) & ~0xff & 0xfffff);
  return `${major}:${minor}:${ino}`;
}

export function slotsInUse(ctx: StatusCtx, uri: string, maxJobs: number, held: Set<string> | null): number {
  if (!held) return 0;
  let n = 0;
  for (let slot = 0; slot < maxJobs; slot++) {
    const st = ctx.stat(slotLockPath(ctx.stateDir, uri, slot));
    if (st && held.has(devKey(st.dev, st.ino))) n++;
  }
  return n;
}

/** Read-only facts, one per NIXREMOTE: line, so a chatty shell cannot be taken for an answer. */
export const FACTS_SCRIPT = (program: string) => `
echo "NIXREMOTE:version=$(${program} --version 2>&1 | head -n 1)"
if [ -r /proc/loadavg ]; then read l1 rest < /proc/loadavg; else l1=$(sysctl -n vm.loadavg 2>/dev/null | awk '{ print $2 }'); fi
echo "NIXREMOTE:load=$l1"
echo "NIXREMOTE:cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null)"
echo "NIXREMOTE:free-kb=$(df -Pk /nix/store 2>/dev/null | awk 'NR == 2 { print $4 }')"
`;

export function parseFacts(out: string): {
  version: string | null;
  load: number | null;
  cores: number | null;
  freeKb: number | null;
} {
  const kv = new Map<string, string>();
  for (const line of out.split('\n')) {
    const m = /^NIXREMOTE:([a-z-]+)=(.*)$/.exec(line.trim());
    if (m) kv.set(m[1]!, m[2]!.trim());
  }
  const num = (k: string) => (kv.get(k) && Number.isFinite(Number(kv.get(k))) ? Number(kv.get(k)) : null);
  // "nix-store (Nix) 2.8.0" → "2.8.0"; anything else (command not found) is no version.
  const v = /\(([^)]*Nix[^)]*)\)\s+(\S+)/.exec(kv.get('version') ?? '');
  return { version: v ? v[2]! : null, load: num('load'), cores: num('cores'), freeKb: num('free-kb') };
}

/** ssh as the build hook runs it, with a connect timeout that bounds a dead builder. */
function sshArgs(b: BuilderEntry, knownHosts: string | null, command: string): string[] {
  const u = parseStoreUri(b.uri);
  return nixSshArgs(u.user ? `${u.user}@${u.host}` : u.host, [command], {
    key: b.machine?.sshKey,
    knownHosts,
    options: ['-o', `ConnectTimeout=${CONNECT_TIMEOUT_S}`],
  });
}

function remoteProgram(b: BuilderEntry): string {
  return b.remoteProgram ?? (b.protocol === 'ssh-ng' ? 'nix-daemon' : 'nix-store');
}

export async function builderStatus(ctx: StatusCtx, b: BuilderEntry, held: Set<string> | null): Promise<BuilderStatus> {
  const base = { name: b.name, uri: b.uri, maxJobs: b.maxJobs, slotsInUse: slotsInUse(ctx, b.uri, b.maxJobs, held) };
  const down = (error: string): BuilderStatus => ({
    ...base,
    state: 'down',
    reachable: false,
    latencyMs: null,
    nixVersion: null,
    load: null,
    cores: null,
    storeFreeBytes: null,
    error,
  });
  if (b.protocol !== 'ssh' && b.protocol !== 'ssh-ng') return down(`${b.uri} is not reached over ssh`);
  // Nix writes the machine line's pinned key to a known_hosts file of its own for ssh.
  const dir = b.hostKey ? fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-status-')) : null;
  try {
    const kh = dir ? pinnedKnownHosts(dir, b.name, b.hostKey!) : null;
    const t0 = Date.now();
    // A backstop past ConnectTimeout for a link that connects and then stalls.
    const r = await ctx.exec('ssh', sshArgs(b, kh, asShCommand(FACTS_SCRIPT(remoteProgram(b)))), {
      env: envWithoutAgent(),
      timeoutMs: (CONNECT_TIMEOUT_S + 5) * 1000,
      signal: ctx.signal,
      ownGroup: true,
    });
    const latencyMs = Date.now() - t0;
    if (r.timedOut) return down(`no answer within ${CONNECT_TIMEOUT_S + 5} s`);
    if (r.exitCode === 255) return down(classifySshError(r.stderr, { name: b.name, user: b.user }).cause);
    const f = parseFacts(r.stdout);
    const state: State = !f.version
      ? 'broken'
      : base.slotsInUse >= b.maxJobs
        ? 'full'
        : base.slotsInUse > 0
          ? 'busy'
          : 'idle';
    return {
      ...base,
      state,
      reachable: true,
      latencyMs,
      nixVersion: f.version,
      load: f.load,
      cores: f.cores,
      storeFreeBytes: f.freeKb === null ? null : f.freeKb * 1024,
      ...(f.version ? {} : { error: `${remoteProgram(b)} does not run there: nixremote doctor ${b.name} says why` }),
    };
  } finally {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * How many builders status and doctor look at side by side. Each costs an ssh process and its key
 * exchange on this machine's CPU, so past a few per core they only queue for it; a dead
 * builder costs no CPU while it waits, which is why the number is well above the cores.
 * (`npm run bench` measures status on 32 builders at several widths.)
 */
export function fleetWidth(): number {
  return Math.max(4, os.availableParallelism() * 4);
}

export async function fleetStatus(
  ctx: StatusCtx,
  builders: BuilderEntry[],
  width = fleetWidth(),
): Promise<BuilderStatus[]> {
  const locks = ctx.locks();
  const held = locks === null ? null : heldFlocks(locks);
  return mapLimit(builders, width, (b) => builderStatus(ctx, b, held));
}
