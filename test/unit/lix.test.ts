// Lix as the local Nix, on fixtures (Lix cannot run here): its TOML machines file as Lix 2.95
// reads it (the cases of Lix's own tests/unit/libstore/machines_toml.cc at 2.95.3, and the
// format detection of lix/libstore/machines.cc), and what each Lix version reads where Nix
// differs.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { machineRules, parseBuildersSetting } from '../../src/nix/machines-file.js';
import { readLixToml } from '../../src/nix/machines-toml.js';

const LIX_295 = machineRules([2, 95, 3]);
const LIX_293 = machineRules([2, 93, 0]);
const NIX_234 = machineRules([2, 34, 0]);

/** The default builders setting, @/etc/nix/machines, with this file there, read by `rules`. */
const fromFile = (text: string, rules = LIX_295, file = '/etc/nix/machines') =>
  parseBuildersSetting(`@${file}`, 'builders (default)', (p) => (p === file ? text : null), 1, rules);

describe("Lix 2.95's TOML machines file", () => {
  test('a uri alone: every other field its default, the uri as written (no ssh:// added)', () => {
    const r = fromFile('[machines.scratchy]\nuri = "ssh://nix@scratchy.labs.cs.uu.nl"\n');
    assert.deepEqual(r.errors, []);
    const { source, ...m } = r.machines[0]!;
    assert.deepEqual(m, {
      uri: 'ssh://nix@scratchy.labs.cs.uu.nl',
      systems: [],
      sshKey: null,
      maxJobs: 1,
      speedFactor: 1,
      supportedFeatures: [],
      mandatoryFeatures: [],
      hostKey: null,
    });
    assert.deepEqual(source, { file: '/etc/nix/machines', line: 1 });
  });

  test('every field; the host key as its text, which Lix base64-encodes (machines_toml.cc CorrectCompleteSingleBuilder)', () => {
    const r = fromFile(`version = 1
[machines.scratchy]
uri = "nix@scratchy.labs.cs.uu.nl"
system-types = ["i686-linux"]
ssh-key = "/home/nix/.ssh/id_scratchy_auto"
jobs = 8
speed-factor = 3.0
supported-features = ["kvm"]
mandatory-features = ["benchmark"]
ssh-public-host-key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJYfqESaiQlOrL3Wm1Q9s9q8b4mjj2nIuyqCZub5aGPi nix@scratchy"
`);
    assert.deepEqual(r.errors, []);
    const m = r.machines[0]!;
    assert.equal(m.uri, 'nix@scratchy.labs.cs.uu.nl');
    assert.deepEqual(
      [m.systems, m.sshKey, m.maxJobs, m.speedFactor],
      [['i686-linux'], '/home/nix/.ssh/id_scratchy_auto', 8, 3],
    );
    assert.deepEqual([m.supportedFeatures, m.mandatoryFeatures], [['kvm'], ['benchmark']]);
    // The value Lix's test expects after its base64Encode.
    assert.equal(
      m.hostKey,
      'c3NoLWVkMjU1MTkgQUFBQUMzTnphQzFsWkRJMU5URTVBQUFBSUpZZnFFU2FpUWxPckwzV20xUTlzOXE4YjRtamoybkl1eXFDWnViNWFHUGkgbml4QHNjcmF0Y2h5',
    );
    assert.equal(m.source.line, 2);
  });

  test('enable = false: checked, then left out (OneDisabled)', () => {
    const text = 'version = 1\n[machines.a]\nuri = "ssh://test"\nenable = false\n\n[machines.b]\nuri = "ssh://test2"\n';
    assert.deepEqual(
      fromFile(text).machines.map((m) => m.uri),
      ['ssh://test2'],
    );
    assert.equal(readLixToml('@f', 'x', 1, () => text)!.off[0]!.name, 'a');
  });

  test("each error Lix's tests reject, located at its file and line, in Lix's words", () => {
    const cases: [string, RegExp, number][] = [
      ['[machines.a]\nuri = "ssh://a"\nextra-key = 3\n', /for machine a: unexpected key `extra-key`/, 3],
      ['[machines.a]\njobs = 2\n', /for machine a: uri must be present/, 1],
      ['[machines.a]\nuri = "ssh://a"\njobs = -3\n', /jobs must be >= 0/, 3],
      ['[machines.a]\nuri = "ssh://a"\njobs = "three"\n', /bad_cast to integer/, 3],
      ['[machines.a]\nuri = "ssh://a"\njobs = 2.5\n', /bad_cast to integer/, 3],
      ['[machines.a]\nuri = "ssh://a"\nspeed-factor = -3.0\n', /speed factor must be >= 0/, 3],
      ['[machines.a]\nuri = "ssh://a"\nspeed-factor = "three"\n', /bad_cast to floating for `speed-factor`/, 3],
      ['[[machines]]\nuri = "ssh://a"\n', /Expected key `machines` to be a table of name -> machine configurations/, 1],
      ['machines.a = "ssh://a"\n', /for machine a: Each machine must be a table/, 1],
      ['version = "1"\nmachines = {}\n', /bad_cast to integer/, 1],
      [
        'version = 42\nmachines = {}\n',
        /Unable to parse Machines of version 42, only versions between 1 and 1 are supported\./,
        1,
      ],
      ['version = -1\nmachines = {}\n', /Unable to parse Machines of version -1/, 1],
      ['[machines.a]\nuri = "ssh://a"\nenable = 0\n', /bad_cast to boolean/, 3],
      ['colour = "blue"\nmachines = {}\n', /unexpected keys found: colour/, 1],
      ['version = 1\n', /there is no `machines` table/, 1],
    ];
    for (const [text, message, line] of cases) {
      const r = fromFile(text);
      assert.equal(r.machines.length, 0, text);
      assert.equal(r.errors.length >= 1, true, text);
      assert.match(r.errors[0]!.message, message, text);
      assert.match(r.errors[0]!.message, /Lix 2\.95 rejects it/, text);
      assert.deepEqual([r.errors[0]!.file, r.errors[0]!.line], ['/etc/nix/machines', line], text);
    }
  });

  test('a syntax error is reported where the setting says toml (or holds a ", inline); else Lix reads lines', () => {
    const broken = 'version = 1\n[machines]\n[machines.hello]\nuri = "ssh://hello"\n = 5\n';
    // At a path with "toml" in it: Lix's syntax error (InvalidSyntaxButClearlyTOML).
    const named = fromFile(broken, LIX_295, '/etc/nix/machines.toml');
    assert.match(named.errors[0]!.message, /invalid Machines TOML syntax/);
    assert.deepEqual([named.errors[0]!.line, named.errors[0]!.column], [5, 2]);
    // At the default path: read as lines, which Lix then rejects as lines.
    const quiet = fromFile(broken);
    assert.doesNotMatch(quiet.errors.map((e) => e.message).join('\n'), /TOML syntax/);
    // A line file never parses as TOML: read as lines, as ever.
    const lines = fromFile('ssh://a x86_64-linux - 2 1\n');
    assert.deepEqual(
      lines.machines.map((m) => m.uri),
      ['ssh://a'],
    );
    // Inline TOML in the setting itself (machines.cc: parse_str of the value).
    const inline = parseBuildersSetting(
      'machines.andesite = {uri = "ssh://lix@andesite", jobs = 8}',
      'nix.conf',
      () => null,
      4,
      LIX_295,
    );
    assert.deepEqual(
      inline.machines.map((m) => [m.uri, m.maxJobs, m.source.line]),
      [['ssh://lix@andesite', 8, 4]],
    );
  });

  test('Nix, and Lix before 2.95, read only lines: a TOML file is named as such, not read as machines', () => {
    const text = '[machines.a]\nuri = "ssh://a"\n';
    for (const rules of [NIX_234, LIX_293]) {
      const r = fromFile(text, rules);
      assert.equal(r.machines.length, 0);
      assert.match(
        r.errors[0]!.message,
        /this is Lix's TOML machines format \(Lix 2\.95 on\), and (Nix 2\.34\.0|Lix 2\.93\.0) reads only the line format/,
      );
    }
    // A Nix of unknown version: TOML when it parses as TOML.
    assert.deepEqual(
      fromFile(text, machineRules(null)).machines.map((m) => m.uri),
      ['ssh://a'],
    );
  });
});

