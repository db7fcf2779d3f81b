// Every editor on thousands of generated files: the text outside nixremote's block is
// unchanged (removing the block gives the original back, byte for byte), applying twice
// equals applying once, and the result reads back, with the tool's own parser, as intended.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { removeBlock } from '../../src/text/managed-block.js';
import {
  hostBlockMarkers,
  parseSshConfig,
  unmanagedHostLines,
  upsertHostBlock,
  type HostBlock,
} from '../../src/ssh/ssh-config.js';
import { knownEntries, pinHostKey } from '../../src/ssh/known-hosts.js';
import { parseKeyLine } from '../../src/ssh/host-key.js';
import { nixConfMarkers, parseNixConf, upsertNixConf } from '../../src/nix/nix-conf.js';
import { machineMarkers, parseMachines, upsertMachine, type Machine } from '../../src/nix/machines-file.js';
import { upsertModule } from '../../src/nix/nixos-module.js';
import { readLixToml, upsertTomlMachine } from '../../src/nix/machines-toml.js';
import { disableMachine, enableMachine } from '../../src/nix/machines-file.js';
import { formatTeamFile, parseTeamFile } from '../../src/team/builders-file.js';
import { fingerprint } from '../../src/ssh/host-key.js';
import { UsageError } from '../../src/validate.js';

const RUNS = { numRuns: 2000 };
const ED = parseKeyLine('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIScm/rGDiGdXRmh2QFm9Bpfj9CEahqNcCFZQH2PL8dS')!;
const ED2 = parseKeyLine('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINH5oCf1+utmWwIxA1e4/pDspOuCUPEOh10Z3z0t5j5s')!;

/** A file: lines from `line`, joined with LF or CRLF, with or without a final newline. */
const file = (line: fc.Arbitrary<string>) =>
  fc
    .tuple(fc.array(line, { maxLength: 15 }), fc.constantFrom('\n', '\r\n'), fc.boolean())
    .map(([ls, eol, fin]) => ls.join(eol) + (fin && ls.length ? eol : ''));

const word = fc.stringMatching(/^[a-z0-9][a-z0-9.*_-]{0,10}$/);
const ws = fc.constantFrom('', ' ', '  ', '\t');

describe('ssh_config editor', () => {
  const line = fc.oneof(
    fc.constant(''),
    word.map((w) => `# ${w}`),
    fc
      .tuple(ws, fc.array(word, { minLength: 1, maxLength: 3 }))
      .map(([i, ws2]) => `${i}Host ${ws2.filter((w) => w !== 'fastbox').join(' ') || 'x'}`),
    fc.tuple(ws, word).map(([i, w]) => `${i}Match host ${w}`),
    fc
      .tuple(
        ws,
        fc.constantFrom('User', 'Port', 'HostName', 'IdentityFile', 'ForwardAgent'),
        fc.constantFrom(' ', '=', ' = ', '\t'),
        word,
      )
      .map(([i, k, sep, v]) => `${i}${k}${sep}${v}`),
    word.map((w) => `Include ${w}/*`),
  );
  const block: HostBlock = {
    name: 'fastbox',
    hostName: '10.0.0.5',
    port: 2222,
    user: 'nix',
    identityFile: '/root/.ssh/my key',
  };
  test('outside unchanged, idempotent, and our Host is the first section', () => {
    fc.assert(
      fc.property(file(line), (text) => {
        const once = upsertHostBlock(text, block);
        assert.equal(removeBlock(once.text, hostBlockMarkers('fastbox')).text, text);
        assert.equal(upsertHostBlock(once.text, block).changed, false);
        const entries = parseSshConfig(once.text);
        const firstSection = entries.find((e) => e.keyword === 'host' || e.keyword === 'match')!;
        assert.deepEqual(firstSection.args, ['fastbox']);
        const mine = entries.slice(entries.indexOf(firstSection) + 1, entries.indexOf(firstSection) + 11);
        assert.deepEqual(mine.find((e) => e.keyword === 'identityfile')!.args, ['/root/.ssh/my key']);
        assert.deepEqual(mine.find((e) => e.keyword === 'hostkeyalias')!.args, ['fastbox']);
        assert.deepEqual(unmanagedHostLines(once.text, 'fastbox'), []);
      }),
      RUNS,
    );
  });
});

