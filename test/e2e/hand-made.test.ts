// Setups people made by hand, as the NixOS wiki's "Distributed build" page has them: a Host
// block with StrictHostKeyChecking=no and UserKnownHostsFile=/dev/null, the key copied with
// ssh-copy-id, and `builders = ssh://builder SYSTEM` in nix.conf. Builds offload with it, so
// doctor must not call it broken; it names the risk and --fix closes it.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Builder, CLI, type Client, PROBE_EXPR, q, Terminal, withRig, initCommand } from './harness.js';
import { nixSystem } from './fleet.js';

interface Check {
  id: string;
  status: string;
  summary: string;
}

/** The wiki's steps, for real: a key, the Host block, ssh-copy-id with the password, nix.conf. */
async function wikiSetup(b: Builder, c: Client): Promise<void> {
  const key = await c.run(`mkdir -p -m 700 /root/.ssh && ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519`);
  assert.equal(key.exitCode, 0, String(key.stderr));
  fs.writeFileSync(
    path.join(c.root, '.ssh/config'),
    [
      'Host builder',
      '  HostName 127.0.0.1',
      `  Port ${b.port}`,
      `  User ${b.user}`,
      '  IdentityFile /root/.ssh/id_ed25519',
      '  StrictHostKeyChecking=no',
      '  UserKnownHostsFile=/dev/null',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  // ssh-copy-id asks for the password through SSH_ASKPASS when there is no terminal.
  const askpass = path.join(path.dirname(c.root), 'askpass');
  fs.writeFileSync(askpass, `#!/bin/sh\necho ${q(b.password)}\n`, { mode: 0o700 });
  const copy = await c.run(
    `SSH_ASKPASS=${askpass} SSH_ASKPASS_REQUIRE=force DISPLAY=none ssh-copy-id -i /root/.ssh/id_ed25519.pub builder < /dev/null`,
  );
  assert.equal(copy.exitCode, 0, `ssh-copy-id failed:\n${copy.stdout}\n${copy.stderr}`);
  fs.appendFileSync(path.join(c.etcNix, 'nix.conf'), `builders = ssh://builder ${nixSystem()}\n`);
}

describe("the NixOS wiki's hand-made setup", () => {
  test('builds offload; doctor passes with a warning; --fix pins the key and turns checking back on', async () => {
    await withRig({}, async (b, c) => {
      await wikiSetup(b, c);
      const build = await c.run(`nix-build --no-out-link -j0 -E ${q(PROBE_EXPR(randomBytes(8).toString('hex')))}`);
      assert.equal(build.exitCode, 0, String(build.stderr));
      assert.ok(b.storeHas(String(build.stdout).trim()), 'the build did not land on the builder');

      const r = await c.nixremote(['doctor', '--json']);
      const report = JSON.parse(String(r.stdout)) as { status: string; builders: { name: string; checks: Check[] }[] };
      const checks = report.builders[0]!.checks;
      assert.equal(r.exitCode, 0, JSON.stringify(checks, null, 1));
      const hk = checks.find((x) => x.id === 'host-key')!;
      assert.equal(hk.status, 'warn');
      assert.match(
        hk.summary,
        /host key checking is off for builder \(StrictHostKeyChecking no, UserKnownHostsFile \/dev\/null\)/,
      );
      // Every other check ran, the real build among them.
      assert.deepEqual(
        checks.filter((x) => x.status !== 'pass' && x.id !== 'host-key').map((x) => [x.id, x.status]),
        [],
      );
      assert.match(checks.find((x) => x.id === 'build')!.summary, /was built on builder/);

      const fp = await b.hostKeyFingerprint();
      const t = await Terminal.start(c, `${CLI} doctor --fix --no-build`);
      try {
        const screen = await t.waitFor(/turn host key checking back on\s+for builder\?/);
        assert.ok(screen.includes(fp), screen);
        assert.match(screen, /- {2}StrictHostKeyChecking=no/);
        assert.match(screen, /- {2}UserKnownHostsFile=\/dev\/null/);
        await t.type('y');
        assert.equal(await t.exitCode(), 0, await t.screen());
      } finally {
        await t.close();
      }
      const config = fs.readFileSync(path.join(c.root, '.ssh/config'), 'utf8');
      assert.doesNotMatch(config, /StrictHostKeyChecking|UserKnownHostsFile/);
      assert.match(config, /^ {2}IdentityFile \/root\/\.ssh\/id_ed25519$/m);
      assert.match(
        fs.readFileSync(path.join(c.root, '.ssh/known_hosts'), 'utf8'),
        new RegExp(`^\\[127\\.0\\.0\\.1\\]:${b.port} ssh-ed25519 `, 'm'),
      );
      const strict = await c.run('ssh -o BatchMode=yes -o StrictHostKeyChecking=yes builder true');
      assert.equal(strict.exitCode, 0, String(strict.stderr));
      const again = await c.nixremote(['doctor', '--json', '--no-build']);
      assert.equal(again.exitCode, 0, String(again.stdout));
      assert.equal(
        JSON.parse(String(again.stdout)).builders[0].checks.find((x: Check) => x.id === 'host-key').status,
        'pass',
      );
    });
  });

  test('a wider ControlMaster/ControlPersist that applies to the builder is named', async () => {
    await withRig({}, async (b, c) => {
      await wikiSetup(b, c);
      fs.appendFileSync(
        path.join(c.root, '.ssh/config'),
        'Host *\n  ControlMaster auto\n  ControlPath ~/.ssh/cm-%C\n  ControlPersist 10m\n',
      );
      const r = await c.nixremote(['doctor', '--json', '--no-build']);
      const checks = JSON.parse(String(r.stdout)).builders[0].checks as (Check & { fix?: string })[];
      const cfg = checks.find((x) => x.id === 'ssh-config')!;
      assert.equal(cfg.status, 'warn', JSON.stringify(cfg));
      assert.match(
        cfg.summary,
        /connection sharing applies to it \(ControlMaster auto, ControlPath \/root\/\.ssh\/cm-[0-9a-f]+, ControlPersist 600\)/,
      );
      assert.match(cfg.fix ?? '', /"ControlMaster no" and "ControlPath none"/);
      assert.equal(r.exitCode, 0);
    });
  });

  test('init takes the hand-made setup over with --adopt: one builder, its own options kept', async () => {
    await withRig({}, async (b, c) => {
      await wikiSetup(b, c);
      fs.appendFileSync(path.join(c.root, '.ssh/config'), '  Compression yes\n');
      const args = [...initCommand(b, 'builder'), '--password-stdin'];
      const before = c.snapshot();
      const refused = await c.nixremote(args, { input: b.password + '\n' });
      assert.equal(refused.exitCode, 2);
      assert.match(String(refused.stderr), /already has its own "Host builder"; pass --adopt to take it over/);
      assert.deepEqual(c.snapshot(), before);

      const r = await c.nixremote([...args, '--adopt'], { input: b.password + '\n' });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(String(r.stdout), /Taking over your "Host builder" \(\/root\/\.ssh\/config line 1\)/);
      assert.match(String(r.stdout), /kept as they are: Compression yes/);
      assert.match(String(r.stdout), /builder is set up and a build ran on it/);
      const config = fs.readFileSync(path.join(c.root, '.ssh/config'), 'utf8');
      assert.match(
        config,
        /^# BEGIN nixremote builder builder [^\n]*\nHost builder\n[\s\S]* {2}ControlPath none\n {2}Compression yes\n# END nixremote builder builder\n$/,
      );
      assert.doesNotMatch(config, /StrictHostKeyChecking|UserKnownHostsFile/);
      assert.equal(config.match(/^Host builder$/gm)?.length, 1);
      assert.ok(
        fs.readdirSync(path.join(c.root, '.ssh')).some((f) => f.startsWith('config.nixremote-')),
        'no backup of the ssh config',
      );
      // Nix now has exactly one builder of that name: nixremote's line; the inline entry is left out.
      const list = JSON.parse(String((await c.nixremote(['list', '--json'])).stdout)).builders as {
        name: string;
        managed: boolean;
      }[];
      assert.deepEqual(
        list.map((x) => [x.name, x.managed]),
        [['builder', true]],
      );
      assert.match(fs.readFileSync(path.join(c.etcNix, 'nix.conf'), 'utf8'), /^builders = @\/etc\/nix\/machines$/m);
      const build = await c.run(`nix-build --no-out-link -j0 -E ${q(PROBE_EXPR(randomBytes(8).toString('hex')))}`);
      assert.equal(build.exitCode, 0, String(build.stderr));
      assert.ok(b.storeHas(String(build.stdout).trim()));
      // Again: nothing to take over any more, nothing changes.
      const snap = c.snapshot();
      const again = await c.nixremote(args, { input: b.password + '\n' });
      assert.equal(again.exitCode, 0, `${again.stdout}\n${again.stderr}`);
      assert.deepEqual(c.snapshot(), snap);
    });
  });
});
