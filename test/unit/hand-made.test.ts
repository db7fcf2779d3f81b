// Setups made by hand: host key checking turned off as the NixOS wiki does it is a warning,
// not a failure, and the fix takes out exactly those lines of the builder's own block.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { DoctorCtx, FileInfo } from '../../src/doctor/context.js';
import type { ExecResult } from '../../src/io/exec.js';
import type { Install } from '../../src/init/install.js';
import { runChecks } from '../../src/doctor/runner.js';
import { BuilderFacts } from '../../src/path/facts.js';
import { probeOutput } from './probe-fixture.js';
import { pathChecks } from '../../src/path/walk.js';
import { parseMachines } from '../../src/nix/machines-file.js';
import { parseKeyLine } from '../../src/ssh/host-key.js';
import { restoreHostKeyChecking } from '../../src/ssh/ssh-config.js';

const ED = parseKeyLine('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIScm/rGDiGdXRmh2QFm9Bpfj9CEahqNcCFZQH2PL8dS')!;
const root: Install = {
  multiUser: true,
  reason: 'test',
  user: { name: 'root', uid: 0, gid: 0, home: '/root' },
  confDir: '/etc/nix',
  daemon: null,
  target: 'nix-conf',
  settingsFile: '/etc/nix/nix.conf',
};
const WIKI =
  'Host builder\n  HostName 10.0.0.5\n  User nix\n  IdentityFile /root/.ssh/id_ed25519\n  StrictHostKeyChecking=no\n  UserKnownHostsFile=/dev/null\n';

describe('restoreHostKeyChecking', () => {
  test("takes the wiki's two lines out of the builder's own block, nothing else", () => {
    const text = `Host *\n  StrictHostKeyChecking no\n${WIKI}Host other\n  StrictHostKeyChecking no\n`;
    const r = restoreHostKeyChecking(text, 'builder');
    assert.deepEqual(r.removed, [7, 8]);
    assert.equal(
      r.text,
      'Host *\n  StrictHostKeyChecking no\nHost builder\n  HostName 10.0.0.5\n  User nix\n  IdentityFile /root/.ssh/id_ed25519\nHost other\n  StrictHostKeyChecking no\n',
    );
  });
  test('accept-new and off count; yes and a real known_hosts file stay', () => {
    assert.deepEqual(restoreHostKeyChecking('Host b\n  StrictHostKeyChecking accept-new\n', 'b').removed, [2]);
    assert.deepEqual(restoreHostKeyChecking('Host b\n  stricthostkeychecking OFF\n', 'b').removed, [2]);
    const keep = 'Host b\n  StrictHostKeyChecking yes\n  UserKnownHostsFile /dev/null ~/.ssh/known_hosts\n';
    assert.deepEqual(restoreHostKeyChecking(keep, 'b'), { text: keep, removed: [] });
  });
  test('set only in Host * or Match: nothing to take out of a block of its own', () => {
    const text =
      'Host *\n  StrictHostKeyChecking no\nMatch host builder\n  UserKnownHostsFile /dev/null\nHost builder\n  User nix\n';
    assert.deepEqual(restoreHostKeyChecking(text, 'builder').removed, []);
  });
});