describe('known_hosts editor', () => {
  const line = fc.oneof(
    fc.constant(''),
    word.map((w) => `# ${w}`),
    fc.tuple(word, fc.constantFrom(ED, ED2)).map(([h, k]) => `${h.replace(/\*/g, '')}x ${k.type} ${k.base64}`),
    fc.constant(`|1|c2FsdA==|aGFzaA== ${ED2.type} ${ED2.base64}`),
    fc.constantFrom(ED, ED2).map((k) => `fastbox ${k.type} ${k.base64}`),
    fc.constantFrom(ED, ED2).map((k) => `fastbox,other ${k.type} ${k.base64}`),
  );
  test('exactly the pinned key for the alias, other lines kept in order, idempotent', () => {
    fc.assert(
      fc.property(file(line), (text) => {
        const once = pinHostKey(text, 'fastbox', ED);
        assert.equal(pinHostKey(once.text, 'fastbox', ED).changed, false);
        const only = knownEntries(once.text, 'fastbox').filter((e) => e.hosts.length === 1);
        assert.ok(knownEntries(once.text, 'fastbox').some((e) => e.key.base64 === ED.base64));
        assert.ok(only.every((e) => e.key.base64 === ED.base64));
        // Lines that do not name the alias alone survive, in order.
        const keep = (t: string) => t.split(/\r?\n/).filter((l) => l.trim() && !/^fastbox /.test(l));
        assert.deepEqual(keep(once.text), keep(text));
      }),
      RUNS,
    );
  });
});

describe('nix.conf editor', () => {
  const line = fc.oneof(
    fc.constant(''),
    word.map((w) => `# ${w}`),
    fc
      .tuple(fc.constantFrom('sandbox', 'substituters', 'extra-substituters', 'max-jobs', 'trusted-users'), word)
      .map(([k, v]) => `${k} = ${v}`),
    word.map((w) => `builders = ssh://${w.replace(/\*/g, '')} x86_64-linux`),
    fc.constant('builders = @/etc/nix/machines'),
    fc.constant('builders-use-substitutes = false # mine'),
    word.map((w) => `!include ${w}.conf`),
  );
  test("outside unchanged, idempotent, and the last builders line is ours and keeps the user's", () => {
    fc.assert(
      fc.property(file(line), (text) => {
        const { edit } = upsertNixConf(text, '/etc/nix/machines');
        assert.equal(removeBlock(edit.text, nixConfMarkers).text, text);
        assert.equal(upsertNixConf(edit.text, '/etc/nix/machines').edit.changed, false);
        const settings = parseNixConf(edit.text).settings;
        const last = (n: string) => settings.filter((s) => s.name === n).pop()!.value;
        const entries = last('builders')
          .split(';')
          .map((e) => e.trim());
        assert.ok(entries.includes('@/etc/nix/machines'));
        const users = parseNixConf(text).settings.filter((s) => s.name === 'builders');
        if (users.length)
          for (const e of users
            .pop()!
            .value.split(';')
            .map((x) => x.trim()))
            assert.ok(entries.includes(e), `lost ${e}`);
        assert.equal(last('builders-use-substitutes'), 'true');
      }),
      RUNS,
    );
  });
});

