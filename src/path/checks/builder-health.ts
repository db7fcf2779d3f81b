// The builder's health as facts of its own, not inferred from failures: whether the ssh
// user may build there, its nix-daemon, its own max-jobs, free space where Nix writes, and
// the modes sshd's StrictModes judges.
import { diagnose } from '../catalogue.js';
import { fail, pass, warn, type Result } from '../../doctor/types.js';
import type { ProbeResult, Space } from '../probe.js';
import { notVisible, probeOf, type PathCheck } from '../check.js';
import { signedUnsupported } from '../../nix/signing.js';
import { parseNixVersion } from '../../nix/version.js';

const userOf = (p: ProbeResult) => p.user ?? 'the ssh user';

/** Whether a user list of nix.conf (trusted-users, allowed-users) takes this user: by name, @group or *. */
export function listed(list: string[], p: ProbeResult): boolean {
  return list.includes('*') || list.includes(p.user ?? '') || p.groups.some((g) => list.includes(`@${g}`));
}

/**
 * On a multi-user builder (the store not writable by the ssh user) Nix reaches the store
 * through the builder's nix-daemon: it must run, and let the ssh user in.
 */
export function daemonVerdict(p: ProbeResult, name: string): Result {
  if (p.storeWritable) return pass(`${userOf(p)} owns the builder's store (single-user install): no daemon needed`);
  if (!p.daemonSocket)
    return fail(
      "the builder's store is not writable by the ssh user, and no nix-daemon socket is there",
      `${userOf(p)} can reach that store only through a nix-daemon, and none listens on /nix/var/nix/daemon-socket/socket: the daemon is not running, or the store is another user's single-user install`,
      'start the nix-daemon on the builder (systemctl enable --now nix-daemon; macOS: launchctl kickstart -k system/org.nixos.nix-daemon), or log in as the user who owns the store',
    );
  const allowed = p.settings?.get('allowed-users');
  const trusted = p.trustedUsers ?? [];
  if (allowed !== undefined && !listed(allowed.split(/\s+/).filter(Boolean), p) && !listed(trusted, p))
    return fail(
      `${userOf(p)} is not in the builder's allowed-users (${allowed || 'empty'})`,
      `the builder's nix-daemon refuses connections from users that allowed-users leaves out, and ${userOf(p)} is not in trusted-users either`,
      `add ${userOf(p)} to allowed-users in the builder's nix.conf (NixOS: nix.settings.allowed-users) and restart its nix-daemon`,
    );
  if (p.daemon && !p.daemon.ok) {
    const d = diagnose(
      { stdout: '', stderr: p.daemon.said, exitCode: 1 },
      'probe',
      { name, user: p.user },
      "asking the builder's nix-daemon",
      `ssh ${name} nix-store --store daemon --check-validity /nix/store/00000000000000000000000000000000-x as the build user`,
    );
    return fail("the builder's nix-daemon does not serve the ssh user", d.cause, d.fix, {
      evidence: [{ command: 'nix-store --store daemon --check-validity ... (on the builder)', output: p.daemon.said }],
    });
  }
  return pass(`its nix-daemon answers${p.daemon ? ` and serves ${userOf(p)}` : ''}`);
}

/**
 * May the ssh user build on the builder, from what the probe saw there: it owns the store
 * (single-user), or the builder's nix-daemon trusts it (trusted-users, a @group, or *).
 */
