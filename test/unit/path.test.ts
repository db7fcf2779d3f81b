// The daemon's path as one model: every catalogue entry on the output it is for, and the
// checks on facts handed to them (no ssh, no Nix).
import * as fs from 'node:fs';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CATALOGUE, diagnose, type Output, type Stage } from '../../src/path/catalogue.js';
import { parseProbe, type ProbeResult } from '../../src/path/probe.js';
import { daemonVerdict, modesVerdict, spaceVerdict, trustVerdict } from '../../src/path/checks/builder-health.js';
import { BuilderFacts } from '../../src/path/facts.js';
import { pathChecks, PATH_CHECKS } from '../../src/path/walk.js';
import { runChecks } from '../../src/doctor/runner.js';
import { parseMachines } from '../../src/nix/machines-file.js';
import type { DoctorCtx } from '../../src/doctor/context.js';
import type { ExecOptions, ExecResult } from '../../src/io/exec.js';
import type { Install } from '../../src/init/install.js';
import { probeOutput } from './probe-fixture.js';
import { blocks, RECORDED, RECORDED_CAUSES, recordings } from './recordings.js';

const out = (stderr: string, exitCode = 1, stdout = ''): Output => ({ stdout, stderr, exitCode });

/**
 * Each entry's own wording, per version, from the program's source at that version or
 * recorded here (test/fixtures/recorded). Every entry of the catalogue has a row: adding a
 * fault class is an entry and its rows.
 */
