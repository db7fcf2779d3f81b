// why's parts on their own: the .drv reader, the dry run's lists, the settings, the slot
// lock names of each Nix, and the model's rules, each against a case whose answer is read
// from build-remote.cc and derivation-goal.cc (the e2e test holds them against real builds).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { hookUri, nixBase32, slotLockPath } from '../../src/builders/status.js';
import { drvNeeds, parseDerivation } from '../../src/nix/derivation.js';
import { applyOverrides, parseDryRun, parseShowConfig, whatWouldBuild } from '../../src/why/gather.js';
import { decide, type LocalSide, type WhyDrv, type WhyMachine } from '../../src/why/model.js';
import { changes } from '../../src/why/advice.js';
import { reachOf } from '../../src/builders/status.js';

// Written by Nix 2.8 (nix-instantiate), the input's hash parts shortened.
const DRV =
  'Derive([("out","/nix/store/p0f9zl467vqrjpny80cvwjc9s9vadb16-b","","")],[("/nix/store/ybrpc2i4jc85ma23wgb39ral2vysmzjw-a.drv",["out"])],[],"x86_64-linux","/bin/sh",["-c","echo \\"b\\" > $out\\n"],[("builder","/bin/sh"),("name","b"),("preferLocalBuild","1"),("requiredSystemFeatures","big-parallel kvm"),("system","x86_64-linux")])';

describe('why: reading what would be built', () => {
  test('a .drv as Nix writes it: outputs, inputs, system, builder, escaped strings, env', () => {
    const d = parseDerivation(DRV, '/nix/store/84crnzh4gycxnk0wzicqz680dssdb3hr-b.drv');
    assert.equal(d.name, 'b');
    assert.deepEqual(d.outputs, [{ name: 'out', path: '/nix/store/p0f9zl467vqrjpny80cvwjc9s9vadb16-b' }]);
    assert.deepEqual(d.inputDrvs, ['/nix/store/ybrpc2i4jc85ma23wgb39ral2vysmzjw-a.drv']);
    assert.equal(d.system, 'x86_64-linux');
    assert.equal(d.builder, '/bin/sh');
    assert.deepEqual(drvNeeds(d), { system: 'x86_64-linux', features: ['big-parallel', 'kvm'], preferLocal: true });
  });

  test('structured attrs are read from __json; a floating output requires ca-derivations', () => {
    const json = JSON.stringify({ requiredSystemFeatures: ['nixos-test'], preferLocalBuild: false }).replace(
      /"/g,
      '\\"',
    );
    const text = `Derive([("out","","r:sha256","")],[],[],"aarch64-linux","/bin/sh",[],[("__json","${json}")])`;
    const n = drvNeeds(parseDerivation(text, '/nix/store/00000000000000000000000000000000-x.drv'));
    assert.deepEqual(n, { system: 'aarch64-linux', features: ['nixos-test', 'ca-derivations'], preferLocal: false });
  });

  test('what is not a derivation is said to be one, with where', () => {
    assert.throws(() => parseDerivation('Derive([', '/x.drv'), /not a derivation/);
    assert.throws(() => parseDerivation('{"a":1}', '/x.drv'), /not a derivation/);
  });

  test("the dry run's lists, in each version's words", () => {
    // Nix 2.8 and later; 2.33 renders the sizes differently, which is not read.
    const r = parseDryRun(
      [
        'these 2 derivations will be built:',
        '  /nix/store/aaa-a.drv',
        '  /nix/store/bbb-b.drv',
        'these 3 paths will be fetched (0.10 MiB download, 0.40 MiB unpacked):',
        '  /nix/store/ccc-c',
        'warning: something else',
        '  /nix/store/not-a-list-item',
      ].join('\n'),
    );
    assert.deepEqual(r, { build: ['/nix/store/aaa-a.drv', '/nix/store/bbb-b.drv'], fetch: ['/nix/store/ccc-c'] });
    assert.deepEqual(parseDryRun('this derivation will be built:\n  /nix/store/x.drv\n').build, ['/nix/store/x.drv']);
    assert.deepEqual(parseDryRun(''), { build: [], fetch: [] });
  });

  test("this Nix's settings from show-config --json, and the flags that override them", () => {
    const s = parseShowConfig(
      JSON.stringify({
        system: { value: 'x86_64-linux' },
        'extra-platforms': { value: ['i686-linux'] },
        'system-features': { value: ['benchmark', 'big-parallel'] },
        'max-jobs': { value: 4 },
        'builders-use-substitutes': { value: true },
        substituters: { value: ['https://cache.nixos.org/'] },
        'trusted-users': { value: ['root'] },
      }),
      [2, 8, 0],
    );
    assert.equal(s.maxJobs, 4);
    assert.deepEqual(s.extraPlatforms, ['i686-linux']);
    assert.equal(s.buildersUseSubstitutes, true);
    const o = applyOverrides(
      s,
      [
        ['max-jobs', 'auto'],
        ['system-features', 'kvm'],
      ],
      8,
    );
    assert.equal(o.maxJobs, 8);
    assert.deepEqual(o.systemFeatures, ['kvm']);
    assert.throws(() => applyOverrides(s, [['max-jobs', 'lots']], 8), /not a number or 'auto'/);
  });
});