describe('doctor on the wiki setup, on recorded output', () => {
  const sshG = (checking: string) =>
    `hostname 10.0.0.5\nport 22\nuser nix\nidentityfile /root/.ssh/id_ed25519\nhostkeyalias none\nstricthostkeychecking ${checking}\nuserknownhostsfile /dev/null\nglobalknownhostsfile /etc/ssh/ssh_known_hosts\n`;
  const probe = probeOutput({ set: { 'system-features': 'big-parallel' } });
  async function run(checking: string) {
    const files: Record<string, string> = { '/root/.ssh/config': WIKI, '/root/.ssh/id_ed25519': 'KEY' };
    const exec = async (file: string, args: string[]): Promise<ExecResult> => {
      const ok = (stdout = '') => ({
        command: [file, ...args].join(' '),
        stdout,
        stderr: '',
        exitCode: 0,
        timedOut: false,
      });
      if (file === 'ssh' && args[0] === '-G') return ok(sshG(checking));
      if (file === 'ssh-keygen' && args[0] === '-y') return ok(`${ED.type} ${ED.base64}\n`);
      if (file === 'ssh-keygen') return ok('');
      if (file === 'ssh' && args.some((a) => a.startsWith('sh -c'))) return ok(probe);
      if (file === 'ssh' && args.includes('--version')) return ok('nix-store (Nix) 2.8.0\n');
      if (file === 'ssh') return ok('');
      if (file === 'nix' && args[0] === '--version') return ok('nix (Nix) 2.8.0\n');
      return ok('Store URL: ssh://builder\n');
    };
    const ctx: DoctorCtx = {
      exec,
      read: (p) => files[p] ?? null,
      stat: (p): FileInfo | null =>
        files[p] !== undefined || p === '/etc/ssh/ssh_known_hosts' ? { uid: 0, mode: 0o600, isFile: true } : null,
      resolve: async () => ['10.0.0.5'],
      tcp: async () => ({ ok: true, ms: 1 }),
      hostKey: async () => ED,
      daemon: () => null,
      mtimeMs: () => null,
      env: {},
      install: root,
      build: false,
      drv: null,
      platform: 'linux',
    };
    const f = new BuilderFacts(ctx, parseMachines('ssh://builder x86_64-linux', '/etc/nix/nix.conf').machines[0]!);
    try {
      return await runChecks(pathChecks('doctor'), f);
    } finally {
      f.close();
    }
  }

  test('StrictHostKeyChecking no: a warning with the fix, and every later check runs', async () => {
    const r = await run('false');
    const hk = r.find((c) => c.id === 'host-key')!;
    assert.equal(hk.status, 'warn');
    assert.match(
      hk.summary,
      /^host key checking is off for builder \(StrictHostKeyChecking no, UserKnownHostsFile \/dev\/null\): ssh accepts whatever key 10\.0\.0\.5:22 shows$/,
    );
    assert.match(hk.fix!, /pins it in \/root\/\.ssh\/known_hosts and takes .* out of \/root\/\.ssh\/config line 5, 6/);
    const edits = hk.action!.steps.map((x) => (x.kind === 'write' ? [x.path, x.after] : [x.kind]));
    assert.deepEqual(edits, [
      ['/root/.ssh/known_hosts', `10.0.0.5 ${ED.type} ${ED.base64}\n`],
      ['/root/.ssh/config', 'Host builder\n  HostName 10.0.0.5\n  User nix\n  IdentityFile /root/.ssh/id_ed25519\n'],
    ]);
    assert.deepEqual(
      r.filter((c) => c.status === 'skip' || c.status === 'fail').map((c) => c.id),
      ['build'],
    );
    assert.equal(r.find((c) => c.id === 'login')!.status, 'pass');
  });
  test('accept-new with the key unknown: the same warning', async () => {
    assert.equal((await run('accept-new')).find((c) => c.id === 'host-key')!.status, 'warn');
  });
  test('checking on and the key unknown: still a failure', async () => {
    const hk = (await run('true')).find((c) => c.id === 'host-key')!;
    assert.equal(hk.status, 'fail');
    assert.match(hk.summary, /10\.0\.0\.5 is not in \/dev\/null or \/etc\/ssh\/ssh_known_hosts/);
  });
});

