// What nixremote promises about the files it touches (README, "Safety"), tested for real:
// bad input changes nothing, a run killed at any step leaves each file old or new, a
// builder that drops mid-apply is rolled back, two runs do not interleave, and the
// password appears nowhere.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { type Builder, Client, freePort, withRig, initCommand, waitForOutput, writtenFiles } from './harness.js';

const base = (b: Builder, name = 'safe') => [...initCommand(b, name), '--password-stdin'];
const withFlag = (args: string[], flag: string, value: string) => {
  const i = args.indexOf(flag);
  const out = [...args];
  out[i + 1] = value;
  return out;
};

describe('bad input: exit 2, a clear message, and nothing changed', () => {
  test('the table', async () => {
    await withRig({}, async (b, c) => {
      const pwned = `/tmp/nixremote-pwned-${process.pid}`;
      // A port that answers, but not as sshd.
      const notSsh = net.createServer((sock) => sock.end('HTTP/1.0 400 Bad Request\r\n\r\n'));
      const notSshPort = await freePort();
      await new Promise<void>((r) => notSsh.listen(notSshPort, '127.0.0.1', r));
      const args = base(b);
      const cases: [string, string[], RegExp][] = [
        ['host with a space', withFlag(args, '--host', 'a b'), /--host: the host "a b" contains " "/],
        ['host with a newline', withFlag(args, '--host', 'a\nb'), /contains "\\n"/],
        ['host with a quote', withFlag(args, '--host', "a'b"), /contains "'"/],
        ['host with #', withFlag(args, '--host', 'a#b'), /contains "#"/],
        ['host with a % token', withFlag(args, '--host', '%h'), /contains "%"/],
        [
          'host as an ssh option',
          withFlag(args, '--host', `-oProxyCommand=touch ${pwned}`),
          /starts with '-', which ssh would read as an option/,
        ],
        ['user with a space', withFlag(args, '--user', 'a b'), /--user: .* contains " "/],
        ['user as an option', withFlag(args, '--user', '-lroot'), /--user: .*starts with '-'/],
        ['alias with a quote', withFlag(args, '--name', 'a"b'), /--name: .* contains/],
        ['alias with capitals', withFlag(args, '--name', 'Fast'), /lower-case/],
        ['alias with %', withFlag(args, '--name', 'a%n'), /contains "%"/],
        ['port 0', withFlag(args, '--port', '0'), /--port: 0 is out of range/],
        ['port 65536', withFlag(args, '--port', '65536'), /--port: 65536 is out of range/],
        ['port 22abc', withFlag(args, '--port', '22abc'), /--port: '22abc' is not a port number/],
        ['key in the Nix store', [...args, '--key', '/nix/store/abc-key'], /is in \/nix\/store/],
        ['key path with a quote', [...args, '--key', '/root/.ssh/a"b'], /--key: .* contains a quote/],
        [
          'a fingerprint that does not match',
          [...args, '--host-key-fingerprint', `SHA256:${'A'.repeat(43)}`],
          /--host-key-fingerprint: 127\.0\.0\.1:\d+ shows SHA256:/,
        ],
        ['a malformed fingerprint', [...args, '--host-key-fingerprint', 'MD5:00'], /not a SHA256 fingerprint/],
        ['something other than sshd', withFlag(args, '--port', String(notSshPort)), /did not answer as an SSH server/],
      ];
      try {
        const before = c.snapshot();
        for (const [what, argv, re] of cases) {
          const r = await c.nixremote(argv, { input: b.password + '\n' });
          assert.equal(r.exitCode, 2, `${what}: exit ${r.exitCode}\n${r.stdout}\n${r.stderr}`);
          assert.match(String(r.stderr), re, what);
          assert.doesNotMatch(String(r.stderr), /\n\s+at /, `${what}: stack trace`);
          assert.deepEqual(c.snapshot(), before, `${what}: a file changed`);
          assert.ok(!fs.existsSync(path.join(b.dir, 'home/.ssh')), `${what}: the builder was changed`);
        }
        assert.ok(!fs.existsSync(pwned), 'the ProxyCommand ran');
        // An existing unmanaged Host with that name, and a config others may write.
        fs.mkdirSync(path.join(c.root, '.ssh'), { mode: 0o700 });
        fs.writeFileSync(path.join(c.root, '.ssh/config'), 'Host safe\n\tUser me\r\n', { mode: 0o600 });
        let snap = c.snapshot();
        let r = await c.nixremote(args, { input: b.password + '\n' });
        assert.equal(r.exitCode, 2);
        assert.match(String(r.stderr), /already has its own "Host safe"/);
        assert.deepEqual(c.snapshot(), snap);
        fs.writeFileSync(path.join(c.root, '.ssh/config'), 'Host other\n', { mode: 0o600 });
        fs.chmodSync(path.join(c.root, '.ssh/config'), 0o664);
        snap = c.snapshot();
        r = await c.nixremote(args, { input: b.password + '\n' });
        assert.equal(r.exitCode, 2);
        assert.match(String(r.stderr), /Bad owner or permissions on \/root\/\.ssh\/config/);
        assert.deepEqual(c.snapshot(), snap);
        // A ~/.ssh that belongs to someone else.
        fs.chmodSync(path.join(c.root, '.ssh/config'), 0o600);
        fs.chownSync(path.join(c.root, '.ssh'), 12345, 12345);
        snap = c.snapshot();
        r = await c.nixremote(args, { input: b.password + '\n' });
        assert.equal(r.exitCode, 2);
        assert.match(
          String(r.stderr),
          /\/root\/\.ssh is owned by uid 12345, not the build user \(uid 0\); ssh refuses its files/,
        );
        assert.deepEqual(c.snapshot(), snap);
        fs.chownSync(path.join(c.root, '.ssh'), 0, 0);
        // nix.conf managed declaratively: a link into the Nix store (as NixOS makes it).
        const stored = String(
          (
            await c.run(
              'printf "sandbox = false\\nsubstituters =\\n" > /tmp/nixremote-conf-$$ && nix-store --add /tmp/nixremote-conf-$$; rm -f /tmp/nixremote-conf-$$',
            )
          ).stdout,
        ).trim();
        assert.match(stored, /^\/nix\/store\//);
        fs.rmSync(path.join(c.etcNix, 'nix.conf'));
        fs.symlinkSync(stored, path.join(c.etcNix, 'nix.conf'));
        snap = c.snapshot();
        r = await c.nixremote(args, { input: b.password + '\n' });
        assert.equal(r.exitCode, 2, `${r.stdout}\n${r.stderr}`);
        assert.match(String(r.stderr), /\/etc\/nix\/nix\.conf is a link into the Nix store .*use --target nixos/);
        assert.deepEqual(c.snapshot(), snap);
        assert.ok(!fs.existsSync(path.join(b.dir, 'home/.ssh')), 'the builder was changed');
      } finally {
        notSsh.close();
      }
    });
  });

  test('a key path with spaces is quoted in ssh_config and left out of the machine line', async () => {
    await withRig({}, async (b, c) => {
      const r = await c.nixremote([...base(b, 'spaced'), '--key', '/root/my keys/nix remote'], {
        input: b.password + '\n',
      });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(
        fs.readFileSync(path.join(c.root, '.ssh/config'), 'utf8'),
        /IdentityFile "\/root\/my keys\/nix remote"/,
      );
      assert.match(fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8'), /^ssh:\/\/spaced \S+ - /m);
      const d = await c.nixremote(['doctor', 'spaced']);
      assert.equal(d.exitCode, 0, `${d.stdout}\n${d.stderr}`);
    });
  });
});

/** The files an apply writes, as text (null: absent). */
const files = writtenFiles;

describe('faults lose nothing', () => {
  test('SIGKILL at each step of a real apply leaves every file old or new, and the next run finishes', async () => {
    await withRig({}, async (b, ref) => {
      // What a whole run writes, to compare against.
      const done = await ref.nixremote(base(b, 'killme'), { input: b.password + '\n' });
      assert.equal(done.exitCode, 0, String(done.stderr));
      const planned = files(ref);
      const steps = [
        'Make the key',
        'Pin killme',
        'Host block',
        'Add the key',
        'Check: ssh',
        'Machine line',
        'builders in nix.conf',
        'Prove it',
      ];
      for (const step of steps) {
        const c = new Client();
        try {
          const before = files(c);
          const chunks: string[] = [];
          const p = c.nixremote(base(b, 'killme'), {
            input: b.password + '\n',
            env: { NO_COLOR: '1', NIXREMOTE_TEST_STEP_DELAY_MS: '400' },
          });
          p.stdout?.on('data', (d: Buffer) => chunks.push(d.toString()));
          assert.ok(
            await waitForOutput(chunks, new RegExp(`\\n- ${step}`), 60_000),
            `never reached "${step}":\n${chunks.join('')}`,
          );
          p.kill('SIGKILL');
          await p;
          const now = files(c);
          for (const [f, text] of Object.entries(now)) {
            assert.ok(
              text === before[f] || text === planned[f],
              `killed at "${step}": ${f} is neither as before nor as planned:\n${text}`,
            );
          }
          const key = path.join(c.root, '.ssh/nix_remote');
          if (fs.existsSync(key)) {
            const check = await c.run('ssh-keygen -y -P "" -f /root/.ssh/nix_remote');
            assert.equal(check.exitCode, 0, `killed at "${step}": the key is not whole`);
            assert.equal(
              String(check.stdout).trim().split(' ').slice(0, 2).join(' '),
              fs.readFileSync(`${key}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' '),
            );
          }
          // The killed run's lock is stale; the next run takes it over and finishes.
          if (step === 'Machine line') {
            const again = await c.nixremote(base(b, 'killme'), { input: b.password + '\n' });
            assert.equal(again.exitCode, 0, `after a kill at "${step}":\n${again.stdout}\n${again.stderr}`);
            assert.deepEqual(files(c), planned);
          }
        } finally {
          c.destroy();
        }
      }
    });
  });

  test('a builder that drops between the checks and the apply: rolled back, nothing half-done', async () => {
    await withRig({}, async (b, c) => {
      const before = c.snapshot();
      const chunks: string[] = [];
      const p = c.nixremote(base(b), {
        input: b.password + '\n',
        env: { NO_COLOR: '1', NIXREMOTE_TEST_STEP_DELAY_MS: '500' },
      });
      p.stdout?.on('data', (d: Buffer) => chunks.push(d.toString()));
      assert.ok(await waitForOutput(chunks, /\n- Make the key/, 60_000), chunks.join(''));
      await b.kill();
      const r = await p;
      assert.equal(r.exitCode, 1, `${r.stdout}\n${r.stderr}`);
      assert.match(String(r.stderr), /put back as they were: .*\/root\/\.ssh\/config/);
      // Only the new key remains (harmless, and reused by the next run); every edited file is as before.
      const after = c.snapshot();
      for (const [k, v] of before) assert.equal(after.get(k), v, `${k} changed`);
      const added = [...after.keys()].filter((k) => !before.has(k)).map((k) => k.split(':').pop());
      assert.deepEqual(added.sort(), ['.ssh/', '.ssh/nix_remote', '.ssh/nix_remote.pub'].sort());
    });
  });
});

describe('runs at once', () => {
  test('two inits at once on one machine: the second waits for the first, both succeed, nothing doubled', async () => {
    await withRig({}, async (b, c) => {
      const [r1, r2] = await Promise.all([
        c.nixremote(base(b, 'twice'), { input: b.password + '\n' }),
        c.nixremote(base(b, 'twice'), { input: b.password + '\n' }),
      ]);
      assert.equal(r1.exitCode, 0, `${r1.stdout}\n${r1.stderr}`);
      assert.equal(r2.exitCode, 0, `${r2.stdout}\n${r2.stderr}`);
      assert.match(String(r1.stdout) + String(r2.stdout), /Waiting for another nixremote \(pid \d+\) to finish/);
      const f = files(c);
      assert.equal(f.config!.split('Host twice').length - 1, 1);
      assert.equal(f.machines!.split('ssh://twice').length - 1, 1);
      assert.equal(b.authorizedKeys().trim().split('\n').length, 1);
    });
  });

  test('a second run that cannot wait says who holds the lock', async () => {
    await withRig({}, async (b, c) => {
      const first = c.nixremote(base(b, 'held'), {
        input: b.password + '\n',
        env: { NO_COLOR: '1', NIXREMOTE_TEST_STEP_DELAY_MS: '300' },
      });
      await new Promise((r) => setTimeout(r, 1500));
      const second = await c.nixremote(base(b, 'held'), {
        input: b.password + '\n',
        env: { NO_COLOR: '1', NIXREMOTE_LOCK_WAIT_MS: '200' },
      });
      assert.equal(second.exitCode, 1, `${second.stdout}\n${second.stderr}`);
      assert.match(
        String(second.stderr),
        /another nixremote is changing these files \(pid \d+, nixremote init, since /,
      );
      assert.equal((await first).exitCode, 0);
    });
  });

  test('two machines adding their keys to one builder at once: both lines, once each, nothing truncated', async () => {
    await withRig({}, async (b, c1) => {
      const c2 = new Client();
      try {
        fs.mkdirSync(path.join(b.dir, 'home/.ssh'), { mode: 0o700 });
        fs.writeFileSync(
          path.join(b.dir, 'home/.ssh/authorized_keys'),
          'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIScm/rGDiGdXRmh2QFm9Bpfj9CEahqNcCFZQH2PL8dS existing',
          { mode: 0o600 },
        );
        await c1.run(`chown -R --reference=${b.dir}/home ${b.dir}/home/.ssh`);
        // A store in use, as a builder's is: Nix 2.8 opening a brand-new store from two
        // logins at once races on its gcroots link ("creating symlink ... File exists").
        fs.mkdirSync(path.join(b.dir, 'nix/var/nix/gcroots'), { recursive: true });
        fs.mkdirSync(path.join(b.dir, 'nix/var/nix/profiles'), { recursive: true });
        fs.symlinkSync('/nix/var/nix/profiles', path.join(b.dir, 'nix/var/nix/gcroots/profiles'));
        await c1.run(`chown -R --reference=${b.dir}/home ${b.dir}/nix`);
        const [r1, r2] = await Promise.all([
          c1.nixremote(base(b, 'one'), { input: b.password + '\n' }),
          c2.nixremote(base(b, 'two'), { input: b.password + '\n' }),
        ]);
        assert.equal(r1.exitCode, 0, String(r1.stderr));
        assert.equal(r2.exitCode, 0, String(r2.stderr));
        const lines = b.authorizedKeys().split('\n').filter(Boolean);
        assert.equal(lines.length, 3, b.authorizedKeys());
        assert.match(lines[0]!, / existing$/);
        assert.equal(new Set(lines).size, 3);
      } finally {
        c2.destroy();
      }
    });
  });
});

describe('secrets', () => {
  test('the password is in no argument list, environment, output, log or file', async () => {
    await withRig({}, async (b, c) => {
      const seen: string[] = [];
      let watching = true;
      const pw = Buffer.from(b.password);
      const watch = (async () => {
        while (watching) {
          for (const d of fs.readdirSync('/proc')) {
            if (!/^\d+$/.test(d)) continue;
            for (const f of ['cmdline', 'environ']) {
              try {
                if (fs.readFileSync(`/proc/${d}/${f}`).includes(pw)) seen.push(`/proc/${d}/${f}`);
              } catch {
                // gone, or not ours to read
              }
            }
          }
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      const r = await c.nixremote([...base(b, 'secret'), '--verbose'], { input: b.password + '\n' });
      const d = await c.nixremote(['doctor', '--verbose']);
      watching = false;
      await watch;
      assert.equal(r.exitCode, 0, String(r.stderr));
      assert.equal(d.exitCode, 0, String(d.stdout));
      assert.deepEqual(seen, []);
      for (const out of [r.stdout, r.stderr, d.stdout, d.stderr])
        assert.ok(!String(out).includes(b.password), 'printed');
      const grep = await c.run(
        `grep -rlF -- ${JSON.stringify(b.password)} /root /etc/nix ${b.dir}/home ${b.dir}/sshd.log || true`,
      );
      assert.equal(String(grep.stdout).trim(), '', 'written to a file');
      // And a wrong password in an error message is not echoed either.
      const wrong = await c.nixremote([...base(b, 'secret2'), '--key', '/root/.ssh/another'], {
        input: 'Wrong-Secret-77\n',
      });
      assert.equal(wrong.exitCode, 1);
      assert.match(String(wrong.stderr), /refused the login/);
      assert.ok(!(String(wrong.stdout) + String(wrong.stderr)).includes('Wrong-Secret-77'));
    });
  });
});
