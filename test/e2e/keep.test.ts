// (Names of their own: this machine's client shares current-load/, the slot locks, with the
// other tests.)
// A builder that is down costs nothing once the keeper has taken it out, for real: three
// builders, the fastest of them gone quiet the way machines really go (a port that takes
// TCP and never speaks SSH, so ssh waits its ConnectTimeout), a chain of derivations built
// with -j0. Without the keeper every derivation's build hook tries the dead one first; after
// a `keep` round none does, and every derivation lands on a live builder. The dead one back:
// the next round puts it back and a build lands on it. A builder disabled by hand, and a
// line of the user's, are never touched.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Builder, CLI, Client, initCommand, q } from './harness.js';
import { Tarpit } from './fleet.js';

const chain = (nonce: string) => `let
  mk = name: dep: derivation { inherit name dep; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "echo \${name} > $out" ]; nonce = "${nonce}"; };
  c1 = mk "k1" "";
  c2 = mk "k2" c1;
in mk "k3" c2`;

/** The builder Nix named for each derivation it sent away. */
const sentTo = (log: string) =>
  [...log.matchAll(/building '[^']+\.drv' on 'ssh:\/\/(?:[^'@/]+@)?([^'/]+)'/g)].map((m) => m[1]!);

/** Builders made and set up by init, one job each at these speed factors; `quick` gets a 3 s connect timeout. */
async function initBuilders(
  c: Client,
  made: Builder[],
  specs: [string, string][],
  quick: string,
  extra: string[],
): Promise<Map<string, Builder>> {
  const by = new Map<string, Builder>();
  for (const [name, speed] of specs) {
    const b = await Builder.create();
    made.push(b);
    by.set(name, b);
    const timeout = name === quick ? ['--connect-timeout', '3'] : [];
    const r = await c.nixremote(
      [
        ...initCommand(b, name),
        ...extra,
        '--speed-factor',
        speed,
        '--max-jobs',
        '1',
        ...timeout,
        '--no-test-build',
        '--password-stdin',
      ],
      { input: `${b.password}\n` },
    );
    assert.equal(r.exitCode, 0, `init ${name}:\n${r.stdout}\n${r.stderr}`);
  }
  return by;
}

describe('keep: dead builders out of use, and back', () => {
  test('a quiet builder costs every derivation a connection until keep takes it out; back, it is put back', {
    timeout: 600_000,
  }, async () => {
    const made: Builder[] = [];
    const c = new Client();
    let tarpit: Tarpit | null = null;
    try {
      const specs: [string, string][] = [
        ['kslow', '1'],
        ['kmid', '2'],
        ['kfast', '8'],
      ];
      // fast gets a short --connect-timeout: the build hook waits that long for it.
      const by = await initBuilders(c, made, specs, 'kfast', []);
      const machines = path.join(c.etcNix, 'machines');
      const config = fs.readFileSync(path.join(c.root, '.ssh/config'), 'utf8');
      assert.match(config, /Host kfast\n(?: {2}.*\n)*? {2}ConnectTimeout 3\n/);
      assert.match(config, /Host kmid\n(?: {2}.*\n)*? {2}ConnectTimeout 10\n/);
      const build = (tag: string) => c.run(`nix-build -j0 --no-out-link -E ${q(chain(`${tag}-${Date.now()}`))}`);

      // fast goes quiet: its sshd stops and its port takes TCP and says nothing.
      const fast = by.get('kfast')!;
      await fast.stop();
      tarpit = await Tarpit.start(fast.port);
      const before = await build('before');
      assert.equal(before.exitCode, 0, String(before.stderr));
      assert.deepEqual(sentTo(String(before.stderr)), ['kmid', 'kmid', 'kmid'], String(before.stderr));
      assert.equal(tarpit.accepted, 3, 'each derivation tried the quiet builder first');

      // One round: fast is taken out, and nothing else changes.
      const text = fs.readFileSync(machines, 'utf8');
      const round = await c.nixremote(['keep']);
      assert.equal(round.exitCode, 1, `${round.stdout}\n${round.stderr}`);
      assert.match(String(round.stdout), /^keep: disabled kfast: .+$/m);
      assert.doesNotMatch(String(round.stdout), /kslow|kmid/);
      const after = fs.readFileSync(machines, 'utf8');
      const outside = (t: string) =>
        t.replace(/# BEGIN nixremote builder kfast[\s\S]*?# END nixremote builder kfast\n/, '');
      assert.equal(outside(after), outside(text), 'only fast block changed');
      const listed = JSON.parse(String((await c.nixremote(['list', '--json'])).stdout)).builders;
      assert.equal(listed.find((b: { name: string }) => b.name === 'kfast').disabled.by, 'keep');
      const st = JSON.parse(String((await c.nixremote(['status', '--json'])).stdout)).builders;
      assert.equal(st.find((b: { name: string }) => b.name === 'kfast').state, 'disabled');

      tarpit.accepted = 0;
      const out = await build('after');
      assert.equal(out.exitCode, 0, String(out.stderr));
      assert.deepEqual(sentTo(String(out.stderr)), ['kmid', 'kmid', 'kmid']);
      assert.equal(tarpit.accepted, 0, 'no derivation tried the builder the keeper took out');

      // A builder disabled by hand, and a line of the user's own, are the user's.
      const own = 'ssh://handmade.invalid x86_64-linux - 1 1\n';
      fs.appendFileSync(machines, own);
      const hand = await c.nixremote(['disable', 'kslow', '--why', 'maintenance']);
      assert.equal(hand.exitCode, 0, `${hand.stdout}\n${hand.stderr}`);

      // fast comes back: two rounds at once (the lock) put it back once, and leave slow out.
      await tarpit.stop();
      tarpit = null;
      await fast.start();
      const [r1, r2] = await Promise.all([c.nixremote(['keep']), c.nixremote(['keep'])]);
      const both = `${r1.stdout}\n${r2.stdout}`;
      assert.equal((both.match(/^keep: enabled kfast: it answers again$/gm) ?? []).length, 1, both);
      assert.doesNotMatch(both, /kslow/);
      const now = fs.readFileSync(machines, 'utf8');
      assert.ok(now.endsWith(own), 'the user line is untouched');
      assert.match(now, /^# nixremote: disabled by user at \S+: maintenance$/m);
      assert.match(now, /^ssh:\/\/kfast /m);
      const back = await build('back');
      assert.equal(back.exitCode, 0, String(back.stderr));
      assert.deepEqual(sentTo(String(back.stderr)), ['kfast', 'kfast', 'kfast']);
      // The service that runs it, as a plan (a dry run: this machine's /etc/systemd is not the test's).
      const svc = await c.nixremote(['keep', '--install', '--interval', '30', '--dry-run']);
      assert.equal(svc.exitCode, 0, String(svc.stderr));
      assert.match(String(svc.stdout), /\+OnUnitActiveSec=30\n/);
      assert.match(String(svc.stdout), /\+ExecStart=\S+node \S+nixremote keep\n/);
      assert.match(String(svc.stdout), /Dry run: nothing was changed/);
      const en = await c.nixremote(['enable', 'kslow']);
      assert.equal(en.exitCode, 0, String(en.stderr));
      assert.match(fs.readFileSync(machines, 'utf8'), /^ssh:\/\/kslow /m);
    } finally {
      await tarpit?.stop();
      c.destroy();
      for (const b of made) await b.destroy();
    }
  });

  test('NixOS: the keeper in the module writes the live machines file the configuration points Nix at', {
    timeout: 600_000,
  }, async () => {
    const made: Builder[] = [];
    const c = new Client();
    let tarpit: Tarpit | null = null;
    try {
      const by = await initBuilders(
        c,
        made,
        [
          ['nlmid', '2'],
          ['nlfast', '8'],
        ],
        'nlfast',
        ['--target', 'nixos', '--output', '/root/nixremote.nix'],
      );
      const mod = path.join(c.root, 'nixremote.nix');
      const plain = fs.readFileSync(mod, 'utf8');
      const inst = await c.nixremote([
        'keep',
        '--install',
        '--target',
        'nixos',
        '--module',
        '/root/nixremote.nix',
        '--interval',
        '30',
      ]);
      assert.equal(inst.exitCode, 0, `${inst.stdout}\n${inst.stderr}`);
      assert.match(String(inst.stdout), /Then run nixos-rebuild switch: it starts the keeper/);

      // The switch, by the module stand-in: what the configuration renders is all Nix and
      // ssh have (root's own ssh files gone), with a builder of the user's own beside ours.
      fs.writeFileSync(
        path.join(c.root, 'configuration.nix'),
        '{ imports = [ ./nixremote.nix ]; nix.buildMachines = [ { hostName = "handmade.invalid"; systems = [ "x86_64-linux" ]; } ]; }\n',
      );
      const rendered = await c.run(
        `nix-instantiate --eval --strict --json -E ${q(`(import ${path.resolve('test/fixtures/modules/eval.nix')} { modules = [ /root/configuration.nix ]; }).files`)}`,
      );
      assert.equal(rendered.exitCode, 0, String(rendered.stderr));
      const files = JSON.parse(String(rendered.stdout)) as Record<string, string> & {
        systemd: Record<string, string>;
      };
      assert.match(files['nix.conf']!, /^builders = @\/var\/lib\/nixremote\/machines$/m);
      fs.rmSync(path.join(c.root, '.ssh/config'));
      fs.rmSync(path.join(c.root, '.ssh/known_hosts'));
      fs.writeFileSync(path.join(c.etcNix, 'machines'), files.machines!);
      fs.appendFileSync(path.join(c.etcNix, 'nix.conf'), files['nix.conf']!);
      for (const f of ['ssh_config', 'ssh_known_hosts']) fs.writeFileSync(path.join(c.root, f), files[f]!);
      // The service's own command, as the unit runs it; /var/lib is the test's.
      const exec = /^ExecStart=(.+)$/m.exec(files.systemd['nixremote-keep.service']!)![1]!;
      assert.match(exec, / keep --live \/var\/lib\/nixremote\/machines --module \/root\/nixremote\.nix$/);
      const varLib = path.join(path.dirname(c.root), 'var-lib');
      fs.mkdirSync(varLib);
      const onNixos = (cmd: string) =>
        c.run(
          `mount -t tmpfs tmpfs /etc/ssh && cp /root/ssh_config /root/ssh_known_hosts /etc/ssh/ && mount --bind ${varLib} /var/lib && ${cmd}`,
        );
      const liveFile = path.join(varLib, 'nixremote/machines');
      const build = (tag: string) => onNixos(`nix-build -j0 --no-out-link -E ${q(chain(`${tag}-${Date.now()}`))}`);

      // The first round writes the live file: every line of the configuration's, nothing out.
      const first = await onNixos(exec);
      assert.equal(first.exitCode, 0, `${first.stdout}\n${first.stderr}`);
      const header = (t: string) => t.split('\n').slice(2).join('\n');
      assert.equal(header(fs.readFileSync(liveFile, 'utf8')), files.machines);
      const ok = await build('up');
      assert.equal(ok.exitCode, 0, String(ok.stderr));
      assert.deepEqual(sentTo(String(ok.stderr)), ['nlfast', 'nlfast', 'nlfast']);

      // fast goes quiet: the next round takes it out of the live file, and only it.
      const fast = by.get('nlfast')!;
      await fast.stop();
      tarpit = await Tarpit.start(fast.port);
      const round = await onNixos(exec);
      assert.equal(round.exitCode, 1, `${round.stdout}\n${round.stderr}`);
      assert.match(String(round.stdout), /^keep: disabled nlfast: .+$/m);
      assert.doesNotMatch(String(round.stdout), /nlmid|handmade/);
      const live = fs.readFileSync(liveFile, 'utf8');
      assert.match(live, /^# nixremote: disabled by keep at \S+: .+\n#ssh:\/\/\S+@nlfast /m);
      const lines = (t: string) => t.split('\n').filter((l) => /^ssh:/.test(l));
      assert.deepEqual(
        lines(live),
        lines(files.machines!).filter((l) => !/@nlfast /.test(l)),
        "every other line as the configuration's",
      );
      assert.equal(fs.readFileSync(mod, 'utf8').includes('disabled by'), false, 'the module is not touched');
      const listed = JSON.parse(
        String((await onNixos(`${CLI} list --json --module /root/nixremote.nix`)).stdout),
      ).builders;
      const nf = listed.find((b: { name: string }) => b.name === 'nlfast');
      assert.equal(nf.disabled.by, 'keep', JSON.stringify(listed));
      const st = JSON.parse(
        String((await onNixos(`${CLI} status --json --module /root/nixremote.nix nlfast`)).stdout),
      ).builders;
      assert.equal(st[0].state, 'disabled');
      const text = await onNixos(`${CLI} list --module /root/nixremote.nix`);
      assert.match(String(text.stdout), /keep: in \/root\/nixremote\.nix, a round every 30 s/);
      tarpit.accepted = 0;
      const out = await build('down');
      assert.equal(out.exitCode, 0, String(out.stderr));
      assert.deepEqual(sentTo(String(out.stderr)), ['nlmid', 'nlmid', 'nlmid']);
      assert.equal(tarpit.accepted, 0, 'no derivation tried the builder the keeper took out');
      const again = await onNixos(exec);
      assert.equal(again.exitCode, 1);
      assert.match(String(again.stdout), /1 of 2 builders answer, 1 still down and out of use; nothing to change/);
      assert.equal(fs.readFileSync(liveFile, 'utf8'), live, 'a round with nothing new leaves the file as it was');

      // fast back: the next round puts it back, and a build lands on it.
      await tarpit.stop();
      tarpit = null;
      await fast.start();
      const back = await onNixos(exec);
      assert.equal(back.exitCode, 0, `${back.stdout}\n${back.stderr}`);
      assert.match(String(back.stdout), /^keep: enabled nlfast: it answers again$/m);
      assert.equal(header(fs.readFileSync(liveFile, 'utf8')), files.machines);
      const landed = await build('back');
      assert.equal(landed.exitCode, 0, String(landed.stderr));
      assert.deepEqual(sentTo(String(landed.stderr)), ['nlfast', 'nlfast', 'nlfast']);

      // --uninstall takes the keeper's block out again, byte for byte.
      const un = await c.nixremote(['keep', '--uninstall', '--target', 'nixos', '--module', '/root/nixremote.nix']);
      assert.equal(un.exitCode, 0, `${un.stdout}\n${un.stderr}`);
      assert.equal(fs.readFileSync(mod, 'utf8'), plain);
    } finally {
      await tarpit?.stop();
      c.destroy();
      for (const b of made) await b.destroy();
    }
  });
});
