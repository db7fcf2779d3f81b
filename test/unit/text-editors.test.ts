// The text editors: each fixture is edited, edited again (nothing changes), and the block
// is removed again (the original comes back, byte for byte). Properties check the same
// over generated files.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { REPO } from './paths.js';
import { removeBlock, upsertBlock, readBlock, BlockError } from '../../src/text/managed-block.js';
import {
  addHostKeyAlias,
  hostBlockMarkers,
  parseSshConfig,
  unmanagedHostLines,
  upsertHostBlock,
  effectiveConfigMismatches,
  type HostBlock,
} from '../../src/ssh/ssh-config.js';
import { pinHostKey, conflictingKeys } from '../../src/ssh/known-hosts.js';
import { upsertNixConf, parseNixConf } from '../../src/nix/nix-conf.js';
import {
  parseMachines,
  parseStoreUri,
  formatMachineLine,
  upsertMachine,
  unmanagedMachineLines,
  machineMarkers,
  withRemoteProgram,
  type Machine,
} from '../../src/nix/machines-file.js';
import { upsertModule, MODULE_HEADER } from '../../src/nix/nixos-module.js';
import {
  fingerprint,
  hostKeyFromBlob,
  hostKeyFromMachinesField,
  machinesHostKeyField,
  parseKeyLine,
} from '../../src/ssh/host-key.js';

const ED = parseKeyLine('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIScm/rGDiGdXRmh2QFm9Bpfj9CEahqNcCFZQH2PL8dS')!;
const ED2 = parseKeyLine('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINH5oCf1+utmWwIxA1e4/pDspOuCUPEOh10Z3z0t5j5s')!;
const block: HostBlock = {
  name: 'fastbox',
  hostName: '10.0.0.5',
  port: 2222,
  user: 'nix',
  identityFile: '/root/.ssh/nix_remote',
};
const fixture = (f: string) => fs.readFileSync(path.join(REPO, 'test/fixtures', f), 'utf8');