describe('a server that closes before its host key', () => {
  test('no bytes at all: turned away (PerSourcePenalties and the like); other bytes: not sshd', async () => {
    const { closedBeforeHostKey } = await import('../../src/io/ssh2-session.js');
    const none = closedBeforeHostKey('10.0.0.5:22', Buffer.alloc(0));
    assert.equal(none.kind, 'dropped');
    assert.match(none.message, /closed it before the SSH banner: .*PerSourcePenalties/);
    const http = closedBeforeHostKey('10.0.0.5:22', Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'));
    assert.deepEqual(
      [http.kind, http.message],
      ['protocol', '10.0.0.5:22 did not answer as an SSH server (it said "HTTP/1.1 400 Bad Request")'],
    );
    assert.equal(closedBeforeHostKey('h:1', Buffer.from('SSH-2.0-OpenSSH_10.0\r\n')).kind, 'protocol');
    // Recorded from OpenSSH 10.0 (trixie) and 10.6 (sid) with this address in the penalty box.
    const penalty = closedBeforeHostKey('127.0.0.1:2222', Buffer.from('Not allowed at this time\r\n'));
    assert.equal(penalty.kind, 'dropped');
    assert.match(
      penalty.message,
      /refused this address \("Not allowed at this time"\): sshd's PerSourcePenalties .* 15 s at first and up to 10 minutes/,
    );
    assert.match(closedBeforeHostKey('h:1', Buffer.from('Exceeded MaxStartups\r\n')).message, /too many logins/);
  });
});

describe('connection sharing from a wider Host * or Match', () => {
  test('what ssh -G says applies is named; off, or with no ControlPath, is nothing', async () => {
    const { multiplexing, parseSshG, hostBlockBody } = await import('../../src/ssh/ssh-config.js');
    assert.equal(
      multiplexing(parseSshG('controlmaster auto\ncontrolpath /root/.ssh/cm-abc\ncontrolpersist 600\n')),
      'ControlMaster auto, ControlPath /root/.ssh/cm-abc, ControlPersist 600',
    );
    assert.equal(multiplexing(parseSshG('controlmaster false\ncontrolpersist no\n')), null);
    assert.equal(multiplexing(parseSshG('controlmaster auto\ncontrolpath none\n')), null);
    // init's block turns it off for the builder, ahead of any wider section.
    const body = hostBlockBody({ name: 'b', hostName: 'h', port: 22, user: 'u', identityFile: '/k' });
    assert.ok(body.includes('  ControlMaster no') && body.includes('  ControlPath none'));
  });
});

describe('taking a hand-made setup over', () => {
  const block = {
    name: 'builder',
    hostName: '127.0.0.1',
    port: 2222,
    user: 'nix',
    identityFile: '/root/.ssh/nix_remote',
  };
  test("the user's Host block: nixremote's settings, their other options, moved ahead of Host *", async () => {
    const { adoptHostBlock, hostBlockBody, hostBlockMarkers } = await import('../../src/ssh/ssh-config.js');
    const text = `Host *\n  ServerAliveInterval 60\n\n# my builder\n${WIKI}  ProxyJump jump.lan\n  Ciphers aes256-gcm@openssh.com\n\n# the next one\nHost other\n  User x\n`;
    const a = adoptHostBlock(text, block)!;
    assert.equal(a.line, 5);
    assert.deepEqual(a.kept, ['  ProxyJump jump.lan', '  Ciphers aes256-gcm@openssh.com']);
    assert.deepEqual(a.replaced, [
      'HostName 10.0.0.5',
      'User nix',
      'IdentityFile /root/.ssh/id_ed25519',
      'StrictHostKeyChecking=no',
      'UserKnownHostsFile=/dev/null',
    ]);
    const m = hostBlockMarkers('builder');
    assert.equal(
      a.text,
      [
        m.begin,
        ...hostBlockBody(block),
        '  ProxyJump jump.lan',
        '  Ciphers aes256-gcm@openssh.com',
        m.end,
        'Host *',
        '  ServerAliveInterval 60',
        '',
        '# my builder',
        '',
        '# the next one',
        'Host other',
        '  User x',
        '',
      ].join('\n'),
    );
    assert.equal(adoptHostBlock('Host builder other\n  User x\n', block), null);
    assert.equal(adoptHostBlock('Host elsewhere\n', block), null);
  });
  test('a hand-written machine line is replaced in place; one shared with others is not taken apart', async () => {
    const { adoptMachineLines, machineFromHost, formatMachineLine } = await import('../../src/nix/machines-file.js');
    const m = machineFromHost({
      name: 'builder',
      systems: ['x86_64-linux'],
      sshKey: '/k',
      maxJobs: 2,
      speedFactor: 1,
      features: [],
      mandatoryFeatures: [],
      hostKey: ED,
    });
    const text = 'ssh://a x86_64-linux\nssh://builder x86_64-linux\nssh://c x86_64-linux';
    assert.equal(
      adoptMachineLines(text, [2], 'builder', m)!.text,
      `ssh://a x86_64-linux\n# BEGIN nixremote builder builder\n${formatMachineLine(m)}\n# END nixremote builder builder\nssh://c x86_64-linux`,
    );
    assert.equal(adoptMachineLines('ssh://builder x86_64-linux ; ssh://a x86_64-linux\n', [1], 'builder', m), null);
  });
  test("nix.conf's inline builder of that name is left out of nixremote's builders", async () => {
    const { upsertNixConf } = await import('../../src/nix/nix-conf.js');
    const text = 'builders = ssh://builder x86_64-linux ; ssh://other aarch64-linux\n';
    assert.match(
      upsertNixConf(text, '/etc/nix/machines', null, 'builder').edit.text,
      /^builders = ssh:\/\/other aarch64-linux ; @\/etc\/nix\/machines$/m,
    );
    assert.match(
      upsertNixConf('builders = ssh://builder x86_64-linux\n', '/etc/nix/machines', null, 'builder').edit.text,
      /^builders = @\/etc\/nix\/machines$/m,
    );
    assert.match(
      upsertNixConf(text, '/etc/nix/machines').edit.text,
      /^builders = ssh:\/\/builder x86_64-linux ; ssh:\/\/other aarch64-linux ; @\/etc\/nix\/machines$/m,
    );
  });
});

describe('an adopted block on a later run', () => {
  test("nixremote's settings are rewritten, the user's own options in the block stay", async () => {
    const { adoptHostBlock, upsertHostBlock } = await import('../../src/ssh/ssh-config.js');
    const b = { name: 'builder', hostName: '127.0.0.1', port: 2222, user: 'nix', identityFile: '/k' };
    const adopted = adoptHostBlock('Host builder\n  ProxyJump jump\n  User old\n', b)!.text;
    assert.equal(upsertHostBlock(adopted, b).changed, false);
    const moved = upsertHostBlock(adopted, { ...b, port: 2223 });
    assert.match(moved.text, / {2}Port 2223\n[\s\S]* {2}ProxyJump jump\n# END nixremote builder builder/);
    assert.doesNotMatch(moved.text, /User old/);
  });
});

describe('what other programs print, shown safely and explained', () => {
  test('control bytes from a builder or Nix are escaped; newlines and tabs stay', async () => {
    const { printable } = await import('../../src/text/printable.js');
    assert.equal(printable("got 'Welcome\x00\x00\x1b[31m'\n\tnext"), "got 'Welcome\\x00\\x00\\x1b[31m'\n\tnext");
  });
  test("builders given by an untrusted client, in 2.3's and 2.4+'s wording, before what follows from it", async () => {
    const { diagnose } = await import('../../src/path/catalogue.js');
    for (const who of ['client', 'user']) {
      const out = `warning: ignoring the ${who}-specified setting 'builders', because it is a restricted setting and you are not a trusted user\nerror: unable to start any build; either increase '--max-jobs' or enable remote builds`;
      const d = diagnose({ stdout: '', stderr: out, exitCode: 1 }, 'build', { name: 'b' }, 'the build', 'nix-build');
      assert.match(d.cause, /ignores builders given by a user it does not trust/);
    }
  });
});