describe('a Lix client at every version, on fixtures', () => {
  const VERSIONS: [number, number, number][] = [
    [2, 90, 0],
    [2, 91, 1],
    [2, 92, 0],
    [2, 93, 0],
    [2, 94, 0],
    [2, 95, 3],
  ];
  test('status and why count the slot locks by the name Lix gives them; why follows its hook; list reads its format', async () => {
    const { slotLockPath } = await import('../../src/builders/status.js');
    const { decide } = await import('../../src/why/model.js');
    const { createHash } = await import('node:crypto');
    const { nixBase32 } = await import('../../src/builders/status.js');
    const toml = '[machines.a]\nuri = "ssh://a"\n';
    for (const v of VERSIONS) {
      // lix/legacy/build-remote.cc (2.90.0 src/build-remote/): the escaped URI cut to 48,
      // '-', 16 characters of Nix-base32 sha256(URI), '-', the slot; the same at every tag.
      const uri = 'ssh://nixbuild@a-builder-with-a-rather-long-name.example.org';
      const hash = nixBase32(createHash('sha256').update(uri).digest()).slice(0, 16);
      assert.equal(
        slotLockPath('/nix/var/nix', uri, 2, v),
        `/nix/var/nix/current-load/${uri.replace(/\//g, '_').slice(0, 48)}-${hash}-2`,
        v.join('.'),
      );
      // Lix asks the hook before it holds a local slot: with every builder busy it waits, never builds here.
      const local = { version: v, system: 'x86_64-linux', extraPlatforms: [], systemFeatures: [], maxJobs: 4 };
      const d = {
        path: '/nix/store/00000000000000000000000000000000-x.drv',
        name: 'x',
        system: 'x86_64-linux',
        features: [],
        preferLocal: false,
        builtin: false,
        inputs: [],
      };
      const busy = {
        name: 'a',
        uri: 'ssh://a',
        systems: ['x86_64-linux'],
        supportedFeatures: [],
        mandatoryFeatures: [],
        maxJobs: 1,
        speedFactor: 1,
        held: 1,
        reach: { kind: 'up' } as const,
      };
      assert.equal(decide([d], local, [busy])[0]!.where, 'waits', v.join('.'));
      // The TOML file from 2.95; before, named as TOML and not read.
      const r = fromFile(toml, machineRules(v));
      assert.equal(r.machines.length, v[1] >= 95 ? 1 : 0, v.join('.'));
    }
  });
});