const SAMPLES: Record<string, [Stage, Output][]> = {
  'shell.nologin': [['login', out('', 1, 'This account is currently not available.\n')]],
  'shell.false': [['login', out('', 1)]],
  'shell.nix-missing': [
    ['probe', out('bash: line 1: nix-store: command not found', 127)],
    ['probe', out('sh: 1: nix-store: not found', 127)],
    ['ping', out("error: cannot connect to 'box': bash: nix-store: command not found")],
  ],
  'nix.builders-ignored': [
    [
      'build',
      out(
        "warning: ignoring the client-specified setting 'builders', because it is a restricted setting and you are not a trusted user\nerror: unable to start any build",
      ),
    ],
  ],
  'nix.build-users-group': [
    [
      'build',
      out(
        "warning: the group 'nixbld' specified in 'build-users-group' does not exist\nerror: the group 'nixbld' specified in 'build-users-group' does not exist",
      ),
    ],
  ],
  'nix.bad-machine-line': [
    [
      'build',
      out(
        "error: bad machine specification: failed to convert column #4 in a row: 'ssh://box x86_64-linux - 1 1.5' to 'unsigned int'",
      ),
    ],
  ],
  'store.db-full': [
    [
      'build',
      out(
        "error: executing SQLite statement 'insert into ValidPaths': database or disk is full, database or disk is full (in '/nix/var/nix/db/db.sqlite')",
      ),
    ],
    [
      'build',
      out(
        "error: executing SQLite statement 'insert into ValidPaths': database or disk is full (in '/nix/var/nix/db/db.sqlite')",
      ),
    ],
  ],
  'store.db-io': [
    [
      'build',
      out(
        "error: executing SQLite statement 'pragma': disk I/O error, disk I/O error (in '/nix/var/nix/db/db.sqlite')",
      ),
    ],
  ],
  'store.db-readonly': [['ping', out("error: executing SQLite statement 'x': attempt to write a readonly database")]],
  'fs.full': [
    ['build', out('error: writing to file: No space left on device')],
    ['build', out('error: write of 4096 bytes: No space left on device')],
  ],
  'fs.read-only': [['build', out("error: creating directory '/nix/store/x': Read-only file system")]],
  'fs.quota': [['build', out('error: writing to file: Disk quota exceeded')]],
  'nix.untrusted': [
    ['build', out('error: you are not privileged to build derivations')],
    ['build', out('error: you are not privileged to build input-addressed derivations')],
    ['build', out("error: cannot add path '/nix/store/abc-x' because it lacks a valid signature")],
    ['build', out("error: cannot add path '/nix/store/abc-x' because it lacks a signature by a trusted key")],
  ],
  'nix.not-allowed': [['probe', out("error: user 'nix' is not allowed to connect to the Nix daemon")]],
  'nix.daemon-closed': [
    [
      'probe',
      out("error: cannot open connection to remote store 'daemon': error: reading from file: Connection reset by peer"),
    ],
    ['probe', out("error: cannot open connection to remote store 'daemon': error: unexpected end-of-file")],
    [
      'probe',
      out(
        "error: cannot open connection to remote store 'daemon': error: Nix daemon disconnected unexpectedly (maybe it crashed?)",
      ),
    ],
  ],
  'nix.ssh-ng-closed': [
    [
      'ping',
      out(
        "error: cannot open connection to remote store 'ssh-ng://box': error: Nix daemon disconnected unexpectedly (maybe it crashed?)",
      ),
    ],
  ],
  'nix.daemon-refused': [
    ['probe', out("error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': Connection refused")],
    ['probe', out("error: cannot connect to daemon at '/nix/var/nix/daemon-socket/socket': Connection refused")],
  ],
  'nix.daemon-missing': [
    ['probe', out("error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': No such file or directory")],
  ],
  // Lix 2.94+ and Lix 2.93 (lix/libstore/remote-store.cc at those tags).
  'nix.too-old': [
    ['ping', out('error: The remote Nix daemon version is too old')],
    ['ping', out('error: the Nix daemon version is too old')],
  ],
  // Lix 2.94+ (lix/libstore/legacy-ssh-store.cc): a serve protocol older than 2.4.
  'nix.serve-too-old': [['ping', out("error: remote 'box' is too old (protocol version 203)")]],
  'nix.protocol-noise': [
    ['ping', out("error: 'nix-store --serve' protocol mismatch from 'box', got 'Welcome'")],
    ['ping', out("error: serialised integer 7016996765293437281 is too large for type 'j'")],
  ],
  'nix.protocol-other': [
    ['ping', out("error: protocol mismatch\nerror: cannot connect to 'nixremote-e2e@127.0.0.1'")],
    ['ping', out("error: 'nix-store --serve' protocol mismatch from 'box'")],
  ],
  'nix.daemon-disconnected': [['ping', out('error: Nix daemon disconnected unexpectedly (maybe it crashed?)')]],
  'nix.eof': [['ping', out('error: unexpected end-of-file')]],
  'nix.remote-max-jobs': [
    [
      'build',
      out(
        "error: build of '/nix/store/x.drv' on 'ssh://box' failed: error: unable to start any build; either increase '--max-jobs' or enable remote builds.",
      ),
    ],
    [
      'build',
      out(
        "error: build of '/nix/store/x.drv' on 'ssh://box' failed: error:\n       Unable to start any build;\n       either increase '--max-jobs' or enable remote builds.",
      ),
    ],
  ],
  'ssh.hostkey-changed': [['login', out('@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @', 255)]],
  'ssh.hostkey-unknown': [['login', out('Host key verification failed.', 255)]],
  'ssh.key-perms': [['login', out('Load key "/root/.ssh/nix_remote": bad permissions', 255)]],
  'ssh.key-missing': [['login', out('Warning: Identity file /k not accessible: No such file or directory.', 255)]],
  'ssh.key-format': [['login', out('Load key "/k": invalid format', 255)]],
  'ssh.config-perms': [['login', out('Bad owner or permissions on /root/.ssh/config', 255)]],
  'ssh.too-many-keys': [
    ['login', out('Received disconnect from 1.2.3.4 port 22:2: Too many authentication failures', 255)],
  ],
  'ssh.auth': [['login', out('nix@127.0.0.1: Permission denied (publickey,password).', 255)]],
  'ssh.proxy': [
    ['login', out('channel 0: open failed: connect failed: No route to host\nstdio forwarding failed', 255)],
  ],
  'ssh.port-in-hostname': [
    ['ping', out('ssh: Could not resolve hostname 127.0.0.1:2222: Name or service not known', 255)],
  ],
  'ssh.refused': [['login', out('ssh: connect to host 127.0.0.1 port 2301: Connection refused', 255)]],
  'ssh.banner-timeout': [['login', out('Connection timed out during banner exchange', 255)]],
  'ssh.alive-timeout': [['login', out('Timeout, server 10.0.0.5 not responding.', 255)]],
  'ssh.timeout': [['login', out('ssh: connect to host 10.0.0.9 port 22: Connection timed out', 255)]],
  'ssh.unreachable': [['login', out('ssh: connect to host 10.0.0.9 port 22: No route to host', 255)]],
  'ssh.dns': [['login', out('ssh: Could not resolve hostname nosuch: Name or service not known', 255)]],
  'ssh.not-ssh': [['login', out('kex_exchange_identification: banner line contains invalid characters', 255)]],
  'ssh.algorithms': [
    ['login', out('Unable to negotiate with 10.0.0.5 port 22: no matching host key type found.', 255)],
  ],
  'ssh.pty-refused': [['login', out('PTY allocation request failed on channel 0', 1)]],
  'ssh.remote-command': [['login', out('Cannot execute command-line and remote command.', 255)]],
  'ssh.dropped': [['login', out('kex_exchange_identification: Connection closed by remote host', 255)]],
  'hook.serve-closed': [['ping', out("error: cannot connect to 'box'")]],
  'hook.no-machine-features': [
    ['build', out('error: unable to start any build; remote machines may not have all required system features.')],
  ],
  'hook.no-match': [
    [
      'build',
      out(
        "error: a 'aarch64-linux' with features {} is required to build '/nix/store/x.drv', but I am a 'x86_64-linux'",
      ),
    ],
    ['build', out("error: Cannot build '/nix/store/x.drv'.\n       Reason: required system or feature not available")],
    ['build', out("error: Cannot build '/nix/store/x.drv'.\n       Reason: platform mismatch")],
  ],
  'hook.no-builder': [
    ['build', out("error: unable to start any build; either increase '--max-jobs' or enable remote builds.")],
    [
      'build',
      out("error:\n       Unable to start any build;\n       either increase '--max-jobs' or enable remote builds."),
    ],
    [
      'build',
      out("error: unable to start any build; either set '--max-jobs' to a non-zero value or enable remote builds."),
    ],
    ['build', out('Failed to find a machine for remote build!\nderivation: x.drv')],
  ],
};