export function trustVerdict(
  p: ProbeResult,
  signed: { scheme: string; ours: string[]; canSign?: boolean; strict?: boolean } = { scheme: 'ssh', ours: [] },
): Result {
  if (p.storeWritable) return pass(`${userOf(p)} owns the builder's store (single-user install)`);
  if (p.trustedUsers === null)
    return warn("cannot read the builder's trusted-users", {
      cause: 'the real build tells whether the ssh user is trusted',
      fix: '',
    });
  const who = p.user ?? '';
  if (listed(p.trustedUsers, p)) {
    const trusted = `${who} is trusted (trusted-users = ${p.trustedUsers.join(' ')})`;
    // Trust makes the key root-equivalent there; where both Nixes can, signing would do without it.
    if (!signed.canSign) return pass(trusted);
    const without = 'signed access would do without it: nixremote init NAME --access signed';
    return signed.strict
      ? warn(`${trusted}, which is root-equivalent there`, {
          cause: "whoever holds this machine's ssh key can do anything the builder's root can through its nix-daemon",
          fix: without,
        })
      : pass(`${trusted}; ${without}`);
  }
  // Signed access: over ssh-ng an untrusted user's inputs are taken by signature (Nix 2.16+ here).
  const trustedKey = signed.ours.find((k) => p.trustedPublicKeys.includes(k));
  if (signed.scheme === 'ssh-ng' && trustedKey)
    return pass(
      `${who} is not trusted, and need not be: the builder takes what this machine signs (${trustedKey.split(':')[0]} is in its trusted-public-keys)`,
    );
  if (signed.scheme === 'ssh-ng' && signed.ours.length)
    return fail(
      `${who} is not trusted, and the builder does not trust this machine's signing key ${signed.ours.map((k) => k.split(':')[0]).join(', ')}`,
      'the builder\'s nix-daemon refuses the inputs built here for an untrusted user ("lacks a signature by a trusted key")',
      `on the builder add "extra-trusted-public-keys = ${signed.ours[0]}" to /etc/nix/nix.conf (NixOS: nix.settings.extra-trusted-public-keys) and restart its nix-daemon`,
    );
  return fail(
    `${who} is not in the builder's trusted-users (${p.trustedUsers.join(' ') || 'empty'})`,
    'the builder\'s nix-daemon refuses to build or import unsigned paths for an untrusted user ("you are not privileged to build input-addressed derivations")',
    `on the builder add "trusted-users = root ${who}" to /etc/nix/nix.conf (NixOS: nix.settings.trusted-users) and restart its nix-daemon; or, over ssh-ng, let it trust this machine's signing key instead (nixremote init --access signed)`,
  );
}

export const daemonCheck: PathCheck = {
  id: 'builder-daemon',
  title: "the builder's nix-daemon",
  needs: ['remote-nix'],
  tiers: ['status', 'init', 'doctor'],
  run: async (f) => {
    const p = await probeOf(f);
    return p ? daemonVerdict(p, f.name) : notVisible('its daemon');
  },
};

export const trustCheck: PathCheck = {
  id: 'trust',
  title: 'allowed to build there',
  needs: ['builder-daemon'],
  tiers: ['status', 'init', 'doctor'],
  run: async (f) => {
    const p = await probeOf(f);
    if (!p) return notVisible('its trusted-users');
    const canSign = signedUnsupported(await f.localVersion(), parseNixVersion(p.nixStoreVersion ?? '')) === null;
    return trustVerdict(p, { scheme: f.scheme, ours: f.signingKeys(), canSign, strict: f.ctx.strict });
  },
};

export const jobsCheck: PathCheck = {
  id: 'builder-jobs',
  title: "the builder's own max-jobs",
  needs: ['remote-nix'],
  tiers: ['status', 'init', 'doctor'],
  run: async (f) => {
    const p = await probeOf(f);
    if (!p) return notVisible('its max-jobs');
    const jobs = p.settings?.get('max-jobs');
    if (jobs === undefined) return { status: 'skip', summary: "the builder's Nix did not say its settings" };
    if (jobs === '0')
      return fail(
        "the builder's own nix.conf says max-jobs = 0",
        'a builder with max-jobs = 0 builds nothing itself: it refuses what this machine sends ("Unable to start any build")',
        "set max-jobs to auto or a number in the builder's nix.conf (NixOS: nix.settings.max-jobs) and restart its nix-daemon",
      );
    return pass(`max-jobs = ${jobs}`);
  },
};

/** Below these a place Nix writes is full (fail) or close to it (warn). */
export const SPACE = { failKb: 16 * 1024, warnKb: 2 * 1024 * 1024, failInodes: 1000, warnInodes: 50_000 };