describe("why: the build hook's slot locks, by version", () => {
  test('a bare host is ssh:// to Nix; from 2.23 the query is sorted; Lix hashes the name', () => {
    assert.equal(hookUri('box', [2, 8, 0]), 'ssh://box');
    assert.equal(hookUri('nix@box', [2, 8, 0]), 'ssh://nix@box');
    assert.equal(hookUri('daemon', [2, 8, 0]), 'daemon');
    assert.equal(hookUri('ssh://box?z=1&a=2', [2, 22, 0]), 'ssh://box?z=1&a=2');
    assert.equal(hookUri('ssh://box?z=1&a=2', [2, 24, 0]), 'ssh://box?a=2&z=1');
    assert.equal(slotLockPath('/nix/var/nix', 'box', 1, [2, 8, 0]), '/nix/var/nix/current-load/ssh:__box-1');
    // sha256("ssh://box") in Nix's base32, as `nix hash to-base32 --type sha256` (Nix 2.8) prints it.
    const hash = createHash('sha256').update('ssh://box').digest();
    assert.equal(nixBase32(hash), '1kbrmpi3rimvdkl9mnwc93cpz8qv45klk4dn6ayhgqwr0wq52vqr');
    assert.equal(
      slotLockPath('/nix/var/nix', 'ssh://box', 0, [2, 91, 1]),
      '/nix/var/nix/current-load/ssh:__box-1kbrmpi3rimvdkl9-0',
    );
  });
});

const LOCAL: LocalSide = {
  version: [2, 8, 0],
  system: 'x86_64-linux',
  extraPlatforms: ['i686-linux'],
  systemFeatures: ['benchmark', 'big-parallel', 'kvm', 'nixos-test'],
  maxJobs: 1,
};
const drv = (name: string, o: Partial<WhyDrv> = {}): WhyDrv => ({
  path: `/nix/store/${name.padEnd(32, '0')}-${name}.drv`,
  name,
  system: 'x86_64-linux',
  features: [],
  preferLocal: false,
  builtin: false,
  inputs: [],
  ...o,
});
const machine = (name: string, o: Partial<WhyMachine> = {}): WhyMachine => ({
  name,
  uri: `ssh://${name}`,
  systems: ['x86_64-linux'],
  supportedFeatures: [],
  mandatoryFeatures: [],
  maxJobs: 1,
  speedFactor: 1,
  held: 0,
  reach: { kind: 'up' },
  ...o,
});
const where = (vs: ReturnType<typeof decide>) =>
  Object.fromEntries(vs.map((v) => [v.drv.name, v.where === 'builder' ? v.builder : v.where]));

