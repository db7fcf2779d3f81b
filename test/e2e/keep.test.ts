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
import { Builder, Client, initCommand, q } from './harness.js';
import { Tarpit } from './fleet.js';

const chain = (nonce: string) => `let
  mk = name: dep: derivation { inherit name dep; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "echo \${name} > $out" ]; nonce = "${nonce}"; };
  c1 = mk "k1" "";
  c2 = mk "k2" c1;
in mk "k3" c2`;

/** The builder Nix named for each derivation it sent away. */
const sentTo = (log: string) => [...log.matchAll(/building '[^']+\.drv' on 'ssh:\/\/([^'/]+)'/g)].map((m) => m[1]!);

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
      const by = new Map<string, Builder>();
      for (const [name, speed] of specs) {
        const b = await Builder.create();
        made.push(b);
        by.set(name, b);
        // fast gets a short --connect-timeout: the build hook waits that long for it.
        const timeout = name === 'kfast' ? ['--connect-timeout', '3'] : [];
        const r = await c.nixremote(
          [
            ...initCommand(b, name),
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
});
