// A key that can only speak Nix (init --restrict-to-nix), for real: the key's line gets a
// forced command for the protocol, `ssh NAME id` then runs Nix's program instead of id,
// doctor and status judge the builder through what the command allows, and real builds
// offload; init run again with the other protocol rewrites the forced command in place.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Builder, Client, initCommand, PROBE_EXPR, q, treeRoot, withRig } from './harness.js';

interface Check {
  id: string;
  status: string;
  summary: string;
}

describe('init --restrict-to-nix: a key that can only speak Nix', () => {
  test('ssh://, then ssh-ng:// by init again: the forced command follows the protocol', async () => {
    // A name of its own: this machine's client shares current-load/ (the slot locks) with the other tests.
    await withRig({}, async (b, c) => {
      const keys = () => fs.readFileSync(path.join(b.dir, 'home/.ssh/authorized_keys'), 'utf8').trim().split('\n');
      const args = [...initCommand(b, 'nixonly'), '--restrict-to-nix', '--password-stdin'];
      const r = await c.nixremote(args, { input: `${b.password}\n` });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(String(r.stdout), /a build ran on it/);
      const line = keys();
      assert.equal(line.length, 1, line.join('\n'));
      assert.match(line[0]!, /^restrict,command="\/usr\/bin\/nix-store --serve --write" ssh-ed25519 /);

      // The key runs nix-store --serve whatever is asked: not id, not a shell.
      const id = await c.run('ssh -o BatchMode=yes nixonly id < /dev/null');
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
      assert.match(String(built.stderr), /building '[^']+' on 'ssh:\/\/nixonly'/);

      // Again with ssh-ng: the password session rewrites the line where it stands.
      const ng = await c.nixremote([...args, '--protocol', 'ssh-ng', '--copy-key', 'password'], {
        input: `${b.password}\n`,
      });
      assert.equal(ng.exitCode, 0, `${ng.stdout}\n${ng.stderr}`);
      const after = keys();
      assert.equal(after.length, 1, after.join('\n'));
      assert.match(after[0]!, /^restrict,command="\/usr\/bin\/nix-daemon --stdio" ssh-ed25519 /);
      assert.match(fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8'), /^ssh-ng:\/\/nixonly /m);
      const ngBuilt = await c.run(`nix-build -j0 --no-out-link -E ${q(PROBE_EXPR(`lp-ng-${Date.now()}`))}`);
      assert.equal(ngBuilt.exitCode, 0, String(ngBuilt.stderr));
      assert.match(String(ngBuilt.stderr), /building '[^']+' on 'ssh-ng:\/\/nixonly'/);
    });
  });
});

// Signed access, on builders whose store is root's, served by a nix-daemon that trusts only
// root: the ssh user is never trusted, and builds offload because the builder's daemon
// trusts the one key this machine signs with.
for (const tree of ['trixie', 'sid']) {
  describe(`init --access signed, client and builder ${tree}`, () => {
    test('the builder trusts a key, not the user; the key only speaks Nix; inputs built here are taken', {
      skip: treeRoot(tree) ? false : `no ${tree} tree`,
    }, async () => {
      const b = await Builder.create({ untrusted: true, tree });
      const c = new Client({ tree });
      try {
        const conf = path.join(b.dir, 'etcnix/nix.conf');
        const args = [...initCommand(b, 'box'), '--access', 'signed', '--password-stdin'];
        // First: the builder does not trust the key yet. init says what to add there, and stops
        // with this machine's Nix config untouched.
        const first = await c.nixremote(args, { input: `${b.password}\n` });
        const said = `${first.stdout}\n${first.stderr}`;
        assert.equal(first.exitCode, 1, said);
        assert.match(said, /does not trust this machine's signing key yet/);
        const line =
          /echo '(extra-trusted-public-keys = nixremote-[^:]+-1:[A-Za-z0-9+/=]+)' >> \/etc\/nix\/nix\.conf/.exec(said);
        assert.ok(line, said);
        assert.ok(!fs.existsSync(path.join(c.etcNix, 'machines')), 'no machine line written');
        assert.doesNotMatch(fs.readFileSync(path.join(c.etcNix, 'nix.conf'), 'utf8'), /secret-key-files/);

        // The test does what the user is told, then init again finishes, the proof included.
        fs.appendFileSync(conf, `${line[1]}\n`);
        await b.restart();
        const again = await c.nixremote(args, { input: `${b.password}\n` });
        assert.equal(again.exitCode, 0, `${again.stdout}\n${again.stderr}`);
        assert.match(String(again.stdout), /a build ran on it/);
        assert.match(fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8'), /^ssh-ng:\/\/box /m);
        assert.match(
          fs.readFileSync(path.join(c.etcNix, 'nix.conf'), 'utf8'),
          /^extra-secret-key-files = \/root\/\.ssh\/nix-signing-key$/m,
        );
        assert.equal(fs.statSync(path.join(c.root, '.ssh/nix-signing-key')).mode & 0o777, 0o600);
        // Not trusted there, and the key runs only nix-daemon --stdio.
        assert.match(fs.readFileSync(conf, 'utf8'), /^trusted-users = root$/m);
        const keys = fs.readFileSync(path.join(b.dir, 'home/.ssh/authorized_keys'), 'utf8');
        assert.match(keys, /^restrict,command="[^"]*nix-daemon --stdio" ssh-ed25519 /m);
        const id = await c.run('ssh -o BatchMode=yes box id < /dev/null');
        assert.doesNotMatch(`${id.stdout}${id.stderr}`, /uid=/);

        // A real build whose input is built here first, so it must be taken by its signature.
        const nonce = `signed-${Date.now()}`;
        const input = `derivation { name = "lp-input"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo in > $out" ]; nonce = "${nonce}"; }`;
        const here = await c.run(`nix-build -j1 --builders '' --no-out-link -E ${q(input)}`);
        assert.equal(here.exitCode, 0, String(here.stderr));
        const main = `derivation { name = "lp-main"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "read x < \${${input}} && echo ok > $out" ]; }`;
        const built = await c.run(`nix-build -j0 --no-out-link -E ${q(main)}`);
        assert.equal(built.exitCode, 0, String(built.stderr));
        assert.match(String(built.stderr), /building '[^']+lp-main\.drv' on 'ssh-ng:\/\/box'/);

        // list says how each builder is reached.
        const listed = JSON.parse(String((await c.nixremote(['list', '--json'])).stdout)).builders[0];
        assert.equal(listed.access, 'signed');

        const d = JSON.parse(String((await c.nixremote(['doctor', '--json'])).stdout)) as {
          status: string;
          builders: { checks: Check[] }[];
        };
        assert.equal(d.status, 'pass', JSON.stringify(d.builders[0]!.checks.filter((x) => x.status !== 'pass')));

        // The builder loses the key: doctor names it, from the real build's refusal.
        fs.writeFileSync(conf, fs.readFileSync(conf, 'utf8').replace(/^extra-trusted-public-keys = .*\n/m, ''));
        await b.restart();
        const lost = JSON.parse(String((await c.nixremote(['doctor', '--json'])).stdout)) as {
          builders: { checks: (Check & { cause?: string; fix?: string })[] }[];
        };
        const failed = lost.builders[0]!.checks.find((x) => x.status === 'fail')!;
        assert.equal(failed?.id, 'build', JSON.stringify(lost.builders[0]!.checks));
        assert.match(failed.cause!, /does not trust this machine's signing key nixremote-/);
        assert.match(failed.fix!, /extra-trusted-public-keys = nixremote-/);

        // The key's forced command for the other protocol: doctor names it.
        const ak = path.join(b.dir, 'home/.ssh/authorized_keys');
        fs.writeFileSync(
          ak,
          fs.readFileSync(ak, 'utf8').replace(/command="[^"]*"/, 'command="nix-store --serve --write"'),
        );
        const other = JSON.parse(String((await c.nixremote(['doctor', '--json', '--no-build'])).stdout)) as {
          builders: { checks: (Check & { cause?: string })[] }[];
        };
        const wrong = other.builders[0]!.checks.find((x) => x.status === 'fail')!;
        assert.equal(wrong?.id, 'login-shell', JSON.stringify(other.builders[0]!.checks));
        assert.match(
          wrong.cause!,
          /the key's forced command .* is nix-store --serve --write, which speaks ssh:\/\/ only/,
        );

        // The same builder with trusted access: its user in trusted-users, the key still only
        // speaking Nix (init rewrites the forced command by password); doctor passes.
        fs.appendFileSync(conf, 'trusted-users = root nixremote-e2e\n');
        await b.restart();
        const trusted = await c.nixremote(
          [
            ...initCommand(b, 'box'),
            '--access',
            'trusted',
            '--protocol',
            'ssh-ng',
            '--restrict-to-nix',
            '--password-stdin',
          ],
          { input: `${b.password}\n` },
        );
        assert.equal(trusted.exitCode, 0, `${trusted.stdout}\n${trusted.stderr}`);
        assert.match(String(trusted.stdout), /a build ran on it/);
        assert.match(
          fs.readFileSync(path.join(b.dir, 'home/.ssh/authorized_keys'), 'utf8'),
          /command="[^"]*nix-daemon --stdio"/,
        );
        const dt = JSON.parse(String((await c.nixremote(['doctor', '--json', '--no-build'])).stdout)) as {
          status: string;
        };
        assert.equal(dt.status, 'pass', JSON.stringify(dt));
      } finally {
        c.destroy();
        await b.destroy();
      }
    });
  });
}

describe('init --access signed refuses a builder too old for it', () => {
  test('a Nix 2.8 builder: refused before anything is written, with the version named', {
    skip: treeRoot('trixie') ? false : 'no trixie tree',
  }, async () => {
    const b = await Builder.create({});
    const c = new Client({ tree: 'trixie' });
    try {
      const before = c.snapshot();
      const r = await c.nixremote([...initCommand(b, 'old'), '--access', 'signed', '--password-stdin'], {
        input: `${b.password}\n`,
      });
      const said = `${r.stdout}\n${r.stderr}`;
      assert.equal(r.exitCode, 1, said);
      assert.match(
        said,
        /the builder's Nix 2\.8\.0 does not report whether it trusts the user \(Nix 2\.15 and later do\)/,
      );
      assert.match(said, /Nothing was changed/);
      assert.deepEqual(c.snapshot(), before);
    } finally {
      c.destroy();
      await b.destroy();
    }
  });
});

describe('init --access signed --builder-sudo: the builder side done over ssh, through sudo', () => {
  test("the key goes into a nixremote block of the builder's nix.conf, with a backup, and out again with remove --on-builder", {
    skip: treeRoot('sid') ? false : 'no sid tree',
  }, async () => {
    const b = await Builder.create({ untrusted: true, tree: 'sid', sudo: true });
    const c = new Client({ tree: 'sid' });
    try {
      const conf = path.join(b.dir, 'etcnix/nix.conf');
      const before = fs.readFileSync(conf, 'utf8');
      const args = [...initCommand(b, 'box'), '--access', 'signed', '--builder-sudo', '--password-stdin'];
      const first = await c.nixremote(args, { input: `${b.password}\n` });
      const said = `${first.stdout}\n${first.stderr}`;
      // sudo wrote it; no systemd runs that daemon here, so init says to restart it, and the
      // check that follows finds it has not read the key yet.
      assert.match(said, /On box, as root \(sudo\): trust this machine's signing key/);
      assert.match(said, /added to \/etc\/nix\/nix\.conf \(backup: \/etc\/nix\/nix\.conf\.nixremote-[0-9T-]+\.bak\)/);
      assert.match(said, /restart it yourself so it reads \/etc\/nix\/nix\.conf/);
      assert.equal(first.exitCode, 1, said);
      const after = fs.readFileSync(conf, 'utf8');
      assert.ok(after.startsWith(before), 'what was there stays');
      assert.match(
        after.slice(before.length),
        /^# BEGIN nixremote trusted keys .*\nextra-trusted-public-keys = nixremote-[^:]+-1:[A-Za-z0-9+/=]+\n# END nixremote trusted keys\n$/,
      );
      assert.match(after, /^trusted-users = root$/m);
      const backups = fs.readdirSync(path.dirname(conf)).filter((f) => /^nix\.conf\.nixremote-.*\.bak$/.test(f));
      assert.equal(backups.length, 1);
      assert.equal(fs.readFileSync(path.join(path.dirname(conf), backups[0]!), 'utf8'), before);
      // The user restarts that daemon; init again finds the key there and finishes.
      await b.restart();
      const again = await c.nixremote(args, { input: `${b.password}\n` });
      assert.equal(again.exitCode, 0, `${again.stdout}\n${again.stderr}`);
      assert.match(String(again.stdout), /already in \/etc\/nix\/nix\.conf/);
      assert.match(String(again.stdout), /a build ran on it/);

      // remove --on-builder takes away what init put there: the key's line (by password, since the
      // key can only speak Nix) and, through sudo, this machine's key in the builder's nix.conf.
      const rm = await c.nixremote(['remove', 'box', '--on-builder', '--builder-sudo', '--password-stdin', '--yes'], {
        input: `${b.password}\n`,
      });
      assert.equal(rm.exitCode, 0, `${rm.stdout}\n${rm.stderr}`);
      assert.match(String(rm.stdout), /removed the key's line; took nixremote-[^ ]+-1 out of \/etc\/nix\/nix\.conf/);
      assert.equal(fs.readFileSync(conf, 'utf8'), before);
      assert.equal(fs.readFileSync(path.join(b.dir, 'home/.ssh/authorized_keys'), 'utf8').trim(), '');
      assert.doesNotMatch(fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8'), /ssh-ng:\/\/box/);
    } finally {
      c.destroy();
      await b.destroy();
    }
  });
});
