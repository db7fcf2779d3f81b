// The fleet as the build hook sees it now: one ssh login per builder made the way Nix makes
// it, a few read-only facts from the builder, and the build slots this machine's build
// hook holds. It runs no build and changes nothing.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Exec } from '../io/exec.js';
import { localNixVersionRun, realCtx, type DoctorCtx } from '../doctor/context.js';
import { runChecks } from '../doctor/runner.js';
import type { Install } from '../init/install.js';
import { BuilderFacts } from '../path/facts.js';
import { pathChecks } from '../path/walk.js';
import { mapLimit } from '../util/map-limit.js';
import { atLeast, isLix, parseNixVersion, type Version } from '../nix/version.js';
import type { BuilderEntry } from './registry.js';
import { uriHost, type ParsedMachine } from '../nix/machines-file.js';
import type { Reach } from '../why/model.js';

/** What init writes as ConnectTimeout: a dead builder answers no later than this. */
export const CONNECT_TIMEOUT_S = 10;

export type State = 'idle' | 'busy' | 'full' | 'down' | 'broken' | 'disabled';

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
  /** The cause of the first check that failed (or the first warning), in the catalogue's words. */
  error?: string;
  /** Which check said it. */
  check?: string;
}

export interface StatusCtx {
  /** This machine's held flock locks, as /proc/locks lists them; null where there is none. */
  locks: () => string | null;
  /** Nix's state directory, whose current-load/ holds the build hook's slot locks. */
  stateDir: string;
  stat: (p: string) => { dev: number; ino: number } | null;
  /** Aborted when the user stops a --watch: the logins in flight are ended. */
  signal?: AbortSignal;
  /** What the checks may do to the world (doctor's context, without a build). */
  path: DoctorCtx;
}

