// Doctor's checks on recorded command output, with a context of fakes: no ssh, no Nix.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { DoctorCtx, FileInfo } from '../../src/doctor/context.js';
import type { ExecResult } from '../../src/io/exec.js';
import type { Install } from '../../src/init/install.js';
import { runChecks, worst } from '../../src/doctor/runner.js';
import { diagnose } from '../../src/path/catalogue.js';
import { decodeProtocolError } from '../../src/path/protocol-text.js';
import { localChecks, localState } from '../../src/doctor/checks/local.js';
import { BuilderFacts, cannotTake } from '../../src/path/facts.js';
import { pathChecks } from '../../src/path/walk.js';
import { readBuilders, readNixConfig } from '../../src/nix/effective-config.js';
import { parseMachines, formatMachineLine, machineRules } from '../../src/nix/machines-file.js';
import { machinesHostKeyField, parseKeyLine } from '../../src/ssh/host-key.js';
import type { Check } from '../../src/doctor/types.js';
import { probeOutput } from './probe-fixture.js';

/** A failed build's output through the catalogue: the known entry, or null. */
const explainBuild = (out: string) => {
  const d = diagnose({ stdout: '', stderr: out, exitCode: 1 }, 'build', { name: 'b' }, 'the build', 'nix-build -vvv');
  return d.known ? d : null;
};

const ED = parseKeyLine('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIScm/rGDiGdXRmh2QFm9Bpfj9CEahqNcCFZQH2PL8dS')!;
const root: Install = {
  multiUser: true,
  reason: 'test',
  user: { name: 'root', uid: 0, gid: 0, home: '/root' },
  confDir: '/etc/nix',
  daemon: { restart: null, how: 'systemctl restart nix-daemon' },
  target: 'nix-conf',
  settingsFile: '/etc/nix/nix.conf',
};
const ok = (command: string, stdout = '', stderr = '', exitCode = 0): ExecResult => ({
  command,
  stdout,
  stderr,
  exitCode,
  timedOut: false,
});

function fakeCtx(
  files: Record<string, string>,
  exec: (file: string, args: string[]) => ExecResult,
  over: Partial<DoctorCtx> = {},
): DoctorCtx {
  const stats: Record<string, FileInfo> = {};
  for (const f of Object.keys(files)) stats[f] = { uid: 0, mode: 0o600, isFile: true };
  return {
    exec: async (file, args) => exec(file, args),
    read: (p) => files[p] ?? null,
    stat: (p) => stats[p] ?? (p === '/usr/bin/ssh' ? { uid: 0, mode: 0o755, isFile: true } : null),
    resolve: async () => ['127.0.0.1'],
    tcp: async () => ({ ok: true, ms: 1 }),
    hostKey: async () => ED,
    daemon: () => ({ pid: 42, startedMs: 2000, path: '/usr/bin:/bin' }),
    mtimeMs: () => 1000,
    env: {},
    install: root,
    build: false,
    drv: null,
    platform: 'linux',
    ...over,
  };
}

describe('runner', () => {
  const c = (
    id: string,
    needs: string[],
    run: () => Promise<never> | Promise<{ status: 'pass' | 'fail'; summary: string }>,
  ): Check<null> => ({ id, title: id, needs, run, timeoutMs: 200 });
  test('skips dependants of a failure, turns a throw or a hang into a failure', async () => {
    const r = await runChecks(
      [
        c('a', [], async () => ({ status: 'fail', summary: 'a broke' })),
        c('b', ['a'], async () => ({ status: 'pass', summary: 'never' })),
        c('c', [], async () => {
          throw new Error('boom');
        }),
        c('d', [], () => new Promise(() => {})),
        c('e', ['c'], async () => ({ status: 'pass', summary: 'x' })),
      ],
      null,
    );
    assert.deepEqual(
      r.map((x) => [x.id, x.status]),
      [
        ['a', 'fail'],
        ['b', 'skip'],
        ['c', 'fail'],
        ['d', 'fail'],
        ['e', 'skip'],
      ],
    );
    assert.match(r[2]!.cause!, /boom/);
    assert.match(r[3]!.cause!, /took longer than/);
    assert.equal(worst(r), 'fail');
  });
});

