// `nixremote init` against real builders: real sshd, real ssh, real Nix.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Builder, Client, PROBE_EXPR, q, withRig, initCommand } from './harness.js';

const initArgs = (b: Builder, name: string, extra: string[] = []) => [
  ...initCommand(b, name),
  '--password-stdin',
  ...extra,
];

describe('init --yes against a builder reachable only by password', () => {
  let b: Builder;
  let c: Client;
  before(async () => {
    b = await Builder.create();
    c = new Client();
  });
  after(async () => {
    await b.destroy();
    c.destroy();
  });

  test('sets up root so that Nix offloads, and a second run changes nothing', async () => {
    const r = await c.nixremote(initArgs(b, 'fastbox'), { input: b.password + '\n' });
    assert.equal(r.exitCode, 0, `init failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(String(r.stdout), /fastbox is set up and a build ran on it/);
    assert.ok(
      !String(r.stdout).includes(b.password) && !String(r.stderr).includes(b.password),
      'the password was printed',
    );

    // root's ssh, strict about the host key and with no way to ask: works as the daemon's would.
    const ssh = await c.run('ssh -o BatchMode=yes -o StrictHostKeyChecking=yes fastbox nix-store --version');
    assert.equal(ssh.exitCode, 0, String(ssh.stderr));
    assert.match(String(ssh.stdout), /^nix-store \(Nix\) \d/);

    // A fresh derivation with -j0 can only be built remotely: it must land in the builder's store.
    const nonce = randomBytes(8).toString('hex');
    const build = await c.run(`nix-build --no-out-link -j0 -E ${q(PROBE_EXPR(nonce))}`);
    assert.equal(build.exitCode, 0, String(build.stderr));
    const out = String(build.stdout).trim();
    assert.match(out, /^\/nix\/store\/[a-z0-9]{32}-e2e-probe$/);
    assert.ok(b.storeHas(out), `${out} is not in the builder's store`);

    // The files say what they should.
    const machines = fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8');
    assert.match(machines, /^ssh:\/\/fastbox \S+ \/root\/\.ssh\/nix_remote \d+ \d+ \S+ - [A-Za-z0-9+/=]+$/m);
    assert.match(fs.readFileSync(path.join(c.etcNix, 'nix.conf'), 'utf8'), /^builders = @\/etc\/nix\/machines$/m);
    const key = fs.statSync(path.join(c.root, '.ssh/nix_remote'));
    assert.equal(key.mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.join(c.root, '.ssh')).mode & 0o777, 0o700);
    const config = fs.readFileSync(path.join(c.root, '.ssh/config'), 'utf8');
    assert.doesNotMatch(config, /StrictHostKeyChecking|UserKnownHostsFile/);
    assert.match(config, /HostKeyAlias fastbox/);
    assert.match(b.authorizedKeys(), /^restrict ssh-ed25519 \S+ nixremote@/m);

    // Again, identically: no file changes, the key is not appended twice.
    const before = c.snapshot();
    const keysBefore = b.authorizedKeys();
    const again = await c.nixremote(initArgs(b, 'fastbox'), { input: b.password + '\n' });
    assert.equal(again.exitCode, 0, `second init failed:\n${again.stdout}\n${again.stderr}`);
    assert.match(String(again.stdout), /already gets in/);
    assert.deepEqual(c.snapshot(), before);
    assert.equal(b.authorizedKeys(), keysBefore);
  });

  test('--dry-run changes nothing, locally or on the builder', async () => {
    const c2 = new Client();
    const b2 = await Builder.create();
    try {
      const before = c2.snapshot();
      const r = await c2.nixremote(initArgs(b2, 'drybox', ['--dry-run']), { input: b2.password + '\n' });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(String(r.stdout), /\+Host drybox/);
      assert.match(String(r.stdout), /\+builders = @\/etc\/nix\/machines/);
      assert.match(String(r.stdout), /nothing was changed/);
      assert.deepEqual(c2.snapshot(), before);
      assert.ok(
        !fs.existsSync(path.join(b2.dir, 'home/.ssh/authorized_keys')),
        'dry run wrote authorized_keys on the builder',
      );
    } finally {
      c2.destroy();
      await b2.destroy();
    }
  });
});