const kib = (kb: number) =>
  kb >= 1024 * 1024
    ? `${(kb / 1024 / 1024).toFixed(1)} GiB`
    : kb >= 1024
      ? `${(kb / 1024).toFixed(0)} MiB`
      : `${kb} KiB`;
const ROLE: Record<Space['role'], string> = {
  store: 'the store',
  state: "Nix's state directory (its database)",
  build: 'the build directory',
};

export function spaceVerdict(p: ProbeResult, name: string): Result {
  if (!p.space.length) return { status: 'skip', summary: 'df did not say' };
  // One line per filesystem: the store, the state and the build directory often share one.
  const seen = new Map<string, Space[]>();
  for (const s of p.space) seen.set(s.mount, [...(seen.get(s.mount) ?? []), s]);
  const worst: { level: 'fail' | 'warn'; text: string }[] = [];
  const shown: string[] = [];
  for (const [mount, list] of seen) {
    const s = list[0]!;
    const what = list.map((x) => `${ROLE[x.role]} (${x.path})`).join(', ');
    const free = `${kib(s.availKb)} free${s.inodesFree !== null ? `, ${s.inodesFree} inodes` : ''}`;
    shown.push(`${mount}: ${free}`);
    if (s.availKb < SPACE.failKb || (s.inodesFree !== null && s.inodesFree < SPACE.failInodes))
      worst.push({ level: 'fail', text: `${what} on ${mount}: ${free}` });
    else if (s.availKb < SPACE.warnKb || (s.inodesFree !== null && s.inodesFree < SPACE.warnInodes))
      worst.push({ level: 'warn', text: `${what} on ${mount}: ${free}` });
  }
  const fix = `free space on ${name}: nix-collect-garbage -d there (or nix-store --gc), and set min-free/max-free in its nix.conf so that Nix collects garbage before the disk fills`;
  const full = worst.filter((w) => w.level === 'fail');
  if (full.length)
    return fail(
      `full: ${full.map((w) => w.text).join('; ')}`,
      'builds sent there fail: Nix cannot write the outputs, its database or the build directory ("No space left on device", SQLite "disk I/O error" or "database or disk is full")',
      fix,
    );
  if (worst.length)
    return warn(`little space left: ${worst.map((w) => w.text).join('; ')}`, {
      cause: `below ${kib(SPACE.warnKb)} (or ${SPACE.warnInodes} inodes) larger builds fail there`,
      fix,
    });
  return pass(shown.join('; '));
}

export const spaceCheck: PathCheck = {
  id: 'space',
  title: 'free space where Nix writes',
  needs: ['login-shell'],
  tiers: ['status', 'init', 'doctor'],
  run: async (f) => {
    const p = await probeOf(f);
    return p ? spaceVerdict(p, f.name) : notVisible('its free space');
  },
};

/** Writable by group or others: sshd's StrictModes then ignores authorized_keys (auth2-pubkeyfile.c). */
const loose = (mode: string) => mode[5] === 'w' || mode[8] === 'w';

export function modesVerdict(p: ProbeResult): Result {
  if (!p.sshFiles.length) return { status: 'skip', summary: 'ls did not say' };
  const bad = p.sshFiles.filter((x) => loose(x.mode));
  if (!bad.length) return pass(p.sshFiles.map((x) => `${x.path} ${x.mode}`).join(', '));
  return warn(`writable by others: ${bad.map((x) => `${x.path} (${x.mode})`).join(', ')}`, {
    cause:
      'sshd\'s StrictModes (on by default) ignores authorized_keys when the home, ~/.ssh or the file is writable by group or others, and the key is then refused with a bare "Permission denied (publickey)"; where it is off, anyone who can write there can add a key',
    fix: `on the builder: chmod go-w ${bad.map((x) => x.path).join(' ')}`,
  });
}

export const modesCheck: PathCheck = {
  id: 'ssh-modes',
  title: "the modes of the builder user's ssh files",
  needs: ['login-shell'],
  tiers: ['status', 'init', 'doctor'],
  run: async (f) => {
    const p = await probeOf(f);
    return p ? modesVerdict(p) : notVisible('the modes of its ssh files');
  },
};