describe("OpenSSH's errors", () => {
  // Recorded from OpenSSH 9.2 on Debian 12.
  const cases: [string, string][] = [
    ['nixremote-e2e@127.0.0.1: Permission denied (publickey,password).', 'auth'],
    ['Host key verification failed.', 'hostkey-unknown'],
    [
      '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n',
      'hostkey-changed',
    ],
    ['ssh: connect to host 127.0.0.1 port 2301: Connection refused', 'refused'],
    ['ssh: connect to host 10.0.0.9 port 22: Connection timed out', 'timeout'],
    ['ssh: Could not resolve hostname nosuch: Name or service not known', 'dns'],
    ['kex_exchange_identification: read: Connection reset by peer', 'dropped'],
    [
      '@         WARNING: UNPROTECTED PRIVATE KEY FILE!          @\nLoad key "/root/.ssh/nix_remote": bad permissions',
      'key-perms',
    ],
    ['Received disconnect from 1.2.3.4 port 22:2: Too many authentication failures', 'too-many-keys'],
    // Recorded here against a listener that never speaks, and through a jump host that refuses.
    ['Connection timed out during banner exchange\r\nConnection to 127.0.0.1 port 45001 timed out', 'banner-timeout'],
    [
      'ssh: connect to host 127.0.0.1 port 1: Connection refused\r\nkex_exchange_identification: Connection closed by remote host\r\nConnection closed by UNKNOWN port 65535',
      'proxy',
    ],
    [
      '/bin/bash: line 1: exec: nc: not found\r\nkex_exchange_identification: Connection closed by remote host\r\nConnection closed by UNKNOWN port 65535',
      'proxy',
    ],
    [
      'Warning: Identity file /nonexistent/key not accessible: No such file or directory.\nnix@b: Permission denied (publickey).',
      'key-missing',
    ],
    ['ssh: Could not resolve hostname nosuch.invalid: Name or service not known', 'dns'],
    // What an OpenSSH 9.8+ sshd's PerSourcePenalties (and MaxStartups) look like to the client.
    [
      'kex_exchange_identification: Connection closed by remote host\r\nConnection closed by 127.0.0.1 port 2222',
      'dropped',
    ],
    ['kex_exchange_identification: banner line contains invalid characters', 'not-ssh'],
    [
      'Unable to negotiate with 10.0.0.5 port 22: no matching host key type found. Their offer: ssh-rsa,ssh-dss',
      'algorithms',
    ],
    ['Timeout, server 10.0.0.5 not responding.', 'alive-timeout'],
    ['This account is currently not available.', 'shell.nologin'],
    ['Bad owner or permissions on /root/.ssh/config', 'config-perms'],
    ['Load key "/root/.ssh/nix_remote": invalid format\nnix@b: Permission denied (publickey).', 'key-format'],
    [
      'No ED25519 host key is known for box and you have requested strict checking.\r\nHost key verification failed.',
      'hostkey-unknown',
    ],
    ['some new complaint\n', 'not-recognised'],
  ];
  const ssh = (stderr: string, n = { name: 'the builder' } as { name: string; user?: string }) =>
    diagnose({ stdout: '', stderr, exitCode: 255 }, 'login', n, 'ssh box', 'ssh -v box true');
  for (const [stderr, kind] of cases)
    test(`${kind}: ${stderr.split('\n')[0]!.slice(0, 50)}`, () => {
      const id = ssh(stderr).id;
      assert.equal(id.replace(/^ssh\./, ''), kind);
    });
  test('what ssh said is never lost: the proxy hop quoted, an unknown failure quoted whole, silence said', () => {
    assert.match(
      ssh('ssh: connect to host 127.0.0.1 port 1: Connection refused\nConnection closed by UNKNOWN port 65535').cause,
      /ssh said: ssh: connect to host 127\.0\.0\.1 port 1: Connection refused$/,
    );
    const odd = ssh('  first\nsomething odd happened \x1b[1m \n');
    assert.equal(odd.known, false);
    assert.equal(
      odd.cause,
      'not recognised: ssh box failed (exit 255) and printed "first\\nsomething odd happened \\u001b[1m"',
    );
    assert.match(odd.fix, /^run ssh -v box true to see more/);
    assert.equal(ssh('').cause, 'not recognised: ssh box failed (exit 255) and printed nothing');
    assert.match(
      ssh('kex_exchange_identification: read: Connection reset by peer').cause,
      /PerSourcePenalties.*15 s at first, up to 10 minutes/,
    );
    assert.match(ssh('kex_exchange_identification: read: Connection reset by peer').fix, /srclimit_penalise/);
    assert.match(
      ssh('Permission denied (publickey).', { name: 'box', user: 'nix' }).fix,
      /^add the public key to ~nix\/\.ssh\/authorized_keys on the builder \(nixremote init --copy-key password\); if it is there, chmod go-w ~nix ~nix\/\.ssh/,
    );
    // The nologin shell prints its sentence on stdout and exits 1: the whole output is read.
    const nologin = diagnose(
      { stdout: 'This account is currently not available.\n', stderr: '', exitCode: 1 },
      'login',
      { name: 'box', user: 'nix' },
      'ssh box',
      'ssh -v box true',
    );
    assert.equal(nologin.id, 'shell.nologin');
    assert.match(nologin.fix, /usermod -s \/bin\/sh nix/);
  });
});