describe('init refuses before touching anything', () => {
  test('a wrong --host-key-fingerprint exits 2 and changes no file', async () => {
    await withRig({}, async (b, c) => {
      const before = c.snapshot();
      const wrong = 'SHA256:' + 'A'.repeat(43);
      const r = await c.nixremote(initArgs(b, 'pinned', ['--host-key-fingerprint', wrong]), {
        input: b.password + '\n',
      });
      assert.equal(r.exitCode, 2, `${r.stdout}\n${r.stderr}`);
      assert.match(
        String(r.stderr),
        new RegExp(`shows ${(await b.hostKeyFingerprint()).replace(/[+/]/g, '\\$&')}, not ${wrong}`),
      );
      assert.deepEqual(c.snapshot(), before);
    });
  });

  test('a builder whose shell prints is named, with the file to fix', async () => {
    await withRig({ bashrc: 'echo Welcome to the builder' }, async (b, c) => {
      const before = c.snapshot();
      const r = await c.nixremote(initArgs(b, 'chatty'), { input: b.password + '\n' });
      assert.equal(r.exitCode, 1, `${r.stdout}\n${r.stderr}`);
      assert.match(String(r.stderr), /the shell on chatty printed "Welcome to the builder\\n"/);
      assert.match(String(r.stderr), /~\/\.bashrc/);
      assert.deepEqual(c.snapshot(), before);
    });
  });

  test('nix-store missing from the non-interactive PATH is reported', async () => {
    await withRig({ hideNixStore: true }, async (b, c) => {
      const r = await c.nixremote(initArgs(b, 'nonix'), { input: b.password + '\n' });
      assert.equal(r.exitCode, 1, `${r.stdout}\n${r.stderr}`);
      assert.match(
        String(r.stderr),
        /nix-store \(nix-daemon for ssh-ng\) is not on the builder's non-interactive PATH/,
      );
      assert.match(String(r.stderr), /Nothing was changed/);
    });
  });

  test('a wrong password fails cleanly without a stack trace', async () => {
    await withRig({}, async (b, c) => {
      const before = c.snapshot();
      const r = await c.nixremote(initArgs(b, 'wrongpw'), { input: 'not-the-password\n' });
      assert.equal(r.exitCode, 1, `${r.stdout}\n${r.stderr}`);
      assert.match(String(r.stderr), /refused the login/);
      assert.doesNotMatch(String(r.stderr), /\n\s+at /);
      assert.deepEqual(c.snapshot(), before);
    });
  });
});

describe('init finds what a builder needs', () => {
  test('nix-store off the PATH but in the default profile: remote-program, and the build still lands', async () => {
    await withRig({ hideNixStore: true, nixStoreInProfile: true }, async (b, c) => {
      const r = await c.nixremote(initArgs(b, 'profilebox'), { input: b.password + '\n' });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(
        String(r.stdout),
        /nix-store is not on profilebox's non-interactive PATH, but is at \/nix\/var\/nix\/profiles\/default\/bin\/nix-store/,
      );
      const machines = fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8');
      assert.match(
        machines,
        /^ssh:\/\/profilebox\?remote-program=\/nix\/var\/nix\/profiles\/default\/bin\/nix-store /m,
      );
      const nonce = randomBytes(8).toString('hex');
      const build = await c.run(`nix-build --no-out-link -j0 -E ${q(PROBE_EXPR(nonce))}`);
      assert.equal(build.exitCode, 0, String(build.stderr));
      assert.ok(b.storeHas(String(build.stdout).trim()));
    });
  });

  test('a key with a passphrase is refused with the reason, exit 2', async () => {
    await withRig({}, async (b, c) => {
      const gen = await c.run(
        'mkdir -p -m 700 /root/.ssh && ssh-keygen -q -t ed25519 -N secret-phrase -f /root/.ssh/locked',
      );
      assert.equal(gen.exitCode, 0, String(gen.stderr));
      const before = c.snapshot();
      const r = await c.nixremote(initArgs(b, 'locked', ['--key', '/root/.ssh/locked']), { input: b.password + '\n' });
      assert.equal(r.exitCode, 2, `${r.stdout}\n${r.stderr}`);
      assert.match(String(r.stderr), /has a passphrase, and the nix-daemon has no terminal or agent/);
      assert.deepEqual(c.snapshot(), before);
    });
  });
});

