// Validation, answer precedence, version-dependent commands, probe parsing, and the plan's
// apply with rollback, on a temporary directory.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  UsageError,
  validateHost,
  validateName,
  validatePort,
  validateUser,
  validateKeyPath,
  validateFingerprint,
  validateList,
} from '../../src/validate.js';
import { Answers, repeatCommand } from '../../src/init/answers.js';
import type { Prompter } from '../../src/io/prompts.js';
import { parseNixVersion, storePingArgs, parseStorePing } from '../../src/nix/version.js';
import { parseProbe, systemFromUname } from '../../src/path/probe.js';
import { applyPlan, renderPlan, StepFailed, type Step } from '../../src/plan/plan.js';

describe('validation', () => {
  const bad: [(v: string) => unknown, string, RegExp][] = [
    [validateHost, '-oProxyCommand=sh', /starts with '-'/],
    [validateHost, 'a b', /contains " "/],
    [validateHost, 'a\nb', /contains "\\n"/],
    [validateHost, "a'b", /contains "'"/],
    [validateHost, 'a#b', /contains "#"/],
    [validateHost, 'h%h', /contains "%"/],
    [validateUser, '-l', /starts with '-'/],
    [validateUser, 'a"b', /contains/],
    [validateName, 'Fast', /lower-case/],
    [validateName, 'a b', /contains " "/],
    [validatePort, '0', /out of range/],
    [validatePort, '65536', /out of range/],
    [validatePort, '22abc', /not a port/],
    [validateKeyPath, 'relative/key', /absolute/],
    [validateKeyPath, '/root/my"key', /quote/],
    [validateKeyPath, '/root/k%h', /'%'/],
    [validateKeyPath, '/nix/store/abc-key', /Nix store|in \/nix\/store/],
    [validateFingerprint, 'MD5:aa', /not a SHA256/],
  ];
  for (const [fn, v, re] of bad) {
    test(`${fn.name}(${JSON.stringify(v)}) is refused`, () => {
      assert.throws(
        () => fn(v),
        (e: unknown) => e instanceof UsageError && re.test((e as Error).message),
      );
    });
  }
  test('good values pass unchanged', () => {
    assert.equal(validateHost('builder.example.org'), 'builder.example.org');
    assert.equal(validateHost('fe80::1'), 'fe80::1');
    assert.equal(validatePort('2222'), 2222);
    assert.equal(validateName('fast-box.1'), 'fast-box.1');
    assert.deepEqual(validateList('x86_64-linux, aarch64-linux,x86_64-linux', '--systems', false), [
      'x86_64-linux',
      'aarch64-linux',
    ]);
    assert.deepEqual(validateList('-', '--features', true), []);
  });
});

function fakePrompter(replies: string[]): Prompter & { asked: string[] } {
  const asked: string[] = [];
  const next = (m: string) => {
    asked.push(m);
    if (!replies.length) throw new Error(`unexpected question: ${m}`);
    return replies.shift()!;
  };
  return {
    asked,
    input: async (m) => next(m),
    password: async (m) => next(m),
    confirm: async (m) => next(m) === 'y',
    select: async <T>(m: string) => next(m) as T,
  };
}

describe('answer precedence: flag, then --yes default, then prompt', () => {
  const q = (value: string | undefined, def?: string) => ({
    flag: '--port',
    value,
    message: 'Port:',
    default: def,
    parse: validatePort,
  });
  test('a flag wins over everything and is validated', async () => {
    const p = fakePrompter([]);
    const a = new Answers({ yes: false, prompter: async () => p });
    assert.equal(await a.text(q('2222', '22')), 2222);
    await assert.rejects(a.text(q('nope', '22')), UsageError);
    assert.deepEqual(p.asked, []);
  });
  test('--yes takes the default; no default is a usage error naming the flag', async () => {
    const a = new Answers({ yes: true, prompter: async () => null });
    assert.equal(await a.text(q(undefined, '22')), 22);
    await assert.rejects(a.text(q(undefined)), /pass --port/);
  });
  test('otherwise it prompts; without a terminal it names the flag', async () => {
    const p = fakePrompter(['2200']);
    assert.equal(await new Answers({ yes: false, prompter: async () => p }).text(q(undefined, '22')), 2200);
    await assert.rejects(
      new Answers({ yes: false, prompter: async () => null }).text(q(undefined, '22')),
      (e: unknown) => e instanceof UsageError && /pass --port/.test((e as Error).message),
    );
  });
  test('the repeat command quotes what needs it', () => {
    assert.equal(
      repeatCommand([
        ['--host', 'h'],
        ['--features', ''],
        ['--no-test-build', true],
      ]),
      "nixremote init --yes --host h --features '' --no-test-build",
    );
  });
});