describe("Lix's protocol floors (remote-store.cc, legacy-ssh-store.cc)", () => {
  test('ssh-ng: Nix 2.18 from Lix 2.94, Nix 2.3 at 2.93, none before; ssh://: Nix 2.0 from 2.94; Nix clients and Lix builders never', async () => {
    const { protocolFloor } = await import('../../src/nix/version.js');
    const cases: [[number, number, number], [number, number, number], string, RegExp | null][] = [
      [[2, 94, 0], [2, 17, 1], 'ssh-ng', /older than 2\.18, and the builder has Nix 2\.17\.1/],
      [[2, 95, 3], [2, 18, 0], 'ssh-ng', null],
      [[2, 93, 0], [2, 8, 0], 'ssh-ng', null],
      [[2, 93, 0], [2, 2, 0], 'ssh-ng', /older than 2\.3/],
      [[2, 92, 0], [2, 2, 0], 'ssh-ng', null],
      [[2, 94, 0], [2, 8, 0], 'ssh', null],
      [[2, 94, 0], [1, 11, 16], 'ssh', /no longer speaks ssh:\/\/ to a Nix older than 2\.0/],
      [[2, 34, 0], [2, 3, 0], 'ssh-ng', null],
      [[2, 95, 0], [2, 91, 1], 'ssh-ng', null],
    ];
    for (const [local, builder, scheme, want] of cases) {
      const got = protocolFloor(local, builder, scheme);
      if (want) assert.match(got ?? '', want, `${local.join('.')} to ${builder.join('.')} over ${scheme}`);
      else assert.equal(got, null, `${local.join('.')} to ${builder.join('.')} over ${scheme}`);
    }
  });
});
