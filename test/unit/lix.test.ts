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