describe('Nix versions', () => {
  test('version strings', () => {
    assert.deepEqual(parseNixVersion('nix (Nix) 2.8.0\n'), [2, 8, 0]);
    assert.deepEqual(parseNixVersion('nix (Lix, like Nix) 2.91.1'), [2, 91, 1]);
    assert.equal(parseNixVersion('command not found'), null);
  });
  test('the store ping command of each era', () => {
    assert.deepEqual(storePingArgs([2, 3, 16], 'ssh://b'), ['ping-store', '--store', 'ssh://b']);
    assert.deepEqual(storePingArgs([2, 8, 0], 'ssh://b'), [
      '--extra-experimental-features',
      'nix-command',
      'store',
      'ping',
      '--store',
      'ssh://b',
    ]);
    assert.deepEqual(storePingArgs([2, 19, 0], 'ssh://b'), [
      '--extra-experimental-features',
      'nix-command',
      'store',
      'info',
      '--store',
      'ssh://b',
    ]);
    // Lix has only `store ping` (lix/nix/ping-store.cc at 2.90.0 and 2.95.0), at every version.
    for (const v of [
      [2, 90, 0],
      [2, 93, 3],
      [2, 95, 3],
    ] as [number, number, number][])
      assert.deepEqual(storePingArgs(v, 'ssh://b').slice(2, 4), ['store', 'ping'], v.join('.'));
    assert.deepEqual(parseStorePing('Store URL: ssh://b\nVersion: 2.24.1\nTrusted: 1\n'), {
      version: '2.24.1',
      trusted: true,
    });
    assert.deepEqual(parseStorePing('Store URL: ssh://b\n'), { version: null, trusted: null });
  });
});

describe('remote probe', () => {
  test('parses only NIXREMOTE lines, so a chatty shell cannot fake answers', () => {
    const p = parseProbe(
      'Welcome\nNIXREMOTE:path=/usr/bin/nix-store\nNIXREMOTE:version=nix-store (Nix) 2.8.0\nNIXREMOTE:system=x86_64-linux\nNIXREMOTE:extra-platforms=i686-linux\nNIXREMOTE:system-features=benchmark big-parallel kvm\nNIXREMOTE:cores=16\nsystem=evil\n',
    );
    assert.equal(p.nixStorePath, '/usr/bin/nix-store');
    assert.equal(p.system, 'x86_64-linux');
    assert.deepEqual(p.extraPlatforms, ['i686-linux']);
    assert.deepEqual(p.systemFeatures, ['benchmark', 'big-parallel', 'kvm']);
    assert.equal(p.cores, 16);
    assert.equal(p.kvm, false);
  });
  test('uname to Nix system', () => {
    assert.equal(systemFromUname('Darwin arm64'), 'aarch64-darwin');
    assert.equal(systemFromUname('Linux x86_64'), 'x86_64-linux');
  });
});

describe('plan apply', () => {
  const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-plan-'));
  const quiet = { start() {}, done() {} };
  test('writes atomically, keeps the mode, leaves a backup; a failing step puts files back', async () => {
    const d = dir();
    const a = path.join(d, 'a.conf');
    fs.writeFileSync(a, 'old\n', { mode: 0o640 });
    const b = path.join(d, 'sub/b.conf');
    const steps: Step[] = [
      { kind: 'write', title: 'a', path: a, before: 'old\n', after: 'new\n', mode: 0o644 },
      { kind: 'write', title: 'b', path: b, before: null, after: 'b\n', mode: 0o600 },
      {
        kind: 'check',
        title: 'fails',
        run: async () => {
          throw new StepFailed('x', 'boom');
        },
      },
    ];
    await assert.rejects(
      applyPlan(steps, { reporter: quiet }),
      (e: Error & { rolledBack?: string[] }) => e.message === 'boom' && e.rolledBack?.length === 2,
    );
    assert.equal(fs.readFileSync(a, 'utf8'), 'old\n');
    assert.equal(fs.statSync(a).mode & 0o777, 0o640);
    assert.ok(!fs.existsSync(b));
    assert.ok(fs.readdirSync(d).some((f) => f.startsWith('a.conf.nixremote-') && f.endsWith('.bak')));
    await applyPlan(steps.slice(0, 2), { reporter: quiet });
    assert.equal(fs.readFileSync(a, 'utf8'), 'new\n');
    assert.equal(fs.statSync(a).mode & 0o777, 0o640, 'an existing file keeps its mode');
    assert.equal(fs.statSync(b).mode & 0o777, 0o600);
    assert.ok(!fs.readdirSync(d).some((f) => f.endsWith('.tmp')), 'no temporary file left');
  });
  test('a file edited by someone else since the plan is not overwritten', async () => {
    const d = dir();
    const a = path.join(d, 'a');
    fs.writeFileSync(a, 'theirs\n');
    const steps: Step[] = [{ kind: 'write', title: 'a', path: a, before: 'old\n', after: 'new\n', mode: 0o644 }];
    await assert.rejects(applyPlan(steps, { reporter: quiet }), /changed while nixremote was running/);
    assert.equal(fs.readFileSync(a, 'utf8'), 'theirs\n');
  });
  test('an unchanged file is not written and shows as such', async () => {
    const d = dir();
    const a = path.join(d, 'a');
    fs.writeFileSync(a, 'x');
    const st = fs.statSync(a);
    const steps: Step[] = [{ kind: 'write', title: 'a', path: a, before: 'x', after: 'x', mode: 0o644 }];
    await applyPlan(steps, { reporter: quiet });
    assert.equal(fs.statSync(a).mtimeMs, st.mtimeMs);
    assert.match(renderPlan(steps), /already as planned/);
    assert.deepEqual(fs.readdirSync(d), ['a']);
  });
  test('an interrupt between steps rolls back', async () => {
    const d = dir();
    const a = path.join(d, 'a');
    let n = 0;
    const steps: Step[] = [
      { kind: 'write', title: 'a', path: a, before: null, after: 'x', mode: 0o644 },
      { kind: 'note', title: 'n' },
    ];
    await assert.rejects(applyPlan(steps, { reporter: quiet, isInterrupted: () => ++n > 1 }), /interrupted/);
    assert.ok(!fs.existsSync(a));
  });
});
