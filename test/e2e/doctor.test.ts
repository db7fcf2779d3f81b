// `nixremote doctor` against real builders set up by `nixremote init`, each then broken
// for real, one fault at a time.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Builder, type Client, CLI, q, Terminal, withRig, type BuilderOptions, initCommand } from './harness.js';

async function initialized(
  opts: BuilderOptions,
  fn: (b: Builder, c: Client) => Promise<void>,
  extra: string[] = [],
): Promise<void> {
  await withRig(opts, async (b, c) => {
    const r = await c.nixremote([...initCommand(b, 'box'), '--password-stdin', ...extra], { input: b.password + '\n' });
    assert.equal(r.exitCode, 0, `init failed:\n${r.stdout}\n${r.stderr}`);
    await fn(b, c);
  });
}

interface Check {
  id: string;
  status: string;
  summary: string;
  cause?: string;
  fix?: string;
}
interface Report {
  status: string;
  local: Check[];
  builders: { name: string; status: string; checks: Check[] }[];
}

async function doctorJson(c: Client, args: string[] = []): Promise<{ code: number; report: Report; stderr: string }> {
  const r = await c.nixremote(['doctor', '--json', ...args]);
  let report: Report;
  try {
    report = JSON.parse(String(r.stdout));
  } catch {
    throw new Error(`doctor --json did not print JSON:\n${r.stdout}\n${r.stderr}`);
  }
  return { code: r.exitCode ?? -1, report, stderr: String(r.stderr) };
}

const check = (r: Report, id: string) => r.builders[0]!.checks.find((c) => c.id === id)!;

/** The first failing check of the builder, which is the one the fault should be pinned on. */
function firstFailure(r: Report): Check {
  const f = r.builders[0]!.checks.find((c) => c.status === 'fail');
  assert.ok(f, `no check failed: ${JSON.stringify(r.builders[0]!.checks.map((c) => [c.id, c.status]))}`);
  return f;
}

describe('doctor on a healthy builder', () => {
  test('passes after init, in text and in JSON', async () => {
    await initialized({}, async (b, c) => {
      const text = await c.nixremote(['doctor', '--verbose']);
      assert.equal(text.exitCode, 0, `${text.stdout}\n${text.stderr}`);
      assert.match(String(text.stdout), /a real build: \/nix\/store\/\S+-nixremote-probe was built on box/);
      assert.match(String(text.stdout), /checks passed, 0 failed/);
      const { code, report } = await doctorJson(c, ['box']);
      assert.equal(code, 0);
      assert.equal(report.status, 'pass');
      assert.deepEqual(
        report.builders.map((x) => x.name),
        ['box'],
      );
      assert.ok(
        report.builders[0]!.checks.every((x) => x.status === 'pass'),
        JSON.stringify(report.builders[0]!.checks),
      );
      const out = String(check(report, 'build').summary).split(' ')[0]!;
      assert.ok(b.storeHas(out), `${out} is not in the builder's store`);
    });
  });

  test('--drv says whether a derivation can go to the builder, and why not', async () => {
    await initialized({}, async (_b, c) => {
      const inst = (features: string) =>
        c.run(
          `nix-instantiate -E ${q(`derivation { name = "needs"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; requiredSystemFeatures = [ ${features} ]; }`)}`,
        );
      const good = String((await inst('"big-parallel"')).stdout).trim();
      const bad = String((await inst('"cuda"')).stdout).trim();
      assert.match(bad, /^\/nix\/store\/.*\.drv$/);
      const yes = await doctorJson(c, ['box', '--no-build', '--drv', good]);
      assert.equal(yes.code, 0, JSON.stringify(yes.report));
      assert.match(check(yes.report, 'derivation').summary, /with big-parallel\) can go to box/);
      const no = await doctorJson(c, ['box', '--no-build', '--drv', bad]);
      assert.equal(no.code, 1);
      assert.match(
        check(no.report, 'derivation').summary,
        /cannot go to box: it requires feature cuda, which the builder does not offer/,
      );
      const usage = await c.nixremote(['doctor', '--drv', bad]);
      assert.equal(usage.exitCode, 2);
    });
  });

  test('an unknown builder name is a usage error', async () => {
    await initialized({}, async (_b, c) => {
      const r = await c.nixremote(['doctor', 'nosuch', '--no-build']);
      assert.equal(r.exitCode, 2);
      assert.match(String(r.stderr), /no builder named nosuch \(configured: box\)/);
    });
  });
});