describe("Nix's protocol errors decoded to the shell's text", () => {
  test('protocol mismatch (Nix 2.8 wording, with the buffer it quotes)', () => {
    assert.equal(
      decodeProtocolError(
        "error: 'nix-store --serve' protocol mismatch from 'b1', got 'Hello there\n       \uFFFD\uFFFDRT\0\0'",
      ),
      'Hello there',
    );
  });
  test('serialised integer: eight bytes, little-endian', () => {
    const n = Buffer.from('Welcome!', 'latin1').readBigUInt64LE(0);
    assert.equal(decodeProtocolError(`error: serialised integer ${n} is too large for type 'j'`), 'Welcome!');
  });
  test('build failures map to causes', () => {
    assert.match(
      explainBuild('error: you are not privileged to build input-addressed derivations')!.fix,
      /trusted-users/,
    );
    assert.match(
      explainBuild("error: cannot add path '/nix/store/x' because it lacks a signature by a trusted key")!.cause,
      /does not trust/,
    );
    assert.match(
      explainBuild("error: 'nix-store --serve' protocol mismatch from 'b', got 'Hi'")!.cause,
      /printed "Hi"/,
    );
    assert.match(
      explainBuild("error: unable to start any build; either increase '--max-jobs' or enable remote builds.")!.cause,
      /max-jobs = 0/,
    );
    assert.match(explainBuild('Failed to find a machine for remote build!')!.cause, /max-jobs|usable/);
    assert.equal(explainBuild('something else entirely'), null);
  });
});

describe('build failures, in the wording of each Nix version', () => {
  // The strings are Nix's own, per version (from its source at those tags).
  const cases: [string, string, RegExp][] = [
    ['2.3', 'error: you are not privileged to build derivations', /does not trust/],
    ['2.4-2.35', 'error: you are not privileged to build input-addressed derivations', /does not trust/],
    ['2.3-2.14', "error: cannot add path '/nix/store/abc-x' because it lacks a valid signature", /does not trust/],
    [
      '2.15+',
      "error: cannot add path '/nix/store/abc-x' because it lacks a signature by a trusted key",
      /does not trust/,
    ],
    ['2.3', "error: serialised integer 7016996765293437281 is too large for type 'j'", /shell prints text/],
    ['2.4-2.35', "error: 'nix-store --serve' protocol mismatch from 'box', got 'Welcome'", /printed "Welcome"/],
    [
      '2.3-2.20',
      "error: unable to start any build; either increase '--max-jobs' or enable remote builds.",
      /max-jobs = 0/,
    ],
    [
      '2.21+',
      "error:\n       Unable to start any build;\n       either increase '--max-jobs' or enable remote builds.",
      /max-jobs = 0/,
    ],
    [
      '2.4-2.29',
      'error: unable to start any build; remote machines may not have all required system features.',
      /HostKeyAlias/,
    ],
    [
      '2.3-2.29',
      "error: a 'aarch64-linux' with features {} is required to build '/nix/store/x.drv', but I am a 'x86_64-linux' with features {benchmark}",
      /system and features/,
    ],
    [
      '2.30-2.33',
      "error: Cannot build '/nix/store/x.drv'.\n       Reason: required system or feature not available\n       Required system: 'aarch64-linux' with features {}",
      /system and features/,
    ],
    [
      '2.34+',
      "error: Cannot build '/nix/store/x.drv'.\n       Reason: platform mismatch\n       Required system: 'aarch64-linux'",
      /system and features/,
    ],
    [
      '2.34+',
      "error: Cannot build '/nix/store/x.drv'.\n       Reason: local builds are disabled (max-jobs = 0)",
      /max-jobs = 0/,
    ],
    [
      '2.4+',
      'Failed to find a machine for remote build!\nderivation: x.drv\nrequired (system, features): (x86_64-linux, [])',
      /max-jobs = 0/,
    ],
  ];
  for (const [v, out, re] of cases) {
    test(`Nix ${v}: ${out.split('\n')[0]!.slice(0, 60)}`, () => {
      const e = explainBuild(out);
      assert.ok(e, 'not recognised');
      assert.match(e.cause, re);
    });
  }
});

