// A team's builders in one file, for real: three builders set up on one client by init,
// exported, and applied to a fresh second client (a proof build on each), which then holds
// the same ssh config, pins, machine lines and nix.conf byte for byte. Applied again: no
// change, no question. --check on a matching and a drifted machine; a file with one builder
// changed and one gone (--prune: its Host block, pin and line removed, a line of the user's
// untouched); a pinned key that does not match, and malformed files, refused with nothing
// changed; an apply interrupted part-way put back, and one killed left old or new.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Builder, Client, initCommand, waitForOutput, writtenFiles } from './harness.js';
import { removeBlock } from '../../src/text/managed-block.js';
import { hostBlockMarkers } from '../../src/ssh/ssh-config.js';

const NAMES = ['team1', 'team2', 'team3'];

const written = writtenFiles;
const waitFor = waitForOutput;

describe('apply and export: a team file', () => {
  test('export from one client, apply to another: the same files; again a no-op; --check; --prune; refusals', {
    timeout: 900_000,
  }, async () => {
    const made: Builder[] = [];
    const a = new Client();
    const b = new Client();
    try {
      for (const [i, name] of NAMES.entries()) {
        const x = await Builder.create();
        made.push(x);
        const r = await a.nixremote(
          [...initCommand(x, name), '--speed-factor', String(i + 1), '--no-test-build', '--password-stdin'],
          { input: `${x.password}\n` },
        );
        assert.equal(r.exitCode, 0, `init ${name}:\n${r.stdout}\n${r.stderr}`);
      }
      const exported = await a.nixremote(['export']);
      assert.equal(exported.exitCode, 0, String(exported.stderr));
      const team = String(exported.stdout);
      for (const n of NAMES)
        assert.match(
          team,
          new RegExp(
            `\\[builders\\.${n}\\]\\nhost = "127\\.0\\.0\\.1"\\nport = \\d+\\nuser = "nixremote-e2e"\\nhost-key = "ssh-ed25519 `,
          ),
        );
      const file = path.join(b.root, 'nixremote.toml');
      fs.writeFileSync(file, team);
      // A line of the second machine's own, which apply leaves be.
      const own = 'ssh://handmade.invalid aarch64-linux - 1 1\n';
      fs.writeFileSync(path.join(b.etcNix, 'machines'), own);

      const applied = await b.nixremote(['apply', '/root/nixremote.toml', '--password-stdin'], {
        input: `${made.map((x) => x.password).join('\n')}\n`,
      });
      assert.equal(applied.exitCode, 0, `${applied.stdout}\n${applied.stderr}`);
      for (const n of NAMES) assert.match(String(applied.stdout), new RegExp(`${n} is set up and a build ran on it`));
      // One plan: each file's diff once.
      assert.equal(
        (String(applied.stdout).match(/^\d+\. .*: (?:create|edit)\b.* \/root\/\.ssh\/config$/gm) ?? []).length,
        1,
        String(applied.stdout),
      );
      const fa = written(a);
      const fb = written(b);
      assert.equal(fb.config, fa.config);
      assert.equal(fb.known_hosts, fa.known_hosts);
      assert.equal(fb['nix.conf'], fa['nix.conf']);
      assert.equal(fb.machines, own + fa.machines, 'the same lines after the user’s own');

      // Again: nothing changes, nothing is asked (no password on stdin).
      const snap = b.snapshot();
      const again = await b.nixremote(['apply', '/root/nixremote.toml']);
      assert.equal(again.exitCode, 0, `${again.stdout}\n${again.stderr}`);
      assert.match(String(again.stdout), /Nothing to change: this machine matches \/root\/nixremote\.toml/);
      assert.deepEqual(b.snapshot(), snap);
      const check = await b.nixremote(['apply', '/root/nixremote.toml', '--check', '--json']);
      assert.equal(check.exitCode, 0, String(check.stderr));
      assert.equal(JSON.parse(String(check.stdout)).matches, true);

      // One changed, one gone: --check says so; --prune applies it.
      const changed = team
        .replace(/(\[builders\.team2\][\s\S]*?jobs = )\d+/, '$13')
        .replace(/\[builders\.team3\][\s\S]*$/, '');
      fs.writeFileSync(file, changed);
      const drift = await b.nixremote(['apply', '/root/nixremote.toml', '--check', '--prune']);
      assert.equal(drift.exitCode, 1, `${drift.stdout}\n${drift.stderr}`);
      assert.match(String(drift.stdout), /^team1: matches the file$/m);
      assert.match(String(drift.stdout), /^team2: differs \(\/etc\/nix\/machines\)$/m);
      assert.match(String(drift.stdout), /^team3: here, not in the file/m);
      const pruned = await b.nixremote(['apply', '/root/nixremote.toml', '--prune']);
      assert.equal(pruned.exitCode, 0, `${pruned.stdout}\n${pruned.stderr}`);
      const fp = written(b);
      assert.ok(fp.machines!.startsWith(own), 'the user line is untouched');
      assert.match(fp.machines!, /^ssh:\/\/team2 \S+ \S+ 3 2 /m);
      assert.doesNotMatch(fp.machines!, /team3/);
      assert.doesNotMatch(fp.config!, /team3/);
      assert.doesNotMatch(fp.known_hosts!, /team3/);
      assert.equal(fp.config, removeBlock(fa.config!, hostBlockMarkers('team3')).text, 'every other byte the same');

      // A pinned key that is not the builder's: refused, both fingerprints named, nothing changed.
      const kept = written(b);
      const k3 = /\[builders\.team3\][\s\S]*?host-key = ("[^"]+")/.exec(team)![1]!;
      fs.writeFileSync(file, changed.replace(/(\[builders\.team1\][\s\S]*?host-key = )"[^"]+"/, `$1${k3}`));
      const wrong = await b.nixremote(['apply', '/root/nixremote.toml']);
      assert.notEqual(wrong.exitCode, 0);
      assert.match(String(wrong.stderr), /builders\.team1: .*shows SHA256:\S+, not SHA256:\S+/);
      assert.deepEqual(written(b), kept);

      // Malformed: each class of error, exit 2, at its line and column, nothing changed.
      const bad: [string, RegExp][] = [
        ['[builders.x\nhost = "h"\n', /nixremote\.toml:1:\d+: not TOML/],
        [
          '[builders.x]\nhost = "h"\nuser = "u"\nhost-key-fingerprint = "SHA256:AAAA"\n',
          /:4:24: builders\.x\.host-key-fingerprint: 'SHA256:AAAA' is not a SHA256 fingerprint/,
        ],
        ['[builders.x]\nhost = "h"\nuser = "u"\n', /:1:1: builders\.x: host-key or host-key-fingerprint is missing/],
        [
          `[builders.x]\nhost = "h"\nuser = "u"\nport = 70000\nhost-key = ${k3}\n`,
          /:4:8: builders\.x\.port: 70000 is out of range/,
        ],
        [
          `[builders.x]\nhost = "h"\nuser = "u"\nprotocol = "ssh-ngg"\nhost-key = ${k3}\n`,
          /:4:12: builders\.x\.protocol: 'ssh-ngg' is not one of ssh, ssh-ng/,
        ],
        [`[builders.X]\nhost = "h"\nuser = "u"\nhost-key = ${k3}\n`, /:1:1: \[builders\.X\]: 'X' must be lower-case/],
        [
          `[builders.x]\nhost = "h"\nuser = "u"\ncolour = "blue"\nhost-key = ${k3}\n`,
          /:4:10: builders\.x\.colour: unknown; allowed: host, port/,
        ],
      ];
      for (const [text, message] of bad) {
        fs.writeFileSync(file, text);
        const r = await b.nixremote(['apply', '/root/nixremote.toml']);
        assert.equal(r.exitCode, 2, `${text}\n${r.stderr}`);
        assert.match(String(r.stderr), message, text);
        assert.deepEqual(written(b), kept);
      }

      // Interrupted part-way: everything put back. Killed: each file old or new, whole.
      fs.writeFileSync(file, team);
      const whole: Record<string, string | null> = { ...fa, machines: own + fa.machines };
      for (const signal of ['SIGINT', 'SIGKILL'] as const) {
        const chunks: string[] = [];
        const p = b.nixremote(['apply', '/root/nixremote.toml', '--no-test-build'], {
          env: { NO_COLOR: '1', NIXREMOTE_TEST_STEP_DELAY_MS: '700' },
        });
        p.stdout?.on('data', (d: Buffer) => chunks.push(d.toString()));
        assert.ok(await waitFor(chunks, /\n- Check: ssh/, 120_000), chunks.join(''));
        p.kill(signal);
        const r = await p;
        const now = written(b);
        if (signal === 'SIGINT') {
          assert.notEqual(r.exitCode, 0);
          assert.deepEqual(now, kept, `interrupted:\n${r.stdout}\n${r.stderr}`);
        } else
          for (const f of Object.keys(now) as (keyof typeof now)[])
            assert.ok(now[f] === kept[f] || now[f] === whole[f], `killed: ${f} is neither as before nor as planned`);
      }
      // And the next run finishes what the killed one began.
      const finish = await b.nixremote(['apply', '/root/nixremote.toml', '--no-test-build']);
      assert.equal(finish.exitCode, 0, `${finish.stdout}\n${finish.stderr}`);
      assert.deepEqual(written(b), whole);

      // On NixOS the file's builders go into nixremote's module, all of them, and nothing into /etc/nix.
      const n = new Client();
      try {
        fs.writeFileSync(
          path.join(n.root, 'nixos.toml'),
          team.replace('[options]\n', '[options]\ntarget = "nixos"\nmodule = "/root/nixremote.nix"\n'),
        );
        const etc = fs.readFileSync(path.join(n.etcNix, 'nix.conf'), 'utf8');
        const nixos = await n.nixremote(['apply', '/root/nixos.toml', '--no-test-build', '--password-stdin'], {
          input: `${made.map((x) => x.password).join('\n')}\n`,
        });
        assert.equal(nixos.exitCode, 0, `${nixos.stdout}\n${nixos.stderr}`);
        const mod = fs.readFileSync(path.join(n.root, 'nixremote.nix'), 'utf8');
        for (const name of NAMES) assert.match(mod, new RegExp(`hostName = "${name}";`));
        assert.equal(fs.existsSync(path.join(n.etcNix, 'machines')), false);
        assert.equal(fs.readFileSync(path.join(n.etcNix, 'nix.conf'), 'utf8'), etc);
        const twice = await n.nixremote(['apply', '/root/nixos.toml', '--no-test-build']);
        assert.match(String(twice.stdout), /Nothing to change/);
      } finally {
        n.destroy();
      }
    } finally {
      a.destroy();
      b.destroy();
      for (const x of made) await x.destroy();
    }
  });
});
