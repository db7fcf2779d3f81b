// The model of many builders: the registry read from a fixture tree holding every source
// Nix reads, the build hook's slot lock names, status's parsing, and remove's plan.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO } from './paths.js';
import { readRegistry, selectBuilders, type RegistryCtx } from '../../src/builders/registry.js';
import { leftInPlace, removable, removalWrites, takesEffect } from '../../src/builders/removal.js';
import { devKey, heldFlocks, slotLockPath, slotsInUse, type StatusCtx } from '../../src/builders/status.js';
import { hostSectionsFor, matchPattern } from '../../src/ssh/ssh-config.js';
import { findKnownHost, pinHostKey, unpinHostKey } from '../../src/ssh/known-hosts.js';
import { parseKeyLine } from '../../src/ssh/host-key.js';
import { parseModuleBuilders, upsertModule } from '../../src/nix/nixos-module.js';
import { REMOVE_KEY_SCRIPT, APPEND_KEY_SCRIPT, SET_KEY_SCRIPT } from '../../src/remote/scripts.js';
import { formatTable } from '../../src/text/table.js';
import { UsageError } from '../../src/validate.js';

const TREE = path.join(REPO, 'test/fixtures/registry');
const ED = parseKeyLine('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIScm/rGDiGdXRmh2QFm9Bpfj9CEahqNcCFZQH2PL8dS')!;

/** The fixture tree as this machine's /: reads and listings go under TREE. */
function treeCtx(over: Partial<RegistryCtx> = {}): RegistryCtx {
  const inTree = (p: string) => path.join(TREE, p);
  return {
    read: (p) => (fs.existsSync(inTree(p)) ? fs.readFileSync(inTree(p), 'utf8') : null),
    readdir: (p) => (fs.existsSync(inTree(p)) ? fs.readdirSync(inTree(p)) : []),
    env: {},
    who: { multiUser: true, home: '/root', name: 'root' },
    ...over,
  };
}