describe('the catalogue', () => {
  test('every entry has its rows, and every row names an entry', () => {
    const ids = CATALOGUE.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, 'ids are unique');
    assert.deepEqual(
      ids.filter((id) => !SAMPLES[id]),
      [],
      'entries without a sample',
    );
    assert.deepEqual(
      Object.keys(SAMPLES).filter((id) => !ids.includes(id)),
      [],
      'samples without an entry',
    );
    for (const e of CATALOGUE) assert.ok(e.versions, `${e.id} says the versions its wording is from`);
  });
  for (const [id, rows] of Object.entries(SAMPLES))
    for (const [stage, o] of rows)
      test(`${id}: ${(o.stdout + o.stderr).split('\n').find(Boolean)?.slice(0, 70) ?? '(silence)'}`, () => {
        const d = diagnose(o, stage, { name: 'box', user: 'nix' }, 'the step', 'the next step');
        assert.equal(d.id, id, d.cause);
        assert.ok(d.cause && d.fix, 'a cause and a fix');
      });
  test('what no entry matches is not recognised: quoted whole, control bytes escaped, with the next step', () => {
    const d = diagnose(
      out('error: \x1b[31mthe flux capacitor\x1b[0m\nis out', 3),
      'build',
      { name: 'box' },
      'the build',
      'nix-build -vvv',
    );
    assert.equal(d.known, false);
    assert.equal(
      d.cause,
      'not recognised: the build failed (exit 3) and printed "error: \\u001b[31mthe flux capacitor\\u001b[0m\\nis out"',
    );
    assert.equal(d.fix, 'run nix-build -vvv to see more, and report what it prints if nixremote should know it');
  });
  test('the shell decoded from the protocol error, and silence only means /bin/false at the login', () => {
    const d = diagnose(
      out("error: 'nix-store --serve' protocol mismatch from 'box', got 'Hi there\n'"),
      'ping',
      { name: 'box' },
      's',
      'n',
    );
    assert.match(d.cause, /: it printed "Hi there"$/);
    assert.equal(diagnose(out('', 1), 'build', { name: 'box' }, 'the build', 'n').known, false);
  });
});