describe("why: the build hook's choice", () => {
  const fleet = [
    machine('fast', { speedFactor: 4, supportedFeatures: ['big-parallel'] }),
    machine('slow', { systems: ['x86_64-linux', 'i686-linux'] }),
    machine('bench', { speedFactor: 8, supportedFeatures: ['benchmark'], mandatoryFeatures: ['benchmark'] }),
  ];

  test('system, features and mandatory features filter; then the speed factor decides', () => {
    const vs = decide(
      [
        drv('plain'),
        drv('big', { features: ['big-parallel'] }),
        drv('bench', { features: ['benchmark'] }),
        drv('i686', { system: 'i686-linux' }),
      ],
      { ...LOCAL, maxJobs: 0 },
      fleet.map((m) => ({ ...m, maxJobs: 4 })),
    );
    assert.deepEqual(where(vs), { plain: 'fast', big: 'fast', bench: 'bench', i686: 'slow' });
    const plain = vs.find((v) => v.drv.name === 'plain')!;
    assert.match(plain.rule, /lowest load per speed factor \(0\/4\) among the 2/);
    assert.deepEqual(
      plain.others.map((o) => o.why),
      [
        'same load per speed factor, lower speed factor (0/1 against 0/4)',
        'mandatory feature: bench takes only derivations that require benchmark',
      ],
    );
  });

  test('preferLocalBuild stays here while max-jobs > 0, and goes to the hook with max-jobs 0', () => {
    assert.deepEqual(where(decide([drv('local', { preferLocal: true })], LOCAL, fleet)), { local: 'here' });
    assert.deepEqual(where(decide([drv('local', { preferLocal: true })], { ...LOCAL, maxJobs: 0 }, fleet)), {
      local: 'fast',
    });
  });

  test('a system no builder offers: built here if it can be, else it fails', () => {
    const riscv = drv('riscv', { system: 'riscv64-linux' });
    const r = decide([riscv], LOCAL, fleet)[0]!;
    assert.equal(r.where, 'fails');
    assert.match(r.rule, /no builder can take riscv64-linux.*cannot build it \(it needs riscv64-linux/);
    assert.equal(decide([drv('i', { system: 'i686-linux' })], LOCAL, [fleet[0]!])[0]!.where, 'here');
    assert.match(decide([riscv], { ...LOCAL, maxJobs: 0 }, fleet)[0]!.rule, /unable to start any build/);
  });

  test('busy: the next builder; none free: waits with -j0, here with -j1 (Nix), waits in Lix', () => {
    const busy = fleet.map((m) => (m.name === 'fast' ? { ...m, held: 1 } : m));
    assert.deepEqual(where(decide([drv('plain')], { ...LOCAL, maxJobs: 0 }, busy)), { plain: 'slow' });
    const big = drv('big', { features: ['big-parallel'] });
    const waits = decide([big], { ...LOCAL, maxJobs: 0 }, busy)[0]!;
    assert.equal(waits.where, 'waits');
    assert.equal(waits.others.find((o) => o.name === 'fast')!.why, 'no free slot now (1 of 1 held)');
    assert.equal(decide([big], LOCAL, busy)[0]!.where, 'here');
    assert.equal(decide([big], { ...LOCAL, version: [2, 93, 0] }, busy)[0]!.where, 'waits');
  });

  test('down: the hook tries the best first, cannot connect, and goes on; alone, the build is declined', () => {
    const down = fleet.map((m) =>
      m.name === 'fast' ? { ...m, reach: { kind: 'unusable' as const, why: 'Connection refused' } } : m,
    );
    const r = decide([drv('plain')], { ...LOCAL, maxJobs: 0 }, down)[0]!;
    assert.equal(r.builder, 'slow');
    assert.deepEqual(r.tried, ['fast']);
    assert.equal(r.others[0]!.why, 'cannot be reached (Connection refused): the hook tries it first, and goes on');
    assert.match(
      decide([drv('big', { features: ['big-parallel'] })], { ...LOCAL, maxJobs: 0 }, down)[0]!.rule,
      /^the only builder that takes it, fast, cannot be reached, and max-jobs = 0/,
    );
    const big = decide([drv('big', { features: ['big-parallel'] })], { ...LOCAL, maxJobs: 0 }, down)[0]!;
    assert.equal(big.where, 'fails');
    assert.ok(changes([r], down, LOCAL).some((c) => c.startsWith('fast cannot be reached')));
  });

  test('a builder that connects but fails the build is still chosen, and said to fail', () => {
    const bad = [machine('box', { reach: { kind: 'fails-there', why: 'not trusted' } })];
    const r = decide([drv('plain')], LOCAL, bad)[0]!;
    assert.equal(r.builder, 'box');
    assert.equal(r.failsThere, 'not trusted');
  });

  test('the speed factor is a whole number before 2.20: 1/2 and 0/1 then tie, and the faster wins', () => {
    const m = [machine('a', { maxJobs: 4, speedFactor: 2, held: 1 }), machine('b', { maxJobs: 4, speedFactor: 1 })];
    assert.equal(decide([drv('x')], { ...LOCAL, maxJobs: 0 }, m)[0]!.builder, 'a');
    assert.equal(decide([drv('x')], { ...LOCAL, maxJobs: 0, version: [2, 24, 0] }, m)[0]!.builder, 'b');
  });

  test('a chain goes one after another; a wave shares slots, and says when the order decides', () => {
    const c1 = drv('c1');
    const c2 = drv('c2', { inputs: [c1.path] });
    assert.deepEqual(where(decide([c2, c1], { ...LOCAL, maxJobs: 0 }, fleet)), { c1: 'fast', c2: 'fast' });
    const two = decide([drv('p'), drv('q')], { ...LOCAL, maxJobs: 0 }, fleet);
    assert.deepEqual(where(two), { p: 'fast', q: 'slow' });
    assert.equal(two[1]!.firstWould, 'fast');
  });

  test("status's verdict as the hook meets it", () => {
    const s = { name: 'b', uri: 'ssh://b', maxJobs: 1, slotsInUse: 0, latencyMs: null, nixVersion: null } as const;
    const base = { ...s, load: null, cores: null, storeFreeBytes: null, reachable: false };
    assert.deepEqual(reachOf({ ...base, state: 'down', error: 'refused' }), { kind: 'unusable', why: 'refused' });
    assert.deepEqual(reachOf({ ...base, state: 'broken', check: 'remote-nix', error: 'no nix-store' }), {
      kind: 'unusable',
      why: 'no nix-store',
    });
    assert.deepEqual(reachOf({ ...base, state: 'broken', check: 'trust', error: 'untrusted' }), {
      kind: 'fails-there',
      why: 'untrusted',
    });
    assert.deepEqual(reachOf({ ...base, state: 'idle', reachable: true }), { kind: 'up' });
  });
});

describe('signed access: keys and versions', () => {
  test('the public key of a secret key file, as nix-store --generate-binary-cache-key pairs them', async () => {
    const { publicKeysOf, signedUnsupported } = await import('../../src/nix/signing.js');
    // A pair made by Nix 2.8 (nix-store --generate-binary-cache-key test-1 sec pub).
    const seed = Buffer.alloc(32, 7);
    const pub = Buffer.alloc(32, 9);
    const files: Record<string, string> = {
      '/k': `test-1:${Buffer.concat([seed, pub]).toString('base64')}\n`,
      '/bad': 'x',
    };
    assert.deepEqual(
      publicKeysOf(['/k', '/bad', '/none'], (p) => files[p] ?? null),
      [`test-1:${pub.toString('base64')}`],
    );
    assert.equal(signedUnsupported([2, 26, 3], [2, 34, 0]), null);
    assert.match(
      signedUnsupported([2, 15, 0], [2, 26, 0])!,
      /Nix 2\.15\.0 sends an untrusted builder the derivation alone/,
    );
    assert.match(signedUnsupported([2, 26, 0], [2, 8, 0])!, /builder's Nix 2\.8\.0 does not report whether it trusts/);
    assert.equal(signedUnsupported([2, 93, 0], [2, 91, 1]), null, 'Lix, forked from 2.18');
  });
});

describe('why: asking Nix', () => {
  const result = (command: string, exitCode: number, stderr: string) => ({
    command,
    exitCode,
    stdout: '',
    stderr,
    timedOut: false,
  });
  test('a file and a .drv: one nix-build --dry-run, one nix-store --realise --dry-run, their lists merged', async () => {
    const calls: string[] = [];
    const dry = await whatWouldBuild(
      async (file, args) => {
        calls.push([file, ...args].join(' '));
        return result(file, 0, 'these 2 derivations will be built:\n  /nix/store/a.drv\n  /nix/store/b.drv\n');
      },
      Promise.resolve([2, 8, 0]),
      { file: 'f.nix', attrs: ['x'], installables: ['/nix/store/b.drv'] },
    );
    assert.deepEqual(calls, [
      'nix-build --dry-run --no-out-link f.nix -A x',
      'nix-store --realise --dry-run /nix/store/b.drv',
    ]);
    assert.deepEqual(dry.build, ['/nix/store/a.drv', '/nix/store/b.drv']);
  });
  test("an installable that fails while a file's dry run is still going: its error, and the file's later failure is not left unhandled", async () => {
    let unhandled: unknown = null;
    const onUnhandled = (e: unknown) => {
      unhandled = e;
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const run = whatWouldBuild(
        async (file) =>
          file === 'nix-build'
            ? new Promise((r) => setTimeout(() => r(result(file, 1, 'error: eval failed')), 20))
            : result(file, 1, "error: flake 'x' does not exist"),
        Promise.resolve([2, 18, 0]),
        { file: 'f.nix', attrs: [], installables: ['x#y'] },
      );
      await assert.rejects(run, /x#y: error: flake 'x' does not exist/);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(unhandled, null);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