export function realStatusCtx(
  exec: Exec,
  install: Install,
  signal?: AbortSignal,
  env: NodeJS.ProcessEnv = process.env,
): StatusCtx {
  return {
    path: realCtx(exec, install, { build: false, drv: null }),
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
 * The store URI as the build hook names it: a bare host (or user@host) is ssh:// to Nix
 * (machines.cc, every version), and from 2.23 the URI is rendered back from its parsed
 * form, with the query's parameters sorted (StoreReference::render).
 */
export function hookUri(uri: string, v: Version | null): string {
  const bare =
    !uri.includes('://') && !uri.includes('/') && !/^(auto|daemon|local)(\?|$)/.test(uri) && !uri.startsWith('?');
  const full = bare ? `ssh://${uri}` : uri;
  const q = full.indexOf('?');
  if (q < 0 || !v || !atLeast(v, 2, 23) || isLix(v)) return full;
  const params = full
    .slice(q + 1)
    .split('&')
    .filter(Boolean)
    .sort((a, b) => (a.split('=')[0]! < b.split('=')[0]! ? -1 : a.split('=')[0]! > b.split('=')[0]! ? 1 : 0));
  return `${full.slice(0, q)}?${params.join('&')}`;
}

/**
 * The build hook takes slot N of a machine by flock on current-load/NAME-N and holds it
 * while the build runs there (build-remote.cc, openSlotLock). In Nix NAME is the URI with
 * '/' as '_'; in Lix (2.90 on) the first 48 characters of that, '-', and 16 characters of
 * the URI's SHA-256 in Nix's base32 (makeLockFilename).
 */
export function slotLockPath(stateDir: string, uri: string, slot: number, v: Version | null = null): string {
  const u = hookUri(uri, v);
  const escaped = u.replace(/\//g, '_');
  const name =
    v && isLix(v)
      ? `${escaped.slice(0, 48)}-${nixBase32(createHash('sha256').update(u).digest()).slice(0, 16)}`
      : escaped;
  return path.join(stateDir, 'current-load', `${name}-${slot}`);
}

/** Nix's base32 (libutil/hash.cc, printHash32): its own alphabet, last 5-bit group first. */
export function nixBase32(bytes: Uint8Array): string {
  const chars = '0123456789abcdfghijklmnpqrsvwxyz';
  const len = Math.floor((bytes.length * 8 - 1) / 5) + 1;
  let s = '';
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5;
    const i = Math.floor(b / 8);
    const j = b % 8;
    const c = (bytes[i]! >> j) | (i >= bytes.length - 1 ? 0 : (bytes[i + 1]! << (8 - j)) & 0xff);
    s += chars[c & 0x1f];
  }
  return s;
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

export function slotsInUse(
  ctx: Pick<StatusCtx, 'stateDir' | 'stat'>,
  uri: string,
  maxJobs: number,
  held: Set<string> | null,
  v: Version | null = null,
): number {
  if (!held) return 0;
  let n = 0;
  for (let slot = 0; slot < maxJobs; slot++) {
    const st = ctx.stat(slotLockPath(ctx.stateDir, uri, slot, v));
    if (st && held.has(devKey(st.dev, st.ino))) n++;
  }
  return n;
}

/** What status makes of one builder: the cheap tier of the daemon's path, from one login. */
export async function builderStatus(
  ctx: StatusCtx,
  b: Pick<BuilderEntry, 'name' | 'uri' | 'maxJobs' | 'machine'>,
  held: Set<string> | null,
): Promise<BuilderStatus> {
  // The lock names depend on the local Nix (Lix hashes them): one `nix --version` per run,
  // which the login does not wait for.
  const version = localNixVersionRun(ctx.path).then((r) => (r.exitCode === 0 ? parseNixVersion(r.stdout) : null));
  const baseOf = async () => {
    const v = await version;
    return { name: b.name, uri: b.uri, maxJobs: b.maxJobs, slotsInUse: slotsInUse(ctx, b.uri, b.maxJobs, held, v) };
  };
  const none = { latencyMs: null, nixVersion: null, load: null, cores: null, storeFreeBytes: null };
  if (!b.machine)
    return { ...(await baseOf()), ...none, state: 'down', reachable: false, error: `${b.uri} is not in use yet` };
  const f = new BuilderFacts(ctx.path, b.machine, { connectTimeoutS: CONNECT_TIMEOUT_S, signal: ctx.signal });
  try {
    const t0 = Date.now();
    const login = f.login().then((l) => ({ l, ms: Date.now() - t0 }));
    const reports = await runChecks(pathChecks('status'), f);
    const base = await baseOf();
    const { l, ms } = await login;
    const p = l.probe;
    const bad = reports.find((r) => r.status === 'fail');
    const warned = reports.find((r) => r.status === 'warn');
    // The catalogue's words, as doctor says them: the cause of the first link that fails.
    const error = bad ? (bad.cause ?? bad.summary) : warned ? `warning: ${warned.summary}` : undefined;
    const facts = {
      latencyMs: l.authOk ? ms : null,
      nixVersion: p?.nixStoreVersion ? (/\(([^)]*Nix[^)]*)\)\s+(\S+)/.exec(p.nixStoreVersion)?.[2] ?? null) : null,
      load: p?.load ?? null,
      cores: p?.cores ?? null,
      storeFreeBytes: p?.space.find((x) => x.role === 'store')?.availKb ?? null,
    };
    if (facts.storeFreeBytes !== null) facts.storeFreeBytes *= 1024;
    const reachable = l.authOk;
    const state: State = !reachable
      ? 'down'
      : bad
        ? 'broken'
        : base.slotsInUse >= b.maxJobs
          ? 'full'
          : base.slotsInUse > 0
            ? 'busy'
            : 'idle';
    return { ...base, ...facts, state, reachable, ...(error ? { error, check: (bad ?? warned)!.id } : {}) };
  } finally {
    f.close();
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

/** The build hook's slot locks held on this machine now (null where /proc/locks cannot be read). */
export function heldNow(ctx: StatusCtx): Set<string> | null {
  const locks = ctx.locks();
  return locks === null ? null : heldFlocks(locks);
}

/** A machine line as status looks at it. */
export const machineTarget = (m: ParsedMachine): Pick<BuilderEntry, 'name' | 'uri' | 'maxJobs' | 'machine'> => ({
  name: uriHost(m.uri),
  uri: m.uri,
  maxJobs: m.maxJobs,
  machine: m,
});

export async function fleetStatus(
  ctx: StatusCtx,
  builders: Pick<BuilderEntry, 'name' | 'uri' | 'maxJobs' | 'machine'>[],
  width = fleetWidth(),
): Promise<BuilderStatus[]> {
  const held = heldNow(ctx);
  return mapLimit(builders, width, (b) => builderStatus(ctx, b, held));
}

/** The checks status runs whose failure means the build hook cannot connect ("cannot build on"). */
const CONNECT_FAILS = new Set(['uri', 'login', 'login-shell', 'shell', 'remote-nix', 'builder-daemon']);

/** What a status means to the build hook: whether it can connect, and whether the build would fail there. */
export function reachOf(s: BuilderStatus): Reach {
  if (s.state === 'down') return { kind: 'unusable', why: s.error ?? 'the login failed' };
  if (s.state === 'broken' && s.check && CONNECT_FAILS.has(s.check))
    return { kind: 'unusable', why: s.error ?? `${s.check} failed` };
  if (s.state === 'broken') return { kind: 'fails-there', why: s.error ?? `${s.check} failed` };
  return { kind: 'up' };
}