describe('the probe', () => {
  test("GNU df's one run and BSD df's two give the same facts", () => {
    const gnu = parseProbe(
      [
        'NIXREMOTE:begin',
        'NIXREMOTE:build-dir-used=/nix/var/nix/builds',
        'NIXREMOTE:dfo=1K-blocks   Avail  IFree  Inodes Mounted on',
        'NIXREMOTE:dfo=   32768       0   8180    8192 /nix',
        'NIXREMOTE:dfo=   32768       0   8180    8192 /nix',
        'NIXREMOTE:dfo=   16384   16000   4000    4096 /nix/var/nix/builds',
        'NIXREMOTE:end',
      ].join('\n'),
    );
    assert.deepEqual(
      gnu.space.map((x) => [x.role, x.path, x.mount, x.availKb, x.sizeKb, x.inodesFree, x.inodes]),
      [
        ['store', '/nix/store', '/nix', 0, 32768, 8180, 8192],
        ['state', '/nix/var/nix', '/nix', 0, 32768, 8180, 8192],
        ['build', '/nix/var/nix/builds', '/nix/var/nix/builds', 16000, 16384, 4000, 4096],
      ],
    );
    assert.equal(spaceVerdict(gnu, 'box').status, 'fail');
  });
  test('facts, from a chatty shell: what precedes the first line is noise, not an answer', () => {
    const p = parseProbe(
      probeOutput({
        noise: 'Welcome\nNIXREMOTE:user=evil',
        set: { 'max-jobs': '0', 'allowed-users': '@wheel', daemon: 'ok', 'store-writable': null },
      }),
    );
    assert.equal(p.began, true);
    assert.equal(p.ended, true);
    assert.equal(p.user, 'nix');
    assert.equal(p.settings?.get('max-jobs'), '0');
    assert.deepEqual(p.daemon, { ok: true });
    assert.deepEqual(
      p.space.map((s) => [s.role, s.mount, s.availKb, s.inodesFree]),
      [
        ['store', '/nix', 90000000, 999990],
        ['state', '/nix', 90000000, 999990],
        ['build', '/', 90000000, 999990],
      ],
    );
    assert.deepEqual(p.sshFiles[1], { mode: 'drwx------', uid: 1000, path: '/home/nix/.ssh' });
  });
});

const facts = (set: Record<string, string | null>, df?: { availKb: number; inodesFree?: number }[]): ProbeResult =>
  parseProbe(probeOutput({ set, df }));