describe('reading builders as Nix does', () => {
  const files: Record<string, string> = {
    '/etc/nix/nix.conf': 'sandbox = false\ninclude extra.conf\n!include /etc/nix/missing.conf\n',
    '/etc/nix/extra.conf': 'builders = @/etc/nix/machines ; ssh://inline x86_64-linux\n',
    '/etc/nix/machines': `ssh://a x86_64-linux /k 4 1 - - ${machinesHostKeyField(ED)}\n# comment\n`,
    '/home/u/.config/nix/nix.conf': 'builders = ssh://user-only\n',
  };
  const read = (p: string) => files[p] ?? null;
  test('includes relative to the including file, @files, ";" separators', () => {
    const cfg = readNixConfig(read, {}, '/root', false);
    const b = readBuilders(cfg, read, {}, ['system']);
    assert.deepEqual(
      b.machines.map((m) => m.uri),
      ['ssh://a', 'ssh://inline'],
    );
    assert.equal(b.source!.file, '/etc/nix/extra.conf');
    assert.deepEqual(cfg.errors, []);
  });
  test('a single-user Nix reads the user file after the system one', () => {
    const cfg = readNixConfig(read, {}, '/home/u', true);
    assert.deepEqual(
      readBuilders(cfg, read, {}, ['system', 'user', 'env']).machines.map((m) => m.uri),
      ['ssh://user-only'],
    );
  });
  test('unset builders means @/etc/nix/machines (where NixOS writes nix.buildMachines)', () => {
    const r = (p: string) => (p === '/etc/nix/machines' ? files[p]! : null);
    const b = readBuilders(readNixConfig(r, {}, '/root', false), r, {}, ['system']);
    assert.equal(b.source, null);
    assert.deepEqual(
      b.machines.map((m) => m.uri),
      ['ssh://a'],
    );
  });
  test('a missing mandatory include is an error', () => {
    const cfg = readNixConfig((p) => (p === '/etc/nix/nix.conf' ? 'include nope.conf\n' : null), {}, '/root', false);
    assert.match(cfg.errors[0]!, /nix.conf:1: include \/etc\/nix\/nope.conf does not exist/);
  });
});