describe('machines file editor', () => {
  const entry = word.map((w) => `ssh://${w.replace(/\*/g, '')}x x86_64-linux - 2 1`);
  const line = fc.oneof(
    fc.constant(''),
    word.map((w) => `# ${w}`),
    entry,
    fc.tuple(entry, entry).map(([a, b]) => `${a} ; ${b}`),
    fc.constant('@/etc/nix/other-machines'),
  );
  const m: Machine = {
    uri: 'ssh://fastbox',
    systems: ['x86_64-linux'],
    sshKey: '/root/.ssh/nix_remote',
    maxJobs: 4,
    speedFactor: 2,
    supportedFeatures: ['kvm'],
    mandatoryFeatures: [],
    hostKey: 'c3NoLWVkMjU1MTk=',
  };
  test('outside unchanged, idempotent, and our machine parses back as intended', () => {
    fc.assert(
      fc.property(file(line), (text) => {
        const once = upsertMachine(text, 'fastbox', m);
        assert.equal(removeBlock(once.text, machineMarkers('fastbox')).text, text);
        assert.equal(upsertMachine(once.text, 'fastbox', m).changed, false);
        const parsed = parseMachines(once.text, 'm').machines.filter((x) => x.uri === 'ssh://fastbox');
        assert.equal(parsed.length, 1);
        const { source: _s, ...back } = parsed[0]!;
        assert.deepEqual(back, m);
      }),
      RUNS,
    );
  });
});

describe("Lix's TOML machines file editor", () => {
  // Files of what people write: comments, blank lines, a version, tables of their own.
  const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/).filter((n) => n !== 'fastbox');
  const table = fc
    .tuple(name, fc.integer({ min: 0, max: 64 }), fc.constantFrom('1', '2.5'))
    .map(([n, j, sp]) => `[machines.${n}]\nuri = "ssh://${n}"\njobs = ${j}\nspeed-factor = ${sp}`);
  const doc = fc
    .tuple(
      fc.boolean(),
      fc.array(
        fc.oneof(
          table,
          word.map((w) => `# ${w}`),
          fc.constant(''),
        ),
        { maxLength: 6 },
      ),
      fc.constantFrom('\n', '\r\n'),
    )
    .map(([v, parts, eol]) => [...(v ? ['version = 1', ''] : []), ...parts].join('\n').replace(/\n/g, eol))
    // Two tables of one name are not TOML at all: not a file anyone has.
    .filter((t) => readLixToml(`@f.toml`, 'nix.conf', 1, () => t)?.errors.length === 0);
  const m: Machine = {
    uri: 'ssh-ng://fastbox',
    systems: ['x86_64-linux', 'i686-linux'],
    sshKey: '/root/.ssh/nix_remote',
    maxJobs: 4,
    speedFactor: 2.5,
    supportedFeatures: ['kvm', 'big-parallel'],
    mandatoryFeatures: [],
    hostKey: Buffer.from('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIScm/rGDiGdXRmh2QFm9Bpfj9CEahqNcCFZQH2PL8dS').toString(
      'base64',
    ),
  };
  const read = (t: string) => readLixToml('@/etc/nix/machines', 'nix.conf', 1, () => t)!;
  test('outside unchanged, idempotent, our table reads back as Lix reads it, and disable/enable are exact', () => {
    fc.assert(
      fc.property(doc, (text) => {
        const once = upsertTomlMachine(text, 'fastbox', m, machineMarkers('fastbox'));
        if (text !== '') assert.equal(removeBlock(once.text, machineMarkers('fastbox')).text, text);
        assert.equal(upsertTomlMachine(once.text, 'fastbox', m, machineMarkers('fastbox')).changed, false);
        const r = read(once.text);
        assert.deepEqual(r.errors, []);
        const ours = r.machines.filter((x) => x.uri === 'ssh-ng://fastbox');
        assert.equal(ours.length, 1);
        const { source: _s, ...back } = ours[0]!;
        assert.deepEqual(back, m);
        const off = disableMachine(once.text, 'fastbox', {
          by: 'keep',
          at: '2026-12-02T01:00:00Z',
          why: 'down; quiet',
        })!;
        const r2 = read(off.text);
        assert.deepEqual(r2.errors, []);
        assert.equal(r2.machines.filter((x) => x.uri === 'ssh-ng://fastbox').length, 0, 'Lix leaves it out');
        assert.equal(r2.off.length, 1);
        assert.equal(enableMachine(off.text, 'fastbox')!.text, once.text);
      }),
      { numRuns: 500 },
    );
  });
});