describe('init with other ways in', () => {
  test('--copy-key ssh uses existing ssh access, only to a host showing the pinned key', async () => {
    await withRig({}, async (b, c) => {
      // root already gets in with its own key, as after ssh-copy-id.
      const gen = await c.run('ssh-keygen -q -t ed25519 -N "" -f /root/.ssh/id_ed25519');
      assert.equal(gen.exitCode, 0, String(gen.stderr));
      const sshDir = path.join(b.dir, 'home/.ssh');
      fs.mkdirSync(sshDir, { mode: 0o700 });
      fs.writeFileSync(
        path.join(sshDir, 'authorized_keys'),
        fs.readFileSync(path.join(c.root, '.ssh/id_ed25519.pub')),
        { mode: 0o600 },
      );
      await c.run(`chown -R ${b.user}: ${q(sshDir)}`);
      const r = await c.nixremote([...initCommand(b, 'viassh'), '--copy-key', 'ssh']);
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      const keys = b.authorizedKeys().trim().split('\n');
      assert.equal(keys.length, 2, 'the old line is kept and one new line added');
      assert.match(keys[1]!, /^restrict ssh-ed25519 /);
    });
  });

  test('an unmanaged Host block with the same name is refused, exit 2, nothing changed', async () => {
    await withRig({}, async (b, c) => {
      fs.mkdirSync(path.join(c.root, '.ssh'), { mode: 0o700 });
      fs.writeFileSync(path.join(c.root, '.ssh/config'), 'Host mine\n  User someone\n', { mode: 0o600 });
      const before = c.snapshot();
      const r = await c.nixremote(initArgs(b, 'mine'), { input: b.password + '\n' });
      assert.equal(r.exitCode, 2, `${r.stdout}\n${r.stderr}`);
      assert.match(String(r.stderr), /line 1 already has its own "Host mine"/);
      assert.deepEqual(c.snapshot(), before);
    });
  });
});