describe('the registry, from every source Nix reads', () => {
  const reg = readRegistry(treeCtx());
  const by = (n: string) => reg.builders.find((b) => b.name === n)!;

  test('inline builders, @files, the machines file and the module, in Nix order', () => {
    // The include's builders value is overridden by the later line; never-used is not there.
    assert.deepEqual(
      reg.builders.map((b) => b.name),
      ['inline-a', 'inline-b', 'fastbox', 'handmade', 'hashed', 'modbox'],
    );
    assert.deepEqual(reg.errors, []);
  });

  test('each row: where it is defined, and whether nixremote wrote it', () => {
    assert.deepEqual(
      reg.builders.map((b) => [b.name, `${b.source.file}:${b.source.line}`, b.managed, b.active, b.kind]),
      [
        ['inline-a', '/etc/nix/nix.conf:4', false, true, 'machines'],
        ['inline-b', '/etc/nix/nix.conf:4', false, true, 'machines'],
        ['fastbox', '/etc/nix/machines:2', true, true, 'machines'],
        ['handmade', '/etc/nix/machines:4', false, true, 'machines'],
        ['hashed', '/etc/nix/more-machines:1', false, true, 'machines'],
        ['modbox', '/etc/nixos/nixremote.nix:5', true, false, 'module'],
      ],
    );
  });

  test('the machine fields as Nix reads them', () => {
    const f = by('fastbox');
    assert.deepEqual(
      [f.uri, f.systems, f.maxJobs, f.speedFactor, f.supportedFeatures, f.mandatoryFeatures, f.keyPath],
      ['ssh://fastbox', ['x86_64-linux', 'i686-linux'], 4, 2, ['big-parallel', 'kvm'], [], '/root/.ssh/nix_remote'],
    );
    assert.deepEqual([by('inline-b').protocol, by('inline-b').user, by('inline-b').maxJobs], ['ssh-ng', 'nix', 2]);
    assert.deepEqual(
      [by('handmade').mandatoryFeatures, by('hashed').speedFactor, by('hashed').remoteProgram],
      [['benchmark'], 1.5, '/nix/var/nix/profiles/default/bin/nix-store'],
    );
    const m = by('modbox');
    assert.deepEqual(
      [m.uri, m.systems, m.maxJobs, m.speedFactor, m.supportedFeatures, m.hostKey?.base64],
      ['ssh://nix@modbox', ['aarch64-linux'], 8, 3, ['big-parallel'], ED.base64],
    );
  });

  test("Host blocks, through Include and patterns, ours told from the user's", () => {
    assert.deepEqual(by('fastbox').hostBlock, { file: '/root/.ssh/config', line: 4, managed: true });
    assert.deepEqual([by('fastbox').hostName, by('fastbox').port, by('fastbox').user], ['10.0.0.5', 2222, 'nix']);
    assert.deepEqual(by('handmade').hostBlock, { file: '/root/.ssh/config.d/10-hand.conf', line: 1, managed: false });
    assert.deepEqual(by('inline-a').hostBlock?.file, '/root/.ssh/config.d/10-hand.conf');
    // `Host *` alone is not a block for the builder.
    assert.equal(by('hashed').hostBlock, null);
  });

  test('pinned host keys: on the machine line, in known_hosts (plain, under HostName, hashed), or not', () => {
    assert.deepEqual(by('fastbox').pin, { where: 'machine-line' });
    assert.deepEqual(by('handmade').pin, {
      where: 'known_hosts',
      file: '/root/.ssh/known_hosts',
      line: 3,
      as: '192.0.2.7',
    });
    assert.deepEqual(by('hashed').pin, { where: 'known_hosts', file: '/root/.ssh/known_hosts', line: 2, as: 'hashed' });
    assert.equal(by('inline-b').pin?.where, 'known_hosts');
    assert.equal(
      readRegistry(treeCtx({ read: (p) => (p.endsWith('known_hosts') ? '' : treeCtx().read(p)) })).builders.find(
        (b) => b.name === 'handmade',
      )!.pin,
      null,
    );
  });

  test("a single-user Nix reads the user's nix.conf too; the daemon only a trusted user's", () => {
    const userConf = '/root/.config/nix/nix.conf';
    const read = (p: string) => (p === userConf ? 'builders = ssh://mine x86_64-linux\n' : treeCtx().read(p));
    assert.deepEqual(
      readRegistry(treeCtx({ read, who: { multiUser: false, home: '/root', name: 'root' } })).builders.map(
        (b) => b.name,
      ),
      ['mine', 'modbox'],
    );
    // The daemon takes a client's own builders only from a user it trusts: root by default.
    assert.ok(readRegistry(treeCtx({ read })).builders.some((b) => b.name === 'mine'));
    const ann = { multiUser: true, home: '/root', name: 'ann' };
    assert.ok(!readRegistry(treeCtx({ read, who: ann })).builders.some((b) => b.name === 'mine'));
  });

  test("with no builders setting, Nix's default @/etc/nix/machines", () => {
    const read = (p: string) => (p === '/etc/nix/nix.conf' ? 'sandbox = true\n' : treeCtx().read(p));
    assert.deepEqual(
      readRegistry(treeCtx({ read })).builders.map((b) => b.name),
      ['fastbox', 'handmade', 'modbox'],
    );
  });

  test("once NixOS switched to the module, its builder is the module's, listed once", () => {
    const read = (p: string) =>
      p === '/etc/nix/machines'
        ? 'ssh://nix@modbox aarch64-linux /root/.ssh/nix_remote 8 3 big-parallel - -\n'
        : treeCtx().read(p);
    const rows = readRegistry(treeCtx({ read })).builders.filter((b) => b.name === 'modbox');
    assert.deepEqual(
      rows.map((b) => [b.source.file, b.managed, b.active, b.kind]),
      [['/etc/nixos/nixremote.nix', true, true, 'module']],
    );
  });

  test("a user line merged into nixremote's nix.conf block is still the user's", () => {
    const read = (p: string) =>
      p === '/etc/nix/nix.conf'
        ? '# BEGIN nixremote (managed by nixremote; edits inside are replaced)\nbuilders = ssh://theirs x86_64-linux ; @/etc/nix/machines\n# END nixremote\n'
        : treeCtx().read(p);
    const theirs = readRegistry(treeCtx({ read })).builders.find((b) => b.name === 'theirs')!;
    assert.equal(theirs.managed, false);
  });

  test('selecting by name or URI', () => {
    assert.deepEqual(
      selectBuilders(reg.builders, [
        'fastbox',
        'ssh://hashed?remote-program=/nix/var/nix/profiles/default/bin/nix-store',
      ]).map((b) => b.name),
      ['fastbox', 'hashed'],
    );
    assert.equal(selectBuilders(reg.builders, []).length, 6);
    assert.throws(
      () => selectBuilders(reg.builders, ['fastbox', 'nope']),
      (e: Error) => e instanceof UsageError && /^no builder named nope \(configured: inline-a, /.test(e.message),
    );
  });
});

describe('remove: what it refuses, and its plan', () => {
  const reg = readRegistry(treeCtx());
  const files = { read: treeCtx().read, knownHosts: '/root/.ssh/known_hosts', owner: { uid: 0, gid: 0 } };

  test('an unknown name and a hand-written builder are refused (exit 2) naming what to edit', () => {
    assert.throws(
      () => removable(reg, 'nosuch'),
      (e: Error) =>
        e instanceof UsageError &&
        /no builder named nosuch \(configured: inline-a, inline-b, fastbox, handmade, hashed, modbox\)/.test(e.message),
    );
    assert.throws(
      () => removable(reg, 'handmade'),
      (e: Error) => e instanceof UsageError && /defined by hand at \/etc\/nix\/machines:4/.test(e.message),
    );
    assert.throws(() => removable(reg, 'inline-a'), /defined by hand at \/etc\/nix\/nix\.conf:4/);
  });

  test('a machines-file builder: its line, its Host block and its pin, nothing else', () => {
    const b = removable(reg, 'fastbox');
    const steps = removalWrites(b, files);
    assert.deepEqual(
      steps.map((s) => s.path),
      ['/etc/nix/machines', '/root/.ssh/config', '/root/.ssh/known_hosts'],
    );
    assert.equal(steps[0]!.after, 'ssh://handmade x86_64-linux /root/.ssh/id_ed25519 1 1 - benchmark\n');
    assert.doesNotMatch(steps[1]!.after, /fastbox/);
    assert.match(steps[1]!.after, /^Include config\.d\/\*\.conf\n\n\nHost \*\n/);
    assert.equal(steps[2]!.after, steps[2]!.before!.split('\n').slice(1).join('\n'));
    for (const s of steps) assert.equal(s.before, files.read(s.path));
    assert.equal(takesEffect(b, files.read).kind, 'note');
    assert.deepEqual(leftInPlace(reg, b), ['the key /root/.ssh/nix_remote stays: modbox uses it']);
  });

  test('a module builder: its block in the module, then nixos-rebuild', () => {
    const b = removable(reg, 'modbox');
    const steps = removalWrites(b, files);
    assert.deepEqual(
      steps.map((s) => s.path),
      ['/etc/nixos/nixremote.nix'],
    );
    assert.doesNotMatch(steps[0]!.after, /modbox/);
    assert.match(steps[0]!.after, /imports = \[\n {2}\];/);
    assert.match(takesEffect(b, files.read).title, /nixos-rebuild switch/);
    assert.match(
      takesEffect(b, () => '# Add it to your nix-darwin configuration, then run darwin-rebuild switch:').title,
      /^Then run darwin-rebuild switch/,
    );
  });
});

describe('ssh_config patterns and known_hosts', () => {
  test('Host patterns as ssh matches them', () => {
    assert.ok(matchPattern('Build-1.lan', 'build-?.LAN'));
    assert.ok(!matchPattern('build-10.lan', 'build-?.lan'));
    const text =
      'Host * !skip\n  User a\nHost b*\n  User b\nHost *\n  Port 1\nMatch host b1\n  User c\nHost other b1 !b1\n  User d\n';
    assert.deepEqual(
      hostSectionsFor(text, 'b1').map((s) => [s.line, s.options.get('user')]),
      [[3, ['b']]],
    );
    assert.deepEqual(hostSectionsFor(text, 'skip'), []);
  });

  test('a hashed known_hosts entry is found by its name only', () => {
    const salt = Buffer.from('0123456789abcdefghij');
    const hash = require_hmac(salt, 'box');
    const text = `|1|${salt.toString('base64')}|${hash} ssh-ed25519 ${ED.base64}\n`;
    assert.equal(findKnownHost(text, ['box'])?.line, 1);
    assert.equal(findKnownHost(text, ['bo']), null);
    assert.equal(findKnownHost(`@revoked box ssh-ed25519 ${ED.base64}\n`, ['box']), null);
  });

  test('unpinning takes back exactly what pinning added', () => {
    const ED2 = parseKeyLine('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINH5oCf1+utmWwIxA1e4/pDspOuCUPEOh10Z3z0t5j5s')!;
    const before = `other ssh-ed25519 ${ED.base64}\nbox,alias ssh-ed25519 ${ED2.base64}\n`;
    const pinned = pinHostKey(before, 'box', ED).text;
    assert.notEqual(pinned, before);
    assert.equal(unpinHostKey(pinned, 'box').text, before);
    assert.deepEqual(unpinHostKey(before, 'box'), { text: before, changed: false });
  });

  test('the module round-trips through its own parser', () => {
    const text = upsertModule(null, 'nixremote.nix', {
      name: 'q"x',
      sshUser: 'nix',
      sshKey: null,
      systems: ['x86_64-linux'],
      maxJobs: 2,
      speedFactor: 1,
      features: [],
      mandatoryFeatures: ['kvm'],
      hostKey: ED,
    }).text;
    const [e] = parseModuleBuilders(text);
    assert.deepEqual(
      [e!.name, e!.sshKey, e!.systems, e!.maxJobs, e!.mandatoryFeatures, e!.features],
      ['q"x', null, ['x86_64-linux'], 2, ['kvm'], []],
    );
  });
});

function require_hmac(salt: Buffer, name: string): string {
  // Written out here rather than through the code under test: ssh-keygen -H's HMAC-SHA1.
  const r = spawnSync(
    'python3',
    [
      '-c',
      `import hmac,hashlib,base64,sys;print(base64.b64encode(hmac.new(bytes.fromhex(sys.argv[1]),sys.argv[2].encode(),hashlib.sha1).digest()).decode())`,
      salt.toString('hex'),
      name,
    ],
    { encoding: 'utf8' },
  );
  return r.stdout.trim();
}

describe("status: the build hook's slots and the builder's facts", () => {
  test('slot lock names as build-remote.cc makes them', () => {
    assert.equal(slotLockPath('/nix/var/nix', 'ssh://box', 0), '/nix/var/nix/current-load/ssh:__box-0');
    assert.equal(
      slotLockPath('/nix/var/nix', 'ssh-ng://nix@box?remote-program=/a/b', 3),
      '/nix/var/nix/current-load/ssh-ng:__nix@box?remote-program=_a_b-3',
    );
  });

  test('a slot is in use while its lock file is flocked, read from /proc/locks', () => {
    const procLocks = [
      '1: FLOCK  ADVISORY  WRITE 4242 fe:01:1001 0 EOF',
      '1: -> FLOCK  ADVISORY  WRITE 4343 fe:01:1002 0 EOF',
      '2: POSIX  ADVISORY  WRITE 99 fe:01:1003 0 EOF',
      '3: FLOCK  ADVISORY  WRITE 4444 fe:01:1003 0 EOF',
    ].join('\n');
    const held = heldFlocks(procLocks);
    assert.deepEqual([...held], ['254:1:1001', '254:1:1003']);
    const dev = 0xfe01;
    assert.equal(devKey(dev, 1001), '254:1:1001');
    const inodes: Record<string, number> = { 'ssh:__box-0': 1001, 'ssh:__box-1': 1002, 'ssh:__box-2': 1003 };
    const ctx: Pick<StatusCtx, 'stateDir' | 'stat'> = {
      stateDir: '/s',
      stat: (p) => (inodes[path.basename(p)] ? { dev, ino: inodes[path.basename(p)]! } : null),
    };
    assert.equal(slotsInUse(ctx, 'ssh://box', 3, held), 2);
    assert.equal(slotsInUse(ctx, 'ssh://box', 1, held), 1);
    assert.equal(slotsInUse(ctx, 'ssh://other', 3, held), 0);
  });

  test("really held: a flock taken here shows in /proc/locks under the file's dev and inode", {
    skip:
      !fs.existsSync('/proc/locks') || spawnSync('sh', ['-c', 'command -v flock']).status !== 0
        ? 'needs Linux /proc/locks and flock(1)'
        : false,
  }, () => {
    const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-lock-')), 'ssh:__box-0');
    fs.writeFileSync(f, '');
    const st = fs.statSync(f);
    const r = spawnSync('flock', ['-x', f, 'cat', '/proc/locks'], { encoding: 'utf8' });
    assert.ok(heldFlocks(r.stdout).has(devKey(st.dev, st.ino)));
    assert.ok(!heldFlocks(fs.readFileSync('/proc/locks', 'utf8')).has(devKey(st.dev, st.ino)));
  });

  test('a table has no trailing spaces and lines its columns up', () => {
    assert.deepEqual(
      formatTable([
        ['A', 'BB', 'C'],
        ['aaa', 'b', ''],
      ]),
      ['A    BB  C', 'aaa  b'],
    );
  });
});

describe('authorized_keys scripts on a real sh', () => {
  const run = (script: string, home: string, key: string) =>
    spawnSync('sh', ['-c', script], {
      input: key + '\n',
      env: { PATH: process.env.PATH, HOME: home },
      encoding: 'utf8',
    });
  const KEY = `ssh-ed25519 ${ED.base64} nixremote@here`;

  test('remove takes only the lines holding that key, and keeps the file whole', () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-keys-'));
    fs.mkdirSync(path.join(home, '.ssh'), { mode: 0o700 });
    const f = path.join(home, '.ssh/authorized_keys');
    fs.writeFileSync(
      f,
      `ssh-rsa AAAAother a\nrestrict ${KEY}\nfrom="10.0.0.1" ssh-ed25519 AAAAnot${ED.base64.slice(7)} b\n# ${ED.base64} in a comment is not a key field\nssh-ed25519 AAAAlast`,
      { mode: 0o600 },
    );
    const r = run(REMOVE_KEY_SCRIPT, home, KEY);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /NIXREMOTE:removed=1/);
    assert.equal(
      fs.readFileSync(f, 'utf8'),
      `ssh-rsa AAAAother a\nfrom="10.0.0.1" ssh-ed25519 AAAAnot${ED.base64.slice(7)} b\n# ${ED.base64} in a comment is not a key field\nssh-ed25519 AAAAlast\n`,
    );
    assert.equal(fs.statSync(f).mode & 0o777, 0o600);
    assert.deepEqual(fs.readdirSync(path.join(home, '.ssh')), ['authorized_keys']);
    assert.match(run(REMOVE_KEY_SCRIPT, home, KEY).stdout, /NIXREMOTE:absent/);
    // And append puts it back once.
    assert.match(run(APPEND_KEY_SCRIPT, home, `restrict ${KEY}`).stdout, /NIXREMOTE:added/);
    assert.match(run(APPEND_KEY_SCRIPT, home, `restrict ${KEY}`).stdout, /NIXREMOTE:present/);
  });

  test('set makes the key stand as exactly that line: added, replaced where it stood, or left', () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-keys-'));
    const f = path.join(home, '.ssh/authorized_keys');
    const forced = `restrict,command="nix-store --serve --write" ${KEY}`;
    assert.match(run(SET_KEY_SCRIPT, home, forced).stdout, /NIXREMOTE:added/);
    assert.equal(fs.readFileSync(f, 'utf8'), `${forced}\n`);
    assert.equal(fs.statSync(f).mode & 0o777, 0o600);
    assert.match(run(SET_KEY_SCRIPT, home, forced).stdout, /NIXREMOTE:present/);
    // The protocol changed: the forced command is rewritten in place, the rest kept.
    fs.writeFileSync(f, `ssh-rsa AAAAother a\n${forced}\n# a comment\nrestrict ${KEY}\n`);
    const ng = `restrict,command="/nix/var/nix/profiles/default/bin/nix-daemon --stdio" ${KEY}`;
    const r = run(SET_KEY_SCRIPT, home, ng);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /NIXREMOTE:replaced=2/);
    assert.equal(fs.readFileSync(f, 'utf8'), `ssh-rsa AAAAother a\n${ng}\n# a comment\n`);
    assert.deepEqual(fs.readdirSync(path.join(home, '.ssh')), ['authorized_keys']);
  });

  test('remove on a builder with no authorized_keys changes nothing', () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-keys-'));
    const r = run(REMOVE_KEY_SCRIPT, home, KEY);
    assert.match(r.stdout, /NIXREMOTE:absent/);
    assert.deepEqual(fs.readdirSync(home), []);
  });
});