describe('NixOS module editor', () => {
  test('any sequence of builders: one block each, last values win, idempotent', () => {
    const b = (name: string, maxJobs: number) => ({
      name,
      sshUser: 'nix',
      sshKey: '/root/.ssh/nix_remote',
      systems: ['x86_64-linux'],
      maxJobs,
      speedFactor: 1,
      features: [],
      mandatoryFeatures: [],
      hostKey: ED,
    });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.integer({ min: 1, max: 64 })), {
          minLength: 1,
          maxLength: 8,
        }),
        (ops) => {
          let text: string | null = null;
          for (const [n, j] of ops) text = upsertModule(text, 'nixremote.nix', b(n, j)).text;
          for (const n of new Set(ops.map(([n]) => n))) {
            assert.equal(text!.split(`hostName = "${n}";`).length - 1, 1);
            const lastJobs = ops.filter(([x]) => x === n).pop()![1];
            assert.match(text!, new RegExp(`hostName = "${n}";\\n[^}]*maxJobs = ${lastJobs};`));
          }
          const [n, j] = ops[ops.length - 1]!;
          assert.equal(upsertModule(text, 'nixremote.nix', b(n, j)).changed, false);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("the team file (nixremote.toml): export's writer and apply's reader", () => {
  const name = fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,10}$/);
  const names = fc.array(fc.stringMatching(/^[a-z0-9][a-z0-9._+-]{0,10}$/), { maxLength: 4 });
  const builder = fc.record({
    name,
    host: fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,15}$/),
    port: fc.integer({ min: 1, max: 65535 }),
    user: fc.stringMatching(/^[a-z_][a-z0-9_-]{0,8}$/),
    hostKey: fc.constant(`${ED.type} ${ED.base64}`),
    hostKeyFingerprint: fc.constant(fingerprint(ED)),
    protocol: fc.constantFrom('ssh' as const, 'ssh-ng' as const),
    access: fc.constant('trusted' as const),
    restrictToNix: fc.constantFrom(null, true, false),
    systems: fc.option(names, { nil: null }),
    features: fc.option(names, { nil: null }),
    mandatoryFeatures: fc.option(names, { nil: null }),
    jobs: fc.option(fc.integer({ min: 1, max: 256 }), { nil: null }),
    speedFactor: fc.option(
      fc.integer({ min: 1, max: 400 }).map((n) => n / 4),
      { nil: null },
    ),
  });
  const team = fc.record({
    options: fc.record(
      {
        key: fc.constant('/root/.ssh/nix_remote'),
        connectTimeout: fc.integer({ min: 1, max: 120 }),
        target: fc.constantFrom('nix-conf', 'determinate', 'macos', 'nixos', 'nix-darwin'),
      },
      { requiredKeys: [] },
    ),
    builders: fc.uniqueArray(builder, { minLength: 1, maxLength: 5, selector: (b) => b.name }),
  });
  test('what export writes, apply reads back as it was; a changed field is an error at its own line', () => {
    fc.assert(
      fc.property(team, (t) => {
        const text = formatTeamFile(t);
        assert.deepEqual(parseTeamFile(text, 'f.toml'), JSON.parse(JSON.stringify(t)));
        // The same text with one builder's port made a string: refused at that line.
        const lines = text.split('\n');
        const at = lines.findIndex((l) => l.startsWith('port = '));
        lines[at] = 'port = "22"';
        assert.throws(
          () => parseTeamFile(lines.join('\n'), 'f.toml'),
          (e: unknown) =>
            e instanceof UsageError && new RegExp(`^f\\.toml:${at + 1}:8: builders\\.`).test((e as Error).message),
        );
      }),
      { numRuns: 500 },
    );
  });
});