describe('init --target nixos', () => {
  test('writes a module that evaluates without nixpkgs and proves the builder with --builders', async () => {
    await withRig({}, async (b, c) => {
      const out = path.join(c.root, 'nixremote.nix');
      const r = await c.nixremote(initArgs(b, 'nixosbox', ['--target', 'nixos', '--output', '/root/nixremote.nix']), {
        input: b.password + '\n',
      });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(String(r.stdout), /nixos-rebuild switch/);
      assert.ok(
        !fs.readFileSync(path.join(c.etcNix, 'nix.conf'), 'utf8').includes('builders'),
        'nix.conf was edited for --target nixos',
      );
      const ev = await c.run(
        `nix-instantiate --eval --strict --json -E ${q('let m = import /root/nixremote.nix; in { d = m.nix.distributedBuilds; b = builtins.head (builtins.head m.imports).nix.buildMachines; }')}`,
      );
      assert.equal(ev.exitCode, 0, String(ev.stderr));
      const v = JSON.parse(String(ev.stdout));
      assert.equal(v.d, true);
      assert.equal(v.b.hostName, 'nixosbox');
      assert.equal(v.b.sshUser, b.user);
      assert.equal(v.b.sshKey, '/root/.ssh/nix_remote');
      assert.ok(fs.existsSync(out));
      // What the module system would make of the ssh options: extraConfig is of type lines,
      // merged by joining with newlines; knownHosts pins the key under the alias.
      const ssh = await c.run(
        `nix-instantiate --eval --strict --json -E ${q('let ms = (import /root/nixremote.nix).imports; in { config = builtins.concatStringsSep "\n" (map (m: m.programs.ssh.extraConfig) ms); known = map (m: m.programs.ssh.knownHosts) ms; }')}`,
      );
      assert.equal(ssh.exitCode, 0, String(ssh.stderr));
      const m = JSON.parse(String(ssh.stdout)) as {
        config: string;
        known: Record<string, { hostNames: string[]; publicKey: string }>[];
      };
      assert.deepEqual(m.known[0]!.nixosbox!.hostNames, ['nixosbox']);
      assert.match(m.known[0]!.nixosbox!.publicKey, /^ssh-ed25519 /);
      // The Host block in it, read by ssh itself, as /etc/ssh/ssh_config would be.
      const sshConfig = path.join(path.dirname(c.root), 'ssh_config');
      fs.writeFileSync(sshConfig, m.config);
      const g = await execa('ssh', ['-G', '-F', sshConfig, 'nixosbox'], { reject: false });
      assert.equal(g.exitCode, 0, String(g.stderr));
      for (const want of [
        'hostname 127.0.0.1',
        `port ${b.port}`,
        `user ${b.user}`,
        'hostkeyalias nixosbox',
        'identitiesonly yes',
        'controlmaster false',
      ]) {
        assert.match(String(g.stdout), new RegExp(`^${want}$`, 'm'));
      }

      // Nothing depends on root's own ssh files: with them gone, the files the module
      // renders once merged with a user's configuration (test/fixtures/modules/eval.nix)
      // are all the build hook has, and a build still offloads.
      fs.writeFileSync(
        path.join(c.root, 'configuration.nix'),
        '{ imports = [ ./nixremote.nix ]; nix.buildMachines = [ { hostName = "arm.example.org"; systems = [ "aarch64-linux" ]; } ]; }\n',
      );
      const rendered = await c.run(
        `nix-instantiate --eval --strict --json -E ${q(`(import ${path.resolve('test/fixtures/modules/eval.nix')} { modules = [ /root/configuration.nix ]; }).files`)}`,
      );
      assert.equal(rendered.exitCode, 0, String(rendered.stderr));
      const files = JSON.parse(String(rendered.stdout)) as Record<string, string>;
      fs.rmSync(path.join(c.root, '.ssh/config'));
      fs.rmSync(path.join(c.root, '.ssh/known_hosts'));
      fs.writeFileSync(path.join(c.etcNix, 'machines'), files.machines!);
      fs.appendFileSync(path.join(c.etcNix, 'nix.conf'), files['nix.conf']!);
      for (const f of ['ssh_config', 'ssh_known_hosts']) fs.writeFileSync(path.join(c.root, f), files[f]!);
      const build = await c.run(
        `mount -t tmpfs tmpfs /etc/ssh && cp /root/ssh_config /root/ssh_known_hosts /etc/ssh/ && nix-build --no-out-link -j0 -E ${q(PROBE_EXPR(randomBytes(8).toString('hex')))}`,
      );
      assert.equal(build.exitCode, 0, `${String(build.stderr)}\n${files.machines}`);
      assert.ok(b.storeHas(String(build.stdout).trim()), 'the build did not land on the builder');
    });
  });
});