describe('managed blocks', () => {
  const m = { begin: '# BEGIN x', end: '# END x' };
  test('insert, re-insert, replace, remove', () => {
    const a = upsertBlock('one\ntwo\n', m, ['body']);
    assert.equal(a.text, 'one\ntwo\n# BEGIN x\nbody\n# END x\n');
    assert.deepEqual(upsertBlock(a.text, m, ['body']), { text: a.text, changed: false });
    assert.equal(upsertBlock(a.text, m, ['new']).text, 'one\ntwo\n# BEGIN x\nnew\n# END x\n');
    assert.equal(removeBlock(a.text, m).text, 'one\ntwo\n');
    assert.deepEqual(readBlock(a.text, m), ['body']);
  });
  test('damaged markers are an error, not a guess', () => {
    assert.throws(() => upsertBlock('# BEGIN x\nbody\n', m, ['b']), BlockError);
    assert.throws(() => upsertBlock('# END x\n# BEGIN x\n', m, ['b']), BlockError);
  });
  test('property: outside text kept, idempotent, removable', () => {
    const line = fc
      .stringMatching(/^[^\r\n]{0,30}$/)
      .filter((s) => !s.trim().startsWith('# BEGIN x') && !s.trim().startsWith('# END x'));
    fc.assert(
      fc.property(
        fc.array(line, { maxLength: 12 }),
        fc.constantFrom('\n', '\r\n'),
        fc.boolean(),
        fc.array(line, { minLength: 1, maxLength: 4 }),
        fc.nat(15),
        (ls, eol, finalNl, body, at) => {
          const text = ls.join(eol) + (finalNl && ls.length ? eol : '');
          const once = upsertBlock(text, m, body, (lines) => at % (lines.length + 1));
          const twice = upsertBlock(once.text, m, body, (lines) => at % (lines.length + 1));
          assert.equal(twice.text, once.text);
          assert.equal(twice.changed, false);
          assert.equal(removeBlock(once.text, m).text, text);
          assert.deepEqual(readBlock(once.text, m), body);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('ssh_config', () => {
  for (const f of ['include-match.in', 'crlf.in', 'no-newline.in']) {
    test(`fixture ${f}: block goes before the first Host/Match, edit is idempotent and removable`, () => {
      const text = fixture(`ssh-config/${f}`);
      const once = upsertHostBlock(text, block);
      assert.ok(once.changed);
      assert.equal(upsertHostBlock(once.text, block).changed, false);
      assert.equal(removeBlock(once.text, hostBlockMarkers('fastbox')).text, text);
      const entries = parseSshConfig(once.text);
      const hosts = entries.filter((e) => e.keyword === 'host' || e.keyword === 'match');
      assert.deepEqual(hosts[0]!.args, ['fastbox'], 'our Host block is the first section');
      if (text.includes('\r\n')) assert.ok(!/[^\r]\n/.test(once.text), 'CRLF file stays CRLF');
    });
  }
  test('keeps global options above the block global and comments with their Host', () => {
    const out = upsertHostBlock(fixture('ssh-config/include-match.in'), block).text;
    assert.ok(out.indexOf('ServerAliveInterval 60') < out.indexOf('# BEGIN nixremote'));
    assert.ok(out.indexOf('# END nixremote builder fastbox\n# work box\nHost work') > 0);
  });
  test('Key=value and Key value forms; quoted arguments', () => {
    const e = parseSshConfig('Host=a b\nIdentityFile "/x y/z"\n  port = 22\n');
    assert.deepEqual(
      e.map((x) => [x.keyword, x.args]),
      [
        ['host', ['a', 'b']],
        ['identityfile', ['/x y/z']],
        ['port', ['22']],
      ],
    );
  });
  test('an unmanaged Host with the alias is found; our own block is not', () => {
    assert.deepEqual(unmanagedHostLines('Host other fastbox\n  User x\n', 'fastbox'), [1]);
    assert.deepEqual(unmanagedHostLines('Host fastbox-2\n', 'fastbox'), []);
    assert.deepEqual(unmanagedHostLines(upsertHostBlock('', block).text, 'fastbox'), []);
  });
  test('HostKeyAlias is added under the Host line, once, keeping the rest', () => {
    const text = 'Host box\r\n  HostName 10.0.0.5\r\nHost other\r\n  User x';
    const once = addHostKeyAlias(text, 'box')!;
    assert.equal(once, 'Host box\r\n  HostKeyAlias box\r\n  HostName 10.0.0.5\r\nHost other\r\n  User x');
    assert.equal(addHostKeyAlias(once, 'box'), null);
    assert.equal(addHostKeyAlias(text, 'nosuch'), null);
    assert.equal(addHostKeyAlias('Host box', 'box'), 'Host box\n  HostKeyAlias box');
  });
  test('ssh -G output that another section overrode is reported', () => {
    const g = 'hostname 10.0.0.5\nport 2222\nuser bob\nhostkeyalias fastbox\nidentityfile /root/.ssh/nix_remote\n';
    assert.deepEqual(effectiveConfigMismatches(g, block, '/root/.ssh/nix_remote'), ['user is bob, expected nix']);
    assert.deepEqual(effectiveConfigMismatches(g.replace('bob', 'nix'), block, '/root/.ssh/nix_remote'), []);
  });
});

describe('known_hosts', () => {
  test('pins under the alias, idempotently, keeping other lines', () => {
    const text = 'other ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ\n|1|abc=|def= ssh-ed25519 AAAA';
    const once = pinHostKey(text, 'fastbox', ED);
    assert.equal(once.text, `${text}\nfastbox ${ED.type} ${ED.base64}\n`);
    assert.equal(pinHostKey(once.text, 'fastbox', ED).changed, false);
  });
  test('a changed key is a conflict, and pinning replaces only the alias line', () => {
    const text = `fastbox ${ED.type} ${ED.base64}\nfastbox,other ${ED.type} ${ED.base64}\n`;
    assert.equal(conflictingKeys(text, 'fastbox', ED2).length, 2);
    assert.equal(
      pinHostKey(text, 'fastbox', ED2).text,
      `fastbox,other ${ED.type} ${ED.base64}\nfastbox ${ED2.type} ${ED2.base64}\n`,
    );
  });
});

describe('host keys', () => {
  test('fingerprint as ssh-keygen -lf prints it', () => {
    // ssh-keygen -lf of this key printed SHA256:pZvryRk5Th/hbOdZ+402opZQn2Qo5ZazIYKltz1L9+g on this machine.
    assert.equal(fingerprint(ED), 'SHA256:pZvryRk5Th/hbOdZ+402opZQn2Qo5ZazIYKltz1L9+g');
    assert.deepEqual(hostKeyFromBlob(Buffer.from(ED.base64, 'base64')), ED);
  });
  test("the machines file's 8th field round-trips", () => {
    assert.deepEqual(hostKeyFromMachinesField(machinesHostKeyField(ED)), ED);
    assert.equal(parseKeyLine('not a key'), null);
    assert.equal(
      parseKeyLine('ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIIScm/rGDiGdXRmh2QFm9Bpfj9CEahqNcCFZQH2PL8dS'),
      null,
      'type must match the blob',
    );
  });
});

const machine: Machine = {
  uri: 'ssh://fastbox',
  systems: ['x86_64-linux', 'i686-linux'],
  sshKey: '/root/.ssh/nix_remote',
  maxJobs: 8,
  speedFactor: 2,
  supportedFeatures: ['big-parallel', 'kvm'],
  mandatoryFeatures: [],
  hostKey: machinesHostKeyField(ED),
};

describe('machines file', () => {
  test('formats the 8 fields, "-" for empty', () => {
    assert.equal(
      formatMachineLine(machine),
      `ssh://fastbox x86_64-linux,i686-linux /root/.ssh/nix_remote 8 2 big-parallel,kvm - ${machinesHostKeyField(ED)}`,
    );
  });
  test('parses what it formats, with comments, ";" and @ includes', () => {
    const text = `# mine\nssh://a x86_64-linux - 1 1 ; ${formatMachineLine(machine)} # note\n@/inc\n`;
    const r = parseMachines(text, '/etc/nix/machines', (p) => (p === '/inc' ? 'b aarch64-linux' : null));
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.machines.map((m) => m.uri),
      ['ssh://a', 'ssh://fastbox', 'b'],
    );
    const { source: _s, ...parsed } = r.machines[1]!;
    assert.deepEqual(parsed, machine);
    assert.deepEqual(r.machines[2]!.source, { file: '/inc', line: 1 });
  });
  test('a bad number is reported with line and column', () => {
    const r = parseMachines('\nssh://a x86_64-linux - eight', 'm');
    assert.deepEqual(r.errors, [
      {
        file: 'm',
        line: 2,
        column: 24,
        message:
          "max jobs 'eight' (field 4) is not a whole number; Nix rejects it: bad machine specification: failed to convert column #3 in a row: 'ssh://a x86_64-linux - eight' to 'unsigned int'",
      },
    ]);
  });
  test('remote-program is set only on nixremote lines, idempotently', () => {
    const text = upsertMachine('ssh://mine x86_64-linux\n', 'fastbox', machine).text;
    const once = withRemoteProgram(text, 3, '/nix/var/nix/profiles/default/bin/nix-store')!;
    assert.match(
      once,
      /^ssh:\/\/fastbox\?remote-program=\/nix\/var\/nix\/profiles\/default\/bin\/nix-store x86_64-linux,i686-linux /m,
    );
    assert.equal(withRemoteProgram(once, 3, '/nix/var/nix/profiles/default/bin/nix-store'), once);
    assert.equal(withRemoteProgram(text, 1, '/x'), null, "a user's own line is not edited");
    assert.equal(
      parseMachines(once, 'm').machines[1]!.uri,
      'ssh://fastbox?remote-program=/nix/var/nix/profiles/default/bin/nix-store',
    );
  });
  test('store URIs: user, host, port, IPv6, parameters', () => {
    const a = parseStoreUri('ssh://nix@box:2222?remote-program=/x/nix-store');
    assert.deepEqual(
      [a.scheme, a.user, a.host, a.port, a.params.get('remote-program')],
      ['ssh', 'nix', 'box', 2222, '/x/nix-store'],
    );
    const b = parseStoreUri('ssh-ng://[fe80::1]');
    assert.deepEqual([b.scheme, b.user, b.host, b.port], ['ssh-ng', null, 'fe80::1', null]);
    assert.equal(parseStoreUri('root@legacy').host, 'legacy');
  });
  test('upsert is idempotent and finds unmanaged lines for the name', () => {
    const once = upsertMachine('ssh://other x86_64-linux\n', 'fastbox', machine);
    assert.equal(upsertMachine(once.text, 'fastbox', machine).changed, false);
    assert.equal(removeBlock(once.text, machineMarkers('fastbox')).text, 'ssh://other x86_64-linux\n');
    assert.deepEqual(unmanagedMachineLines(once.text, 'fastbox'), []);
    assert.deepEqual(unmanagedMachineLines('root@fastbox x86_64-linux\n', 'fastbox'), [1]);
  });
});

describe('nix.conf', () => {
  test('adds builders at the end, idempotently', () => {
    const text = 'sandbox = false\n';
    const once = upsertNixConf(text, '/etc/nix/machines');
    assert.equal(
      once.edit.text,
      `${text}# BEGIN nixremote (managed by nixremote; edits inside are replaced)\nbuilders = @/etc/nix/machines\nbuilders-use-substitutes = true\n# END nixremote\n`,
    );
    assert.equal(upsertNixConf(once.edit.text, '/etc/nix/machines').edit.changed, false);
  });
  test("merges the user's builders line instead of overriding it", () => {
    const text = 'builders = ssh://old x86_64-linux # mine\n';
    const once = upsertNixConf(text, '/etc/nix/machines');
    assert.match(once.edit.text, /^builders = ssh:\/\/old x86_64-linux ; @\/etc\/nix\/machines$/m);
    assert.equal(once.notes.length, 1);
    assert.equal(upsertNixConf(once.edit.text, '/etc/nix/machines').edit.changed, false);
    assert.equal(upsertNixConf('builders = @/etc/nix/machines\n', '/etc/nix/machines').notes.length, 0);
  });
  test('builders from an included file are merged too', () => {
    const once = upsertNixConf('include extra.conf\n', '/etc/nix/machines', {
      value: 'ssh://inc x86_64-linux',
      where: '/etc/nix/extra.conf:1',
    });
    assert.match(once.edit.text, /^builders = ssh:\/\/inc x86_64-linux ; @\/etc\/nix\/machines$/m);
    assert.match(once.notes[0]!, /\/etc\/nix\/extra.conf:1 already sets builders/);
  });
  test('parses settings, comments and includes as Nix does', () => {
    const r = parseNixConf('a = b   c # x\n!include /etc/nix/extra.conf\nbad line\n');
    assert.deepEqual(r.settings, [{ line: 1, name: 'a', value: 'b c' }]);
    assert.deepEqual(r.includes, [{ line: 2, path: '/etc/nix/extra.conf', optional: true }]);
  });
});

describe('NixOS module', () => {
  const b = {
    name: 'fastbox',
    sshUser: 'nix',
    sshKey: '/root/.ssh/nix_remote',
    systems: ['x86_64-linux'],
    maxJobs: 4,
    speedFactor: 1,
    features: ['kvm'],
    mandatoryFeatures: [],
    hostKey: ED,
  };
  test('new file, then idempotent, then a second builder beside the first', () => {
    const once = upsertModule(null, 'nixremote.nix', b);
    assert.ok(once.text.startsWith(MODULE_HEADER));
    assert.match(once.text, /hostName = "fastbox";/);
    assert.equal(upsertModule(once.text, 'nixremote.nix', b).changed, false);
    const two = upsertModule(once.text, 'nixremote.nix', { ...b, name: 'other' });
    assert.match(two.text, /hostName = "fastbox";[\s\S]*hostName = "other";/);
  });
  test('refuses a file it did not write', () => {
    assert.throws(() => upsertModule('{ }\n', 'x.nix', b), /not written by nixremote/);
  });
});

describe('the Host block: --connect-timeout', () => {
  test('ConnectTimeout is 10 unless set', async () => {
    const { hostBlockBody } = await import('../../src/ssh/ssh-config.js');
    const b = { name: 'box', hostName: '10.0.0.5', port: 22, user: 'nix', identityFile: '/root/.ssh/nix_remote' };
    assert.ok(hostBlockBody(b).includes('  ConnectTimeout 10'));
    assert.ok(hostBlockBody({ ...b, connectTimeout: 3 }).includes('  ConnectTimeout 3'));
  });
});