describe('doctor names each fault', () => {
  test('a shell that prints', async () => {
    await initialized({}, async (b, c) => {
      b.setBashrc('echo Welcome to the builder');
      const { code, report } = await doctorJson(c);
      assert.equal(code, 1);
      const f = firstFailure(report);
      assert.equal(f.id, 'shell');
      assert.match(f.summary, /printed "Welcome to the builder\\n"/);
      assert.match(f.fix!, /~\/\.bashrc/);
      // Nix's own error, decoded back to what the shell printed.
      assert.match(f.cause!, /Nix's error quotes "Welcome to the builder/);
    });
  });

  test('nix-store missing from the non-interactive PATH', async () => {
    await initialized({}, async (b, c) => {
      b.opts.hideNixStore = true;
      await b.restart();
      const { code, report } = await doctorJson(c);
      assert.equal(code, 1);
      const f = firstFailure(report);
      assert.equal(f.id, 'remote-nix');
      assert.match(f.cause!, /nix-store \(nix-daemon for ssh-ng\) is not on the builder's non-interactive PATH/);
      assert.equal(check(report, 'build').status, 'skip');
    });
  });

  test('nix-store only in the default profile: the remote-program fix, applied by --fix', async () => {
    await initialized({}, async (b, c) => {
      b.opts.hideNixStore = true;
      b.opts.nixStoreInProfile = true;
      await b.restart();
      const { code, report } = await doctorJson(c, ['--no-build']);
      assert.equal(code, 1);
      const f = firstFailure(report);
      assert.equal(f.id, 'remote-nix');
      assert.match(f.fix!, /\?remote-program=\/nix\/var\/nix\/profiles\/default\/bin\/nix-store/);
      const fix = await c.nixremote(['doctor', '--fix', '--yes', '--verbose']);
      assert.equal(fix.exitCode, 0, `${fix.stdout}\n${fix.stderr}`);
      assert.match(
        fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8'),
        /^ssh:\/\/box\?remote-program=\/nix\/var\/nix\/profiles\/default\/bin\/nix-store /m,
      );
      assert.match(String(fix.stdout), /a real build: \S+ was built on box/);
    });
  });

  test("a builder user that the builder's nix-daemon does not trust", async () => {
    await withRig({ untrusted: true }, async (b, c) => {
      const args = [...initCommand(b, 'box'), '--password-stdin'];
      // init runs doctor's checks before it writes Nix's side: it refuses, and puts back what it wrote.
      const refused = await c.nixremote(args, { input: b.password + '\n' });
      assert.equal(refused.exitCode, 1);
      assert.match(
        String(refused.stderr),
        new RegExp(
          `${b.user} is not in the builder's trusted-users \\(root\\).*trusted-users = root ${b.user}.*Nothing was changed`,
        ),
      );
      assert.ok(!fs.existsSync(path.join(c.etcNix, 'machines')), 'init left a machine line behind');
      assert.ok(!fs.existsSync(path.join(b.dir, 'home/.ssh/authorized_keys')), 'init added its key on the builder');
      // Set up while trusted, then the builder's admin takes the trust away.
      const conf = path.join(b.dir, 'etcnix/nix.conf');
      const untrusting = fs.readFileSync(conf, 'utf8');
      fs.writeFileSync(conf, untrusting.replace('trusted-users = root', `trusted-users = root ${b.user}`));
      await b.restart();
      const ok = await c.nixremote(args, { input: b.password + '\n' });
      assert.equal(ok.exitCode, 0, `${ok.stdout}\n${ok.stderr}`);
      fs.writeFileSync(conf, untrusting);
      await b.restart();
      const { code, report } = await doctorJson(c);
      assert.equal(code, 1);
      const f = firstFailure(report);
      assert.equal(f.id, 'trust');
      assert.match(f.summary, new RegExp(`${b.user} is not in the builder's trusted-users \\(root\\)`));
      assert.match(f.fix!, /trusted-users = root nixremote-e2e/);
      // The real build fails the same way, and its Nix error is mapped to the cause.
      const build = check(report, 'build');
      assert.equal(build.status, 'fail');
      assert.match(build.cause!, /does not trust the ssh user/);
    });
  });

  test("the same over ssh-ng: an untrusted user of the builder's own nix-daemon", async () => {
    await withRig({ untrusted: true }, async (b, c) => {
      const conf = path.join(b.dir, 'etcnix/nix.conf');
      const untrusting = fs.readFileSync(conf, 'utf8');
      fs.writeFileSync(conf, untrusting.replace('trusted-users = root', `trusted-users = root ${b.user}`));
      await b.restart();
      const ok = await c.nixremote([...initCommand(b, 'ngbox'), '--password-stdin'], { input: b.password + '\n' });
      assert.equal(ok.exitCode, 0, `${ok.stdout}\n${ok.stderr}`);
      // Switched to ssh-ng by hand, then the trust taken away.
      const machines = path.join(c.etcNix, 'machines');
      fs.writeFileSync(machines, fs.readFileSync(machines, 'utf8').replace('ssh://ngbox ', 'ssh-ng://ngbox '));
      fs.writeFileSync(conf, untrusting);
      await b.restart();
      const { code, report } = await doctorJson(c);
      assert.equal(code, 1);
      assert.match(check(report, 'remote-nix').summary, /^nix-daemon: /);
      const f = firstFailure(report);
      assert.equal(f.id, 'trust');
      assert.match(f.summary, new RegExp(`${b.user} is not in the builder's trusted-users \\(root\\)`));
      const build = check(report, 'build');
      assert.equal(build.status, 'fail');
      assert.match(build.cause!, /does not trust the ssh user/);
    });
  });

  test('a host key that changed', async () => {
    await initialized({}, async (b, c) => {
      await b.newHostKey();
      await b.restart();
      const { code, report } = await doctorJson(c);
      assert.equal(code, 1);
      const f = firstFailure(report);
      assert.equal(f.id, 'host-key');
      assert.match(
        f.summary,
        new RegExp(`the builder shows ${(await b.hostKeyFingerprint()).replace(/[+/]/g, '\\$&')}`),
      );
      assert.match(f.cause!, /reinstalled|changed/);

      // --fix never replaces a host key without asking; with no terminal it cannot ask.
      const machines = fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8');
      const noTty = await c.nixremote(['doctor', '--fix', '--yes', '--no-build']);
      assert.equal(noTty.exitCode, 1);
      assert.match(String(noTty.stdout), /not applied: it needs a confirmation and there is no terminal/);
      assert.equal(fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8'), machines);

      // In a terminal it shows both fingerprints and asks; yes pins the new key.
      const oldFp = /pins (SHA256:\S+),/.exec(f.summary)![1]!;
      const newFp = await b.hostKeyFingerprint();
      const t = await Terminal.start(c, `${CLI} doctor --fix --no-build`);
      try {
        const screen = await t.waitFor(/Replace the pinned key\?/);
        assert.ok(screen.includes(oldFp) && screen.includes(newFp), screen);
        await t.type('y');
        assert.equal(await t.exitCode(), 0, await t.screen());
      } finally {
        await t.close();
      }
      assert.notEqual(fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8'), machines);
      const ssh = await c.run('ssh -o BatchMode=yes -o StrictHostKeyChecking=yes box true');
      assert.equal(ssh.exitCode, 0, String(ssh.stderr));
    });
  });

  test('HostKeyAlias missing, so the pinned key is never found', async () => {
    await initialized({}, async (_b, c) => {
      const cfg = path.join(c.root, '.ssh/config');
      fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replace(/^\s*HostKeyAlias .*\n/m, ''));
      const { code, report } = await doctorJson(c, ['--no-build']);
      assert.equal(code, 1);
      const f = firstFailure(report);
      assert.equal(f.id, 'host-key');
      assert.match(f.summary, /looked up as "\[127\.0\.0\.1\]:\d+", but Nix writes it under "box"/);
      assert.match(f.fix!, /HostKeyAlias box/);
      const fix = await c.nixremote(['doctor', '--fix', '--yes', '--verbose']);
      assert.equal(fix.exitCode, 0, `${fix.stdout}\n${fix.stderr}`);
      assert.match(String(fix.stdout), /applied: add "HostKeyAlias box" under "Host box"/);
      assert.match(String(fix.stdout), /a real build: \S+ was built on box/);
    });
  });

  test('a key with mode 0644, and --fix mends it', async () => {
    await initialized({}, async (_b, c) => {
      const key = path.join(c.root, '.ssh/nix_remote');
      fs.chmodSync(key, 0o644);
      const { code, report } = await doctorJson(c, ['--no-build']);
      assert.equal(code, 1);
      const f = firstFailure(report);
      assert.equal(f.id, 'key');
      assert.match(f.summary, /mode 0644/);
      assert.equal(f.fix, 'chmod 600 /root/.ssh/nix_remote');
      assert.equal(
        check(report, 'login').status,
        'skip',
        'a check whose prerequisite failed is skipped, not failed again',
      );
      const fix = await c.nixremote(['doctor', '--no-build', '--fix', '--yes']);
      assert.equal(fix.exitCode, 0, `${fix.stdout}\n${fix.stderr}`);
      assert.match(String(fix.stdout), /applied: chmod 600/);
      assert.equal(fs.statSync(key).mode & 0o777, 0o600);
    });
  });

  test('a stopped sshd, with local builds off', async () => {
    await initialized({}, async (b, c) => {
      await b.stop();
      fs.appendFileSync(path.join(c.etcNix, 'nix.conf'), 'max-jobs = 0\n');
      const r = await c.nixremote(['doctor']);
      assert.equal(r.exitCode, 1);
      assert.match(String(r.stdout), /max-jobs: max-jobs = 0 and no builder works/);
      assert.match(String(r.stdout), /TCP connection: 127\.0\.0\.1:\d+ refused the connection/);
      assert.match(String(r.stdout), /fix: +start sshd on the builder/);
      assert.doesNotMatch(String(r.stdout) + String(r.stderr), /\n\s+at /, 'no stack trace');
    });
  });

  test('systems the builder cannot build', async () => {
    await withRig({}, async (b, c) => {
      const args = [...initCommand(b, 'box'), '--password-stdin'];
      const refused = await c.nixremote([...args, '--systems', 'x86_64-linux,riscv64-linux'], {
        input: b.password + '\n',
      });
      assert.equal(refused.exitCode, 1);
      assert.match(String(refused.stderr), /claims riscv64-linux, but the builder's Nix builds x86_64-linux/);
      // A line edited by hand afterwards.
      const ok = await c.nixremote(args, { input: b.password + '\n' });
      assert.equal(ok.exitCode, 0, String(ok.stderr));
      const machines = path.join(c.etcNix, 'machines');
      fs.writeFileSync(
        machines,
        fs.readFileSync(machines, 'utf8').replace(/^(ssh:\/\/box )(\S+)/m, '$1x86_64-linux,riscv64-linux'),
      );
      const { code, report } = await doctorJson(c, ['--no-build']);
      assert.equal(code, 1);
      const f = firstFailure(report);
      assert.equal(f.id, 'capabilities');
      assert.match(f.summary, /claims riscv64-linux, but the builder's Nix builds x86_64-linux/);
    });
  });
});