describe('checks on facts', () => {
  test('space: a full store fails, naming the path and what is free; a low one warns', () => {
    const full = spaceVerdict(facts({}, [{ availKb: 0 }, { availKb: 0 }, { availKb: 9_000_000 }]), 'box');
    assert.equal(full.status, 'fail');
    assert.match(
      full.summary,
      /^full: the store \(\/nix\/store\), Nix's state directory \(its database\) \(\/nix\/var\/nix\) on \/nix: 0 KiB free/,
    );
    assert.match(full.fix!, /nix-collect-garbage -d.*min-free\/max-free/);
    const low = spaceVerdict(facts({}, [{ availKb: 9_000_000 }, { availKb: 9_000_000 }, { availKb: 500_000 }]), 'box');
    assert.equal(low.status, 'warn');
    assert.match(low.summary, /the build directory \(\/tmp\) on \/: 488 MiB free/);
    const inodes = spaceVerdict(
      facts({}, [
        { availKb: 9_000_000, inodesFree: 10 },
        { availKb: 9_000_000, inodesFree: 10 },
        { availKb: 9_000_000 },
      ]),
      'box',
    );
    assert.equal(inodes.status, 'fail');
  });
  test("the builder's daemon: not running, refusing the user, allowed-users leaving it out", () => {
    const multi = { 'store-writable': null, 'daemon-socket': '1' };
    assert.equal(daemonVerdict(facts({ 'store-writable': null }), 'box').status, 'fail');
    const down = daemonVerdict(
      facts({
        ...multi,
        'daemon-error': "error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': Connection refused",
      }),
      'box',
    );
    assert.equal(down.status, 'fail');
    assert.match(down.cause!, /a nix-daemon is not running where its socket is/);
    const shut = daemonVerdict(
      facts({
        ...multi,
        'daemon-error':
          "error: cannot open connection to remote store 'daemon': error: reading from file: Connection reset by peer",
      }),
      'box',
    );
    assert.match(shut.cause!, /refuses nix \(allowed-users/);
    const left = daemonVerdict(facts({ ...multi, daemon: 'ok', 'allowed-users': 'root @wheel' }), 'box');
    assert.equal(left.status, 'fail');
    assert.match(left.summary, /nix is not in the builder's allowed-users \(root @wheel\)/);
    assert.equal(daemonVerdict(facts({ ...multi, daemon: 'ok', 'allowed-users': '@users' }), 'box').status, 'pass');
    assert.equal(trustVerdict(facts(multi)).status, 'fail');
    assert.equal(trustVerdict(facts({ ...multi, 'trusted-users': 'root @users' })).status, 'pass');
  });
  test('signed access: an untrusted user whose builder trusts this machine key, or lacks it', () => {
    const ours = ['nixremote-here-1:lMYCPhhWtDGOtmM8qGmV7M1r8hkBeUj0cvUtYRwnZXI='];
    const multi = { 'store-writable': '0', 'daemon-socket': '1', daemon: 'ok', 'trusted-users': 'root' };
    const taken = trustVerdict(facts({ ...multi, 'trusted-public-keys': `cache.nixos.org-1:x= ${ours[0]}` }), {
      scheme: 'ssh-ng',
      ours,
    });
    assert.equal(taken.status, 'pass');
    assert.match(
      taken.summary,
      /is not trusted, and need not be: the builder takes what this machine signs \(nixremote-here-1/,
    );
    const lacks = trustVerdict(facts({ ...multi, 'trusted-public-keys': 'cache.nixos.org-1:x=' }), {
      scheme: 'ssh-ng',
      ours,
    });
    assert.equal(lacks.status, 'fail');
    assert.match(lacks.summary, /does not trust this machine's signing key nixremote-here-1/);
    assert.match(lacks.fix!, /extra-trusted-public-keys = nixremote-here-1:/);
    // Over ssh:// a signature does not help: the user must be trusted.
    assert.match(trustVerdict(facts(multi), { scheme: 'ssh', ours }).summary, /is not in the builder's trusted-users/);
    // Trusted where signing would do: a pass that says so, a warning with --strict.
    const tr = { ...multi, 'trusted-users': 'root nix' };
    assert.match(
      trustVerdict(facts(tr), { scheme: 'ssh', ours: [], canSign: true }).summary,
      /signed access would do without it/,
    );
    assert.equal(trustVerdict(facts(tr), { scheme: 'ssh', ours: [], canSign: true, strict: true }).status, 'warn');
  });
  test('ssh file modes as StrictModes judges them', () => {
    const p = parseProbe(
      probeOutput().replace(
        'drwx------ 2 1000 1000 4096 Dec  1 19:51 /home/nix/.ssh',
        'drwxrwxrwx 2 1000 1000 4096 Dec  1 19:51 /home/nix/.ssh',
      ),
    );
    const v = modesVerdict(p);
    assert.equal(v.status, 'warn');
    assert.match(v.fix!, /chmod go-w \/home\/nix\/\.ssh$/);
    assert.equal(modesVerdict(facts({})).status, 'pass');
  });
});

const root: Install = {
  multiUser: true,
  reason: 'test',
  user: { name: 'root', uid: 0, gid: 0, home: '/root' },
  confDir: '/etc/nix',
  daemon: { restart: null, how: 'systemctl restart nix-daemon' },
  target: 'nix-conf',
  settingsFile: '/etc/nix/nix.conf',
};

/** A machine with nothing on it but what `exec` answers: no files, no daemon, Linux. */
function quietCtx(exec: (file: string, args: string[]) => Partial<ExecResult>): DoctorCtx {
  return {
    exec: async (file, args) => ({
      command: [file, ...args].join(' '),
      stdout: '',
      stderr: '',
      exitCode: 0,
      timedOut: false,
      ...exec(file, args),
    }),
    read: () => null,
    stat: () => null,
    resolve: async () => ['127.0.0.1'],
    tcp: async () => ({ ok: true, ms: 1 }),
    hostKey: async () => {
      throw new Error('unused');
    },
    daemon: () => null,
    mtimeMs: () => null,
    env: {},
    install: root,
    build: false,
    drv: null,
    platform: 'linux',
  };
}

/** The status tier on one builder whose login prints `login` and whose store pings answer `pings`. */
async function statusTier(login: Partial<ExecResult>, pings: Record<string, number> = {}) {
  const ctx = quietCtx((file, args) => {
    if (file === 'ssh') return login;
    if (file === 'nix' && args[0] === '--version') return { stdout: 'nix (Nix) 2.8.0\n' };
    if (file === 'nix') {
      const uri = args[args.indexOf('--store') + 1]!;
      const scheme = uri.slice(0, uri.indexOf(':'));
      return { exitCode: pings[scheme] ?? 1, stderr: pings[scheme] === 0 ? '' : 'error: unexpected end-of-file' };
    }
    return { exitCode: 1 };
  });
  const m = parseMachines('ssh://nix@box x86_64-linux', '/etc/nix/machines').machines[0]!;
  const f = new BuilderFacts(ctx, m);
  try {
    return await runChecks(pathChecks('status'), f);
  } finally {
    f.close();
  }
}

describe('the tiers', () => {
  test('status runs the cheap checks from one login; init what must hold before it writes', () => {
    const ids = (t: 'status' | 'init') => pathChecks(t).map((c) => c.id);
    const probeTier = [
      'login-shell',
      'shell',
      'space',
      'remote-nix',
      'builder-daemon',
      'trust',
      'builder-jobs',
      'ssh-modes',
    ];
    assert.deepEqual(ids('status'), ['uri', 'login', ...probeTier]);
    assert.deepEqual(ids('init'), probeTier);
    assert.equal(
      pathChecks('doctor').length,
      PATH_CHECKS.length - 1,
      'doctor runs all (the derivation check with --drv)',
    );
  });
  test('nologin: the login is accepted, the shell names itself, and what needs the probe is skipped', async () => {
    const r = await statusTier({ stdout: 'This account is currently not available.\n', exitCode: 1 });
    const get = (id: string) => r.find((c) => c.id === id)!;
    assert.equal(get('login').status, 'pass');
    assert.equal(get('login-shell').status, 'fail');
    assert.match(get('login-shell').cause!, /login shell of nix on the builder is nologin/);
    assert.match(get('login-shell').fix!, /usermod -s \/bin\/sh nix/);
    assert.equal(get('remote-nix').status, 'skip');
  });
  test('a forced command: judged by the store pings, never called a noisy shell or missing Nix', async () => {
    const serves = await statusTier({ stdout: '', exitCode: 0 }, { ssh: 0 });
    const ok = serves.find((c) => c.id === 'login-shell')!;
    assert.equal(ok.status, 'pass');
    assert.match(
      ok.summary,
      /a forced command answers instead of the shell, and it serves ssh:\/\/ \(the key can only speak Nix\)/,
    );
    assert.deepEqual(
      serves.filter((c) => c.status === 'fail').map((c) => c.id),
      [],
    );
    const other = (await statusTier({ stdout: '', exitCode: 0 }, { 'ssh-ng': 0 })).find((c) => c.id === 'login-shell')!;
    assert.equal(other.status, 'fail');
    assert.match(other.fix!, /^use ssh-ng:\/\/nix@box as the store URI/);
    const neither = (await statusTier({ stdout: 'huh', exitCode: 0 })).find((c) => c.id === 'login-shell')!;
    assert.match(neither.cause!, /^not recognised: the login was accepted, but the command printed "huh"/);
  });
});

describe('hand-made machine lines, read right', () => {
  async function uri(line: string, nix = '2.8.0') {
    const ctx = quietCtx((file) => ({ stdout: file === 'nix' ? `nix (Nix) ${nix}\n` : '' }));
    const f = new BuilderFacts(ctx, parseMachines(line, '/etc/nix/machines').machines[0]!);
    const [r] = await runChecks([PATH_CHECKS.find((c) => c.id === 'uri')!], f);
    f.close();
    return r!;
  }
  test('a port in the URI: refused for Nix before 2.31, with the Host block fix; taken from 2.31', async () => {
    const old = await uri('ssh://nix@127.0.0.1:2222 x86_64-linux');
    assert.equal(old.status, 'fail');
    assert.match(old.cause!, /gives ssh "127\.0\.0\.1:2222" as the host name/);
    assert.match(old.fix!, /put "Port 2222" in a Host block for 127\.0\.0\.1/);
    assert.equal((await uri('ssh://nix@127.0.0.1:2222 x86_64-linux', '2.31.0')).status, 'pass');
  });
  test('a doubled scheme and an IPv6 address without brackets', async () => {
    assert.match((await uri('ssh://ssh://box x86_64-linux')).summary, /has its scheme twice/);
    assert.match((await uri('ssh://fe80::1 x86_64-linux')).summary, /an IPv6 address without brackets/);
    assert.equal((await uri('ssh://[fe80::1] x86_64-linux')).status, 'pass');
  });
});

describe('what each fault printed for real, per version (test/fixtures/recorded)', () => {
  const all = recordings();
  test('the recordings are there', () => assert.ok(new Set(all.map(([d]) => d)).size >= 3, RECORDED));
  for (const [dir, file, fault] of all)
    test(`${dir}/${file}`, () => {
      const allowed = RECORDED_CAUSES[fault];
      assert.ok(allowed, `no expectation for ${fault}`);
      for (const b of blocks(dir, file)) {
        const stage: Stage | null = b.command.includes('nix-build')
          ? 'build'
          : /store (ping|info)/.test(b.command)
            ? 'ping'
            : /^ssh /.test(b.command)
              ? 'login'
              : null;
        if (b.exit === 0 || !stage) continue;
        const d = diagnose(
          { stdout: b.stdout, stderr: b.stderr, exitCode: b.exit },
          stage,
          { name: 'box', user: 'nix' },
          's',
          'n',
        );
        assert.ok(allowed.includes(d.id), `${b.command.slice(0, 120)}\n  named ${d.id}: ${d.cause}`);
      }
    });
});

describe('the connect timeout', () => {
  const tcpOf = async (connectTimeout: string) => {
    const ctx = {
      ...quietCtx((file, args) =>
        file === 'ssh' && args.includes('-G')
          ? { stdout: `hostname 10.0.0.5\nport 22\nuser nix\nconnecttimeout ${connectTimeout}\n` }
          : { exitCode: 1 },
      ),
      tcp: async () => ({ ok: false as const, code: 'ETIMEDOUT', message: 'no answer within 5 s' }),
    };
    const m = parseMachines('ssh://nix@box x86_64-linux', '/etc/nix/machines').machines[0]!;
    return PATH_CHECKS.find((c) => c.id === 'tcp')!.run(new BuilderFacts(ctx, m));
  };
  test('a builder down and no ConnectTimeout: the fix says what each build pays, and how to take it out', async () => {
    const none = await tcpOf('none');
    assert.equal(none.status, 'fail');
    assert.match(none.fix!, /give box's Host block a ConnectTimeout .*about two minutes.*nixremote disable box/);
    assert.doesNotMatch((await tcpOf('10')).fix!, /ConnectTimeout/);
  });
});

describe("doctor's store ping over the login's connection", () => {
  interface Call {
    file: string;
    args: string[];
    sshOpts: string | undefined;
  }
  /** A doctor walk (shared connection) where ssh makes its control socket and `pingOk` answers each ping. */
  function sharedFacts(nix: string, pingOk: (c: Call) => boolean, onLogin?: (o: ExecOptions) => Promise<void>) {
    const calls: Call[] = [];
    const base = quietCtx(() => ({}));
    const ctx: DoctorCtx = {
      ...base,
      exec: async (file, args, o = {}) => {
        const c: Call = { file, args, sshOpts: o.env?.NIX_SSHOPTS };
        calls.push(c);
        const done = (r: Partial<ExecResult>): ExecResult => ({
          command: [file, ...args].join(' '),
          stdout: '',
          stderr: '',
          exitCode: 0,
          timedOut: false,
          ...r,
        });
        if (file === 'ssh') {
          // As ssh with ControlMaster=auto does once it has logged in: the socket appears.
          const socket = args.find((a) => a.startsWith('ControlPath='))?.slice('ControlPath='.length);
          if (socket) fs.writeFileSync(socket, '');
          await onLogin?.(o);
          return done({});
        }
        if (args[0] === '--version') return done({ stdout: `nix (Nix) ${nix}\n` });
        return pingOk(c)
          ? done({ stdout: 'Store URL: ssh://box\n' })
          : done({ exitCode: 1, stderr: "error: failed to start SSH connection to 'box'" });
      },
    };
    const m = parseMachines('ssh://nix@box x86_64-linux', '/etc/nix/machines').machines[0]!;
    return { f: new BuilderFacts(ctx, m, { share: true }), calls };
  }
  const pings = (calls: Call[]) => calls.filter((c) => c.file === 'nix' && c.args[0] !== '--version');

  test('once the login has opened it, the ping rides it, and its evidence says so', async () => {
    const { f, calls } = sharedFacts('2.8.0', () => true);
    try {
      await f.ssh.run(['true']);
      const p = (await f.ping())!;
      assert.equal(p.r.exitCode, 0);
      const [only, ...more] = pings(calls);
      assert.equal(more.length, 0);
      assert.match(only!.sshOpts!, /^-o ControlMaster=no -o ControlPath=\S+\/cm$/);
      assert.match(p.ev.command, /^NIX_SSHOPTS='-o ControlMaster=no -o ControlPath=\S+\/cm' nix /);
    } finally {
      f.close();
    }
  });
  test("a ping that fails over it is run again on Nix's own connection, and that one is judged", async () => {
    const { f, calls } = sharedFacts('2.8.0', (c) => c.sshOpts === undefined);
    try {
      await f.ssh.run(['true']);
      const p = (await f.ping())!;
      assert.equal(p.r.exitCode, 0);
      assert.deepEqual(
        pings(calls).map((c) => c.sshOpts === undefined),
        [false, true],
      );
      assert.doesNotMatch(p.ev.command, /NIX_SSHOPTS/);
    } finally {
      f.close();
    }
  });
  test('not before the login, and never with Nix 2.15, which would wait for a line a shared session never prints', async () => {
    for (const [nix, login] of [
      ['2.8.0', false],
      ['2.15.1', true],
    ] as const) {
      const { f, calls } = sharedFacts(nix, () => true);
      try {
        if (login) await f.ssh.run(['true']);
        await f.ping();
        assert.deepEqual(
          pings(calls).map((c) => c.sshOpts),
          [undefined],
          nix,
        );
      } finally {
        f.close();
      }
    }
  });
  test("the probe's first line starts the ping while the probe is still running", async () => {
    let pingedDuringLogin = false;
    const { f, calls } = sharedFacts(
      '2.8.0',
      () => true,
      async (o) => {
        o.onStdout?.(Buffer.from('NIXREMOTE:beg'));
        o.onStdout?.(Buffer.from('in\n'));
        await new Promise((r) => setTimeout(r, 20));
        pingedDuringLogin = pings(calls).length > 0;
      },
    );
    try {
      await f.login();
      assert.ok(pingedDuringLogin, 'the ping started before the login ended');
    } finally {
      f.close();
    }
  });
});
