// A key that can only speak Nix (init --restrict-to-nix), for real: the key's line gets a
// forced command for the protocol, `ssh NAME id` then runs Nix's program instead of id,
// doctor and status judge the builder through what the command allows, and real builds
// offload; init run again with the other protocol rewrites the forced command in place.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initCommand, PROBE_EXPR, q, withRig } from './harness.js';

interface Check {
  id: string;
  status: string;
  summary: string;
}

describe('init --restrict-to-nix: a key that can only speak Nix', () => {
  test('ssh://, then ssh-ng:// by init again: the forced command follows the protocol', async () => {
    await withRig({}, async (b, c) => {
      const keys = () => fs.readFileSync(path.join(b.dir, 'home/.ssh/authorized_keys'), 'utf8').trim().split('\n');
      const args = [...initCommand(b, 'box'), '--restrict-to-nix', '--password-stdin'];
      const r = await c.nixremote(args, { input: `${b.password}\n` });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(String(r.stdout), /a build ran on it/);
      const line = keys();
      assert.equal(line.length, 1, line.join('\n'));
      assert.match(line[0]!, /^restrict,command="\/usr\/bin\/nix-store --serve --write" ssh-ed25519 /);

      // The key runs nix-store --serve whatever is asked: not id, not a shell.
      const id = await c.run('ssh -o BatchMode=yes box id < /dev/null');
      assert.doesNotMatch(`${id.stdout}${id.stderr}`, /uid=/, 'the key cannot run id');

      // doctor and status: a pass that says what the forced command hides; nothing failed.
      const d = JSON.parse(String((await c.nixremote(['doctor', '--json'])).stdout)) as {
        status: string;
        builders: { checks: Check[] }[];
      };
      const checks = d.builders[0]!.checks;
      assert.equal(d.status, 'pass', JSON.stringify(checks.filter((x) => x.status !== 'pass')));
      assert.match(
        checks.find((x) => x.id === 'login-shell')!.summary,
        /serves ssh:\/\/ \(the key can only speak Nix\)/,
      );
      assert.equal(checks.find((x) => x.id === 'build')!.status, 'pass');
      const s = JSON.parse(String((await c.nixremote(['status', '--json'])).stdout)).builders[0];
      assert.equal(s.state, 'idle', JSON.stringify(s));

      // A real build offloads through it.
      const built = await c.run(`nix-build -j0 --no-out-link -E ${q(PROBE_EXPR(`lp-${Date.now()}`))}`);
      assert.equal(built.exitCode, 0, String(built.stderr));
      assert.match(String(built.stderr), /building '[^']+' on 'ssh:\/\/box'/);

      // Again with ssh-ng: the password session rewrites the line where it stands.
      const ng = await c.nixremote([...args, '--protocol', 'ssh-ng', '--copy-key', 'password'], {
        input: `${b.password}\n`,
      });
      assert.equal(ng.exitCode, 0, `${ng.stdout}\n${ng.stderr}`);
      const after = keys();
      assert.equal(after.length, 1, after.join('\n'));
      assert.match(after[0]!, /^restrict,command="\/usr\/bin\/nix-daemon --stdio" ssh-ed25519 /);
      assert.match(fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8'), /^ssh-ng:\/\/box /m);
      const ngBuilt = await c.run(`nix-build -j0 --no-out-link -E ${q(PROBE_EXPR(`lp-ng-${Date.now()}`))}`);
      assert.equal(ngBuilt.exitCode, 0, String(ngBuilt.stderr));
      assert.match(String(ngBuilt.stderr), /building '[^']+' on 'ssh-ng:\/\/box'/);
    });
  });
});
