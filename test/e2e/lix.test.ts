// Lix's TOML machines file through init, list, disable, enable and remove, for real against
// a builder on 127.0.0.1. Lix cannot run here: the client's `nix --version` says Lix 2.95.3
// (a wrapper first on PATH; every other nix command is this machine's Nix), so nixremote
// reads and writes the file as it would under Lix. What Lix itself makes of the file is the
// unit tests' (test/unit/lix.test.ts, from Lix's source and tests).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Client, initCommand, withRig } from './harness.js';

const USERS =
  'version = 1\n\n# my own\n[machines.handmade]\nuri = "ssh://handmade.invalid"\nsystem-types = ["aarch64-linux"]\n';

/** A `nix` that says it is Lix 2.95.3 and hands every other command to this machine's Nix. */
function lixOnPath(c: Client): Record<string, string> {
  const dir = path.join(path.dirname(c.root), 'lix-bin');
  fs.mkdirSync(dir, { recursive: true });
  const real = fs.realpathSync('/usr/bin/nix');
  fs.writeFileSync(
    path.join(dir, 'nix'),
    `#!/bin/sh\nif [ "$1" = --version ]; then echo 'nix (Lix, like Nix) 2.95.3'; exit 0; fi\nexec ${real} "$@"\n`,
    { mode: 0o755 },
  );
  return { PATH: `${dir}:${process.env.PATH}` };
}

describe("Lix's TOML machines file", () => {
  test('init adds a table to a TOML file, list reads it, disable and enable toggle enable = false, remove gives the file back', {
    timeout: 300_000,
  }, async () => {
    await withRig({}, async (b, c) => {
      const env = lixOnPath(c);
      const machines = path.join(c.etcNix, 'machines');
      fs.writeFileSync(machines, USERS);
      const init = await c.nixremote([...initCommand(b, 'lixbox'), '--no-test-build', '--password-stdin'], {
        input: `${b.password}\n`,
        env,
      });
      assert.equal(init.exitCode, 0, `${init.stdout}\n${init.stderr}`);
      assert.match(String(init.stdout), /Table machines\.lixbox \(Lix's TOML format\)/);
      const text = fs.readFileSync(machines, 'utf8');
      assert.ok(text.startsWith(USERS), 'the user part is as it was');
      assert.match(
        text,
        /# BEGIN nixremote builder lixbox\n\[machines\.lixbox\]\nuri = "ssh:\/\/lixbox"\nsystem-types = \[[^\]]*"x86_64-linux"[^\]]*\]\nssh-key = "\/root\/\.ssh\/nix_remote"\njobs = \d+\nspeed-factor = 1\nsupported-features = \[.*\]\nmandatory-features = \[\]\nssh-public-host-key = "ssh-ed25519 \S+"\n# END nixremote builder lixbox\n$/,
      );
      // Again: nothing changes.
      const again = await c.nixremote([...initCommand(b, 'lixbox'), '--no-test-build'], { env });
      assert.equal(again.exitCode, 0, `${again.stdout}\n${again.stderr}`);
      assert.equal(fs.readFileSync(machines, 'utf8'), text);

      const list = async () => JSON.parse(String((await c.nixremote(['list', '--json'], { env })).stdout)).builders;
      const listed = await list();
      assert.deepEqual(
        listed.map((x: { name: string; managed: boolean }) => [x.name, x.managed]),
        [
          ['handmade.invalid', false],
          ['lixbox', true],
        ],
      );
      assert.equal(listed[1].source, `/etc/nix/machines:${USERS.split('\n').length + 1}`, 'located at its table');
      const st = await c.nixremote(['status', '--json', 'lixbox'], { env });
      assert.equal(JSON.parse(String(st.stdout)).builders[0].state, 'idle', String(st.stdout));

      const off = await c.nixremote(['disable', 'lixbox', '--why', 'testing'], { env });
      assert.equal(off.exitCode, 0, `${off.stdout}\n${off.stderr}`);
      const disabled = fs.readFileSync(machines, 'utf8');
      assert.match(
        disabled,
        /# nixremote: disabled by user at \S+: testing\n\[machines\.lixbox\][\s\S]*\nenable = false\n# END/,
      );
      assert.equal((await list()).find((x: { name: string }) => x.name === 'lixbox').disabled.why, 'testing');
      const on = await c.nixremote(['enable', 'lixbox'], { env });
      assert.equal(on.exitCode, 0, `${on.stdout}\n${on.stderr}`);
      assert.equal(fs.readFileSync(machines, 'utf8'), text);

      // This machine's own Nix (2.8) reads only lines: doctor says what the file is.
      const nix = await c.nixremote(['doctor', '--no-build']);
      assert.equal(nix.exitCode, 1);
      assert.match(
        `${nix.stdout}${nix.stderr}`,
        /this is Lix's TOML machines format \(Lix 2\.95 on\), and Nix 2\.8\.0 reads only the line format/,
      );

      const rm = await c.nixremote(['remove', 'lixbox', '--yes'], { env });
      assert.equal(rm.exitCode, 0, `${rm.stdout}\n${rm.stderr}`);
      assert.equal(fs.readFileSync(machines, 'utf8'), USERS, 'byte for byte as before');
    });
  });

  test('--machines-format toml: refused with a Nix that reads only lines, and on a file of lines; nothing changed', {
    timeout: 300_000,
  }, async () => {
    await withRig({}, async (b, c) => {
      const before = c.snapshot();
      const nix = await c.nixremote([...initCommand(b, 'lixbox'), '--machines-format', 'toml', '--no-test-build'], {
        input: `${b.password}\n`,
      });
      assert.equal(nix.exitCode, 2, `${nix.stdout}\n${nix.stderr}`);
      assert.match(
        String(nix.stderr),
        /only Lix 2\.95 and later read the TOML machines file, and this machine has Nix 2\.8\.0/,
      );
      assert.deepEqual(c.snapshot(), before);
      const env = lixOnPath(c);
      fs.writeFileSync(path.join(c.etcNix, 'machines'), 'ssh://mine x86_64-linux - 1 1\n');
      const lines = c.snapshot();
      const r = await c.nixremote([...initCommand(b, 'lixbox'), '--machines-format', 'toml', '--no-test-build'], {
        input: `${b.password}\n`,
        env,
      });
      assert.equal(r.exitCode, 2, `${r.stdout}\n${r.stderr}`);
      assert.match(String(r.stderr), /has machine lines; Lix reads a file as TOML or as lines, not both/);
      assert.deepEqual(c.snapshot(), lines);
    });
  });
});