describe('disable and enable: a builder out of use and back, inside its own markers', () => {
  test('the line is commented under who, when and why; enable puts it back byte for byte', async () => {
    const { disableMachine, enableMachine, disabledMachines, parseMachines } = await import(
      '../../src/nix/machines-file.js'
    );
    const text = [
      'ssh://mine x86_64-linux',
      '# BEGIN nixremote builder box',
      'ssh://box x86_64-linux /root/.ssh/nix_remote 2 1 big-parallel - -',
      '# END nixremote builder box',
      '',
    ].join('\n');
    const d = disableMachine(text, 'box', { by: 'keep', at: '2026-12-01T23:00:00Z', why: 'ssh: connect\n timed out' })!;
    assert.ok(d.changed);
    assert.equal(
      d.text.split('\n').slice(2, 4).join('\n'),
      '# nixremote: disabled by keep at 2026-12-01T23:00:00Z: ssh: connect timed out\n#ssh://box x86_64-linux /root/.ssh/nix_remote 2 1 big-parallel - -',
    );
    // Nix no longer sees it; the user's own line is untouched.
    assert.deepEqual(
      parseMachines(d.text, 'm').machines.map((m) => m.uri),
      ['ssh://mine'],
    );
    const found = disabledMachines(d.text, '/etc/nix/machines');
    assert.equal(found.length, 1);
    assert.equal(found[0]!.name, 'box');
    assert.deepEqual(found[0]!.disabled, { by: 'keep', at: '2026-12-01T23:00:00Z', why: 'ssh: connect timed out' });
    assert.equal(found[0]!.machine!.maxJobs, 2);
    assert.equal(disableMachine(d.text, 'box', { by: 'keep', at: 'x', why: 'y' })!.changed, false, 'disabled once');
    // Taken out by the keeper, then by hand: the user's now, under the same commented line.
    const mine = disableMachine(d.text, 'box', { by: 'user', at: '2026-12-02T00:00:00Z', why: 'repairs' })!;
    assert.deepEqual(disabledMachines(mine.text, 'm')[0]!.disabled, {
      by: 'user',
      at: '2026-12-02T00:00:00Z',
      why: 'repairs',
    });
    assert.equal(enableMachine(mine.text, 'box')!.text, text);
    const e = enableMachine(d.text, 'box')!;
    assert.equal(e.text, text);
    assert.equal(enableMachine(text, 'box')!.changed, false);
    assert.equal(disableMachine(text, 'other', { by: 'user', at: 'x', why: 'y' }), null, 'no block: not ours');
  });
});
