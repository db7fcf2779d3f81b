// Output read at a glance, for real: doctor on a fleet of three with one broken builder leads
// with a line per builder, the broken one with its first broken link and fix; the healthy
// builders' checks are left out without --verbose and listed with it; --json keeps every
// check. On a terminal (tmux) a progress line says which builder it waits for; in a pipe no
// byte of it appears. status leads with its summary.
import * as fs from 'node:fs';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Builder, CLI, Client, initCommand, Terminal } from './harness.js';
import { Tarpit } from './fleet.js';

describe('at a glance', () => {
  test('doctor: the answer first, details of the broken one, progress only on a terminal', {
    timeout: 300_000,
  }, async () => {
    const made: Builder[] = [];
    const c = new Client();
    let tarpit: Tarpit | null = null;
    try {
      for (const name of ['gl-fast', 'gl-arm', 'gl-old']) {
        const b = await Builder.create();
        made.push(b);
        const timeout = name === 'gl-old' ? ['--connect-timeout', '4'] : [];
        const r = await c.nixremote([...initCommand(b, name), ...timeout, '--no-test-build', '--password-stdin'], {
          input: `${b.password}\n`,
        });
        assert.equal(r.exitCode, 0, `init ${name}:\n${r.stdout}\n${r.stderr}`);
      }
      // gl-old goes quiet: its port takes TCP and never speaks SSH, so doctor waits for it.
      await made[2]!.stop();
      tarpit = await Tarpit.start(made[2]!.port);

      const r = await c.nixremote(['doctor', '--no-build']);
      assert.equal(r.exitCode, 1);
      const out = String(r.stdout);
      const lines = out.split('\n');
      assert.match(lines[0]!, /Checking 3 builders/);
      assert.match(lines[1]!, /^ok: This machine: +ok$/);
      assert.match(lines[2]!, /^ok: gl-fast: +ok$/);
      assert.match(lines[3]!, /^ok: gl-arm: +ok$/);
      assert.match(lines[4]!, /^error: gl-old: +FAIL at "[^"]+": .+\. Fix: .+$/);
      assert.doesNotMatch(out, /Builder gl-fast|Builder gl-arm/, 'a healthy builder has no details');
      assert.doesNotMatch(out, /^ok: TCP connection/m, 'passing checks only with --verbose');
      assert.match(out, /^Builder gl-old/m);
      // No progress line in a pipe: no carriage return, no escape.
      assert.ok(!out.includes('\r') && !out.includes('\u001b'), JSON.stringify(out));

      const v = await c.nixremote(['doctor', '--no-build', '--verbose']);
      assert.match(String(v.stdout), /^Builder gl-fast[\s\S]*^ok: TCP connection: 127\.0\.0\.1:\d+ answers/m);
      const j = JSON.parse(String((await c.nixremote(['doctor', '--no-build', '--json'])).stdout));
      assert.equal(j.builders.length, 3);
      assert.ok(
        j.builders[0].checks.some((x: { id: string; status: string }) => x.id === 'tcp' && x.status === 'pass'),
      );

      // On a terminal: the progress line, while it waits for the quiet one.
      const t = await Terminal.start(c, `${CLI} doctor --no-build`);
      try {
        await t.waitFor(/\d of 3 builders done; waiting for [^\n]*gl-old/, 30_000);
        const end = await t.waitFor(/checks passed/, 60_000);
        assert.doesNotMatch(end, /builders done; waiting/, 'the progress line is gone at the end');
      } finally {
        await t.close();
      }

      const s = await c.nixremote(['status']);
      assert.match(String(s.stdout).split('\n')[0]!, /^2 of 3 builders reachable; 1 down: gl-old \(.+\)$/);
    } finally {
      await tarpit?.stop();
      c.destroy();
      for (const b of made) await b.destroy();
    }
  });
});

describe('nixremote with no command', () => {
  test('prints its help on stdout, nothing on stderr, exit 0; help COMMAND and --help unchanged', async () => {
    const { execa } = await import('execa');
    const none = await execa(CLI, [], { reject: false });
    assert.equal(none.exitCode, 0);
    assert.match(none.stdout, /^Usage: nixremote \[options\] \[command\]/);
    assert.equal(none.stderr, '');
    const help = await execa(CLI, ['help', 'doctor'], { reject: false });
    assert.equal(help.exitCode, 0);
    assert.match(help.stdout, /^Usage: nixremote doctor/);
    const flag = await execa(CLI, ['doctor', '--help'], { reject: false });
    assert.equal(flag.stdout, help.stdout);
  });
});

describe('nixremote --version', () => {
  test("alone, answered before the front loads, with commander's own line; a closed pipe is no error", async () => {
    const { execa } = await import('execa');
    const { version } = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string };
    for (const args of [['--version'], ['-V'], ['--verbose', '--version']]) {
      const r = await execa(CLI, args, { reject: false });
      assert.deepEqual([r.exitCode, r.stdout, r.stderr], [0, version, ''], args.join(' '));
    }
    const closed = await execa('sh', ['-c', `${CLI} --version | true`], { reject: false });
    assert.deepEqual([closed.exitCode, closed.stderr], [0, '']);
  });
});