describe('init --target nix-darwin', () => {
  test('writes the same options as a nix-darwin module, to apply with darwin-rebuild', async () => {
    await withRig({}, async (b, c) => {
      const r = await c.nixremote(initArgs(b, 'macbox', ['--target', 'nix-darwin', '--output', '/root/darwin.nix']), {
        input: b.password + '\n',
      });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(
        String(r.stdout),
        /add \.\/darwin\.nix to imports in your nix-darwin configuration and run darwin-rebuild switch/,
      );
      assert.match(String(r.stdout), /macbox is set up and a build ran on it/);
      const text = fs.readFileSync(path.join(c.root, 'darwin.nix'), 'utf8');
      assert.match(text, /^# Add it to your nix-darwin configuration, then run darwin-rebuild switch:$/m);
      const ev = await c.run(
        `nix-instantiate --eval --strict --json -E ${q('let m = import /root/darwin.nix; i = builtins.head m.imports; in { d = m.nix.distributedBuilds; b = builtins.head i.nix.buildMachines; k = i.programs.ssh.knownHosts.macbox.hostNames; }')}`,
      );
      assert.equal(ev.exitCode, 0, String(ev.stderr));
      const v = JSON.parse(String(ev.stdout));
      assert.deepEqual([v.d, v.b.hostName, v.b.sshUser, v.k], [true, 'macbox', b.user, ['macbox']]);
      // remove knows it by the module's own words.
      const rm = await c.nixremote(['remove', 'macbox', '--yes', '--module', '/root/darwin.nix']);
      assert.equal(rm.exitCode, 0, `${rm.stdout}\n${rm.stderr}`);
      assert.match(String(rm.stdout), /Then run darwin-rebuild switch: darwin\.nix no longer lists macbox/);
      assert.doesNotMatch(fs.readFileSync(path.join(c.root, 'darwin.nix'), 'utf8'), /macbox/);
    });
  });
});

describe('init --protocol ssh-ng', () => {
  test("a build offloads over the builder's nix-daemon protocol, and doctor passes", async () => {
    await withRig({}, async (b, c) => {
      const r = await c.nixremote(initArgs(b, 'ngbox', ['--protocol', 'ssh-ng']), { input: b.password + '\n' });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(String(r.stdout), /nix-daemon on the non-interactive PATH: /);
      const built = /(\/nix\/store\/\S+-nixremote-probe) was built on ngbox/.exec(String(r.stdout));
      assert.ok(built && b.storeHas(built[1]!), String(r.stdout));
      assert.match(fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8'), /^ssh-ng:\/\/ngbox /m);
      const nonce = randomBytes(8).toString('hex');
      const build = await c.run(`nix-build --no-out-link -j0 -E ${q(PROBE_EXPR(nonce))}`);
      assert.equal(build.exitCode, 0, String(build.stderr));
      assert.ok(b.storeHas(String(build.stdout).trim()));
      const d = await c.nixremote(['doctor', '--json', '--no-build']);
      assert.equal(d.exitCode, 0, String(d.stdout));
    });
  });

  test("a user the builder's daemon does not trust: the fix, exit 1, nothing written anywhere", async () => {
    await withRig({ untrusted: true }, async (b, c) => {
      const before = c.snapshot();
      const r = await c.nixremote(initArgs(b, 'ngbox', ['--protocol', 'ssh-ng']), { input: b.password + '\n' });
      assert.equal(r.exitCode, 1);
      assert.match(
        String(r.stderr),
        /is not in the builder's trusted-users \(root\).*add "trusted-users = root nixremote-e2e"/,
      );
      assert.deepEqual(c.snapshot(), before);
      assert.ok(!fs.existsSync(path.join(b.dir, 'home/.ssh/authorized_keys')), 'the key went onto the builder');
    });
  });
});

describe('init on Determinate Nix', () => {
  test('settings go to nix.custom.conf, nix.conf stays byte for byte, and builds offload', async () => {
    await withRig({}, async (b, c) => {
      // /etc/nix as Determinate's installer leaves it: its own nix.conf including nix.custom.conf.
      const nixConf = path.join(c.etcNix, 'nix.conf');
      const determinate = `# DETERMINATE NIX CONFIG\n# do not modify! this file will be replaced!\n# user modification can go in nix.custom.conf\n!include nix.custom.conf\n${fs.readFileSync(nixConf, 'utf8')}`;
      fs.writeFileSync(nixConf, determinate);
      const r = await c.nixremote(initArgs(b, 'detbox'), { input: b.password + '\n' });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(
        String(r.stdout),
        /Nix config: determinate \(\/etc\/nix\/nix\.conf begins "# DETERMINATE NIX CONFIG"\)/,
      );
      assert.equal(fs.readFileSync(nixConf, 'utf8'), determinate);
      assert.match(
        fs.readFileSync(path.join(c.etcNix, 'nix.custom.conf'), 'utf8'),
        /^builders = @\/etc\/nix\/machines$/m,
      );
      const build = await c.run(`nix-build --no-out-link -j0 -E ${q(PROBE_EXPR(randomBytes(8).toString('hex')))}`);
      assert.equal(build.exitCode, 0, String(build.stderr));
      assert.ok(b.storeHas(String(build.stdout).trim()));
      const list = JSON.parse(String((await c.nixremote(['list', '--json'])).stdout)).builders as {
        name: string;
        source: string;
      }[];
      assert.deepEqual(
        list.map((x) => [x.name, x.source]),
        [['detbox', '/etc/nix/machines:2']],
      );
    });
  });
});