describe('local checks', () => {
  test('not root on a multi-user install: fail, and the builders check is skipped', async () => {
    const ctx = fakeCtx({}, () => ok('nix --version', 'nix (Nix) 2.8.0\n'), {
      install: { ...root, user: { name: 'u', uid: 1000, gid: 1000, home: '/home/u' } },
    });
    const r = await runChecks(localChecks(), localState(ctx));
    assert.equal(r.find((c) => c.id === 'access')!.status, 'fail');
    assert.match(r.find((c) => c.id === 'access')!.fix!, /sudo/);
    assert.equal(r.find((c) => c.id === 'builders')!.status, 'skip');
  });
  test('a malformed machine line is reported with file, line and column', async () => {
    const ctx = fakeCtx({ '/etc/nix/machines': 'ssh://a x86_64-linux - four\n' }, () => ok('nix', 'nix (Nix) 2.8.0'));
    const r = await runChecks(localChecks(), localState(ctx));
    assert.equal(
      r.find((c) => c.id === 'builders')!.summary,
      "/etc/nix/machines:1:24: max jobs 'four' (field 4) is not a whole number; Nix 2.8.0 rejects it: bad machine specification: failed to convert column #3 in a row: 'ssh://a x86_64-linux - four' to 'unsigned int'",
    );
  });
  test('each field as that Nix version reads it: 2.8 (machines.cc at 2.8.0) against 2.34', async () => {
    const files = {
      '/etc/nix/machines': 'ssh://a x86_64-linux - 2 1.5\n  # my builders\nssh://b x86_64-linux - 1 1 - - c3No!\n',
    };
    const summary = async (version: string) =>
      (await runChecks(localChecks(), localState(fakeCtx(files, () => ok('nix', `nix (Nix) ${version}`))))).find(
        (c) => c.id === 'builders',
      )!;
    const old = await summary('2.8.0');
    assert.equal(old.status, 'fail');
    assert.match(
      old.summary,
      /^\/etc\/nix\/machines:1:26: speed factor 1\.5: Nix before 2\.20 reads the speed factor as a whole number; Nix 2\.8\.0 rejects it: .* to 'unsigned int'$/,
    );
    // 2.34 takes the float, and the indented comment, but no version takes a bad base64 host key.
    const now = await summary('2.34.8');
    assert.match(
      now.summary,
      /^\/etc\/nix\/machines:3:32: host key \(field 8\) is not base64; Nix 2\.34\.8 rejects it: invalid character in Base64 string: '!'$/,
    );
    const m = (v: [number, number, number], text: string) =>
      parseMachines(`@/m`, 'builders', () => text, 0, 1, machineRules(v)).errors.map((e) => e.message);
    assert.match(
      m([2, 26, 3], '  # my builders\n')[0]!,
      /an entry of blanks only \(an indented comment\); Nix 2\.26\.3 rejects it: bad machine specification: store URL was not found/,
    );
    assert.deepEqual(m([2, 28, 2], '  # my builders\n'), []);
    assert.match(m([2, 24, 0], 'ssh://a x86_64-linux - 1 -2\n')[0]!, /speed factor must be >= 0/);
    // '#' to the next ';' before 2.28.2; to the end of the line after.
    assert.equal(
      parseMachines('@/m', 'b', () => 'ssh://a # x ; ssh://b\n', 0, 1, machineRules([2, 18, 1])).machines.length,
      2,
    );
    assert.equal(
      parseMachines('@/m', 'b', () => 'ssh://a # x ; ssh://b\n', 0, 1, machineRules([2, 30, 0])).machines.length,
      1,
    );
  });
  test('a fractional speed factor (Nix 2.20+) and extra fields (ignored by Nix) are accepted', () => {
    const r = parseMachines('ssh://a x86_64-linux - 2 1.5 - - - extra', 'm');
    assert.deepEqual(r.errors, []);
    assert.equal(r.machines[0]!.speedFactor, 1.5);
  });
  test('nix.conf changed after the daemon started', async () => {
    const ctx = fakeCtx(
      { '/etc/nix/nix.conf': 'builders = @/etc/nix/machines\n' },
      () => ok('nix', 'nix (Nix) 2.8.0'),
      { mtimeMs: () => 5000 },
    );
    const r = (await runChecks(localChecks(), localState(ctx))).find((c) => c.id === 'daemon-fresh')!;
    assert.equal(r.status, 'fail');
    assert.match(r.summary, /changed after the nix-daemon \(pid 42\) started/);
    assert.match(r.fix!, /systemctl restart nix-daemon/);
  });
  test('a Mac after a macOS update: the stock /etc/zshrc named; the daemon looked for where launchd runs it', async () => {
    const mac: Install = {
      ...root,
      target: 'macos',
      daemon: {
        restart: ['launchctl', 'kickstart', '-k', 'system/org.nixos.nix-daemon'],
        how: 'launchctl kickstart -k system/org.nixos.nix-daemon',
      },
    };
    const files = {
      '/etc/nix/nix.conf': 'builders = @/etc/nix/machines\n',
      '/etc/nix/machines': 'ssh://box x86_64-linux\n',
      '/etc/zshrc': '# System-wide profile for interactive zsh(1) shells.\n',
      '/etc/synthetic.conf': 'nix\n',
      '/Library/LaunchDaemons/org.nixos.nix-daemon.plist': '<plist/>',
    };
    const ctx = fakeCtx(files, () => ok('nix', 'nix (Nix) 2.24.9'), {
      install: mac,
      platform: 'darwin',
      daemon: () => 'unseen',
    });
    const r = await runChecks(localChecks(), localState(ctx));
    const by = (id: string) => r.find((c) => c.id === id)!;
    assert.equal(by('target').status, 'warn');
    assert.match(by('target').summary, /^macos \(macOS, .*\): \/etc\/zshrc no longer sources Nix's nix-daemon\.sh$/);
    assert.match(by('target').fix!, /^add to \/etc\/zshrc: /);
    assert.equal(by('daemon-fresh').status, 'warn');
    assert.match(by('daemon-fresh').fix!, /launchctl kickstart -k system\/org\.nixos\.nix-daemon/);
    assert.deepEqual([by('daemon-ssh').status, by('daemon-ssh').summary], ['pass', '/usr/bin/ssh']);
    assert.equal(by('builders').status, 'pass');
  });
  test('builders only in a user file: taken from a trusted user (root by default), else ignored', async () => {
    const mine = { '/root/.config/nix/nix.conf': 'builders = ssh://x\n' };
    const taken = fakeCtx(mine, () => ok('nix', 'nix (Nix) 2.8.0'));
    const t = (await runChecks(localChecks(), localState(taken))).find((c) => c.id === 'ignored-settings')!;
    assert.equal(t.status, 'pass');
    assert.equal(t.summary, 'builders in /root/.config/nix/nix.conf is taken: the daemon trusts root');
    const ctx = fakeCtx({ ...mine, '/etc/nix/nix.conf': 'trusted-users = @wheel\n' }, () =>
      ok('nix', 'nix (Nix) 2.8.0'),
    );
    const r = (await runChecks(localChecks(), localState(ctx))).find((c) => c.id === 'ignored-settings')!;
    assert.equal(r.status, 'fail');
    assert.match(r.cause!, /restricted setting/);
    assert.match(r.fix!, /^move it to \/etc\/nix\/nix\.conf \(or the machines file\)/);
  });
  test("the fix speaks the target's language: Determinate's nix.custom.conf, NixOS's configuration", async () => {
    const files = {
      '/root/.config/nix/nix.conf': 'builders = ssh://x\n',
      '/etc/nix/nix.conf': 'trusted-users = @wheel\n',
    };
    const fixFor = async (over: Partial<Install>) =>
      (
        await runChecks(
          localChecks(),
          localState(fakeCtx(files, () => ok('nix', 'nix (Nix) 2.8.0'), { install: { ...root, ...over } })),
        )
      ).find((c) => c.id === 'ignored-settings')!.fix!;
    assert.match(
      await fixFor({ target: 'determinate', settingsFile: '/etc/nix/nix.custom.conf' }),
      /^move it to \/etc\/nix\/nix\.custom\.conf /,
    );
    assert.match(
      await fixFor({ target: 'nixos', settingsFile: null }),
      /^move it to nix\.buildMachines in your NixOS configuration/,
    );
    assert.match(
      await fixFor({ target: 'nix-darwin', settingsFile: null }),
      /^move it to nix\.buildMachines in your nix-darwin configuration \(then darwin-rebuild switch\)$/,
    );
  });
  test("under sudo, the invoking user's nix.conf is looked at too", async () => {
    const ctx = fakeCtx(
      {
        '/etc/passwd': 'root:x:0:0::/root:/bin/sh\nann:x:1000:1000:Ann:/srv/ann:/bin/bash\n',
        '/srv/ann/.config/nix/nix.conf': 'builders = ssh://mine x86_64-linux\n',
      },
      () => ok('nix', 'nix (Nix) 2.8.0'),
      { env: { SUDO_USER: 'ann' } },
    );
    const r = (await runChecks(localChecks(), localState(ctx))).find((c) => c.id === 'ignored-settings')!;
    assert.equal(r.status, 'fail');
    assert.match(r.summary, /\/srv\/ann\/\.config\/nix\/nix\.conf/);
  });
  test('ssh missing from the daemon PATH', async () => {
    const ctx = fakeCtx({}, () => ok('nix', 'nix (Nix) 2.8.0'), {
      daemon: () => ({ pid: 7, startedMs: 9e15, path: '/nowhere' }),
    });
    const r = (await runChecks(localChecks(), localState(ctx))).find((c) => c.id === 'daemon-ssh')!;
    assert.equal(r.status, 'fail');
  });
});

describe('builder checks on recorded output', () => {
  const machineText = (extra = '') =>
    `ssh://box x86_64-linux /root/.ssh/nix_remote 2 1 big-parallel${extra} - ${machinesHostKeyField(ED)}`;
  const sshG = (alias: string) =>
    `hostname 127.0.0.1\nport 2301\nuser nix\nidentityfile /root/.ssh/nix_remote\nhostkeyalias ${alias}\nuserknownhostsfile /root/.ssh/known_hosts\n`;
  // A multi-user builder whose daemon trusts only root.
  const probe = probeOutput({ set: { 'store-writable': null, 'daemon-socket': '1', daemon: 'ok' } });
  let hostKeyChanged = false;
  function exec(alias: string) {
    return (file: string, args: string[]): ExecResult => {
      const cmd = [file, ...args].join(' ');
      if (file === 'ssh' && args[0] === '-G') return ok(cmd, sshG(alias));
      // ssh refuses a host that shows another key than the pinned one (the fake host key).
      if (file === 'ssh' && args.includes('StrictHostKeyChecking=yes') && hostKeyChanged)
        return ok(cmd, '', 'Host key verification failed.\n', 255);
      if (file === 'ssh-keygen') return ok(cmd, `${ED.type} ${ED.base64} root@x\n`);
      if (file === 'ssh' && args.includes('true')) return ok(cmd);
      if (file === 'ssh' && args.some((a) => a.startsWith('sh -c'))) return ok(cmd, probe);
      if (file === 'ssh' && args.includes('--version')) return ok(cmd, 'nix-store (Nix) 2.8.0\n');
      if (file === 'nix' && args[0] === '--version') return ok(cmd, 'nix (Nix) 2.8.0\n');
      if (file === 'nix') return ok(cmd, 'Store URL: ssh://box\n');
      return ok(cmd, '', 'unexpected', 1);
    };
  }
  async function run(alias: string, text = machineText(), over: Partial<DoctorCtx> = {}) {
    // The line as init writes it, between its markers: doctor fixes only lines it manages.
    const machines = `# BEGIN nixremote builder box\n${text}\n# END nixremote builder box\n`;
    const ctx = fakeCtx(
      {
        '/root/.ssh/nix_remote': 'KEY',
        '/root/.ssh/nix_remote.pub': `${ED.type} ${ED.base64}`,
        '/etc/nix/machines': machines,
      },
      exec(alias),
      over,
    );
    const m = parseMachines(machines, '/etc/nix/machines').machines[0]!;
    const f = new BuilderFacts(ctx, m);
    try {
      return await runChecks(pathChecks('doctor'), f);
    } finally {
      f.close();
    }
  }
  const get = (r: Awaited<ReturnType<typeof run>>, id: string) => r.find((c) => c.id === id)!;

  test('a Lix client, 2.90 to 2.95: nix store ping, its port rules, its protocol floor named', async () => {
    for (const lix of ['2.90.0', '2.91.1', '2.92.0', '2.93.0', '2.94.0', '2.95.3']) {
      const [, minor] = lix.split('.').map(Number) as [number, number];
      const pings: string[][] = [];
      const base = exec('box');
      const lixExec = (ping: (args: string[]) => ExecResult | null) => (file: string, args: string[]) => {
        // From 2.92 `nix --version` always prints more lines after the first (libmain/shared.cc).
        if (file === 'nix' && args[0] === '--version')
          return ok('nix --version', `nix (Lix, like Nix) ${lix}\nSystem type: x86_64-linux\nFeatures: gc\n`);
        if (file === 'nix') {
          pings.push(args);
          return ping(args) ?? base(file, args);
        }
        return base(file, args);
      };
      const r = await run('box', machineText(), { exec: async (f, a) => lixExec(() => null)(f, a) });
      assert.equal(get(r, 'store-ping').status, 'pass', lix);
      // Lix has `nix store ping` only, never `store info` (lix/nix/ping-store.cc).
      assert.deepEqual(pings[0]!.slice(2, 4), ['store', 'ping'], lix);
      // ?port=: Lix's from 2.93 (ssh-store.hh); before, an unknown setting.
      const q = await run('box', machineText().replace('ssh://box', 'ssh://box?port=2301'), {
        exec: async (f, a) => lixExec(() => null)(f, a),
      });
      assert.equal(get(q, 'uri').status, minor >= 93 ? 'pass' : 'fail', lix);
      if (minor < 93)
        assert.match(
          get(q, 'uri').summary,
          new RegExp(`\\?port=2301, which Lix ${lix.replace(/\./g, '\\.')} does not know`),
        );
      // host:port: never split off by Lix.
      const hp = await run('box', machineText().replace('ssh://box', 'ssh://box:2301'), {
        exec: async (f, a) => lixExec(() => null)(f, a),
      });
      assert.equal(get(hp, 'uri').status, 'fail', lix);
      assert.match(get(hp, 'uri').cause!, /Lix gives ssh "box:2301" as the host name/);
      if (minor >= 93) assert.match(get(hp, 'uri').fix!, /add \?port=2301 \(Lix 2\.93 on\)/);
      // A builder's Nix (2.8 here) below Lix's floor over ssh-ng: named before any ping, with
      // ssh:// as the fix; over ssh:// (serve protocol 2.4 from Nix 2.0) it is fine.
      const ng = await run('box', machineText().replace('ssh://box', 'ssh-ng://box'), {
        exec: async (f, a) => lixExec(() => null)(f, a),
      });
      const rn = get(ng, 'remote-nix');
      if (minor >= 94) {
        assert.equal(rn.status, 'fail', lix);
        assert.match(
          rn.cause!,
          new RegExp(
            `Lix ${lix.replace(/\./g, '\\.')} no longer speaks ssh-ng:// to a Nix older than 2\\.18, and the builder has Nix 2\\.8\\.0`,
          ),
        );
        assert.match(rn.fix!, /use ssh:\/\/ for this builder/);
      } else assert.equal(rn.status, 'pass', lix);
      assert.equal(get(r, 'remote-nix').status, 'pass', `${lix} over ssh://`);
    }
  });
  test('all pass, except trust: the ssh user is not in trusted-users', async () => {
    const r = await run('box');
    assert.deepEqual(
      r.filter((c) => c.status !== 'pass').map((c) => [c.id, c.status]),
      [
        ['trust', 'fail'],
        ['build', 'skip'],
      ],
    );
    assert.match(get(r, 'trust').summary, /nix is not in the builder's trusted-users \(root\)/);
  });
  test('without HostKeyAlias the pinned key is looked up as [host]:port', async () => {
    const r = await run('none');
    assert.match(get(r, 'host-key').summary, /looked up as "\[127\.0\.0\.1\]:2301", but Nix writes it under "box"/);
    assert.equal(get(r, 'login').status, 'skip');
  });
  test('a claimed feature the builder lacks', async () => {
    const r = await run('box', machineText(',kvm'));
    assert.match(get(r, 'capabilities').summary, /claims feature kvm/);
  });
  test('a key that others can read, with a fix action', async () => {
    const ctx = fakeCtx({ '/root/.ssh/nix_remote': 'KEY' }, exec('box'));
    ctx.stat = (p) => (p === '/root/.ssh/nix_remote' ? { uid: 0, mode: 0o644, isFile: true } : null);
    const f = new BuilderFacts(ctx, parseMachines(machineText(), 'm').machines[0]!);
    const r = await runChecks(pathChecks('doctor'), f);
    f.close();
    assert.equal(get(r, 'key').fix, 'chmod 600 /root/.ssh/nix_remote');
    assert.equal(get(r, 'key').action?.description, 'chmod 600 /root/.ssh/nix_remote');
  });
  test('a changed host key against the machine line', async () => {
    const other = parseKeyLine('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINH5oCf1+utmWwIxA1e4/pDspOuCUPEOh10Z3z0t5j5s')!;
    hostKeyChanged = true;
    const r = await run('box', machineText(), { hostKey: async () => other }).finally(() => {
      hostKeyChanged = false;
    });
    assert.match(get(r, 'host-key').summary, /the machine line pins SHA256:pZvr.*, the builder shows SHA256:/);
    assert.ok(get(r, 'host-key').action, "a machines file of the user's own is fixed in place");
  });
  test('on NixOS the fix goes into the configuration, in its words, never into the generated machines file', async () => {
    const other = parseKeyLine('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINH5oCf1+utmWwIxA1e4/pDspOuCUPEOh10Z3z0t5j5s')!;
    const nixos: Install = {
      ...root,
      target: 'nixos',
      settingsFile: null,
      daemon: { restart: null, how: 'sudo nixos-rebuild switch' },
    };
    hostKeyChanged = true;
    const r = await run('box', machineText(), { hostKey: async () => other, install: nixos }).finally(() => {
      hostKeyChanged = false;
    });
    const hk = get(r, 'host-key');
    assert.equal(hk.status, 'fail');
    assert.equal(hk.action, undefined);
    assert.match(
      hk.fix!,
      new RegExp(
        `set publicHostKey = "${machinesHostKeyField(other).replace(/[+/=]/g, '\\$&')}" for box in nix\\.buildMachines in your NixOS configuration \\(then nixos-rebuild switch\\), and programs\\.ssh\\.knownHosts\\."box"\\.publicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINH5`,
      ),
    );
    const alias = get(await run('none', machineText(), { install: nixos }), 'host-key');
    assert.equal(alias.action, undefined);
    assert.match(alias.fix!, /^add "HostKeyAlias box" to the Host block for box in programs\.ssh\.extraConfig$/);
  });
  test('--drv matching follows Nix: system, required and mandatory features', () => {
    const m = { systems: ['x86_64-linux'], supportedFeatures: ['big-parallel'], mandatoryFeatures: [] as string[] };
    assert.equal(cannotTake(m, 'x86_64-linux', ['big-parallel']), null);
    assert.match(cannotTake(m, 'aarch64-linux', [])!, /needs system aarch64-linux/);
    assert.match(cannotTake(m, 'x86_64-linux', ['kvm'])!, /requires feature kvm/);
    assert.match(
      cannotTake({ ...m, mandatoryFeatures: ['benchmark'] }, 'x86_64-linux', [])!,
      /only takes derivations that require benchmark/,
    );
    assert.equal(formatMachineLine({ ...parseMachines(machineText(), 'm').machines[0]! }), machineText());
  });
});

describe('the same builder twice', () => {
  test('two lines with one store URI: a warning naming both and the one to remove', async () => {
    const ctx = fakeCtx(
      {
        '/etc/nix/nix.conf': 'builders = @/etc/nix/machines\n',
        '/etc/nix/machines': 'ssh://box x86_64-linux\nssh://other x86_64-linux\nssh://box x86_64-linux - 4\n',
      },
      (file, args) => ok([file, ...args].join(' '), file === 'nix' ? 'nix (Nix) 2.8.0\n' : ''),
    );
    const r = (await runChecks(localChecks(), localState(ctx))).find((c) => c.id === 'builders')!;
    assert.equal(r.status, 'warn');
    assert.equal(r.summary, 'ssh://box is listed 2 times (/etc/nix/machines:1, /etc/nix/machines:3)');
    assert.equal(r.fix, 'keep one line for each builder: remove /etc/nix/machines:3');
  });
});
