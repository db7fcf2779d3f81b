// `why` against what Nix then does, for real: three builders on 127.0.0.1 with different
// systems, features (one with a mandatory feature), speed factors and max-jobs; a corpus of
// derivations (plain, with requiredSystemFeatures, with preferLocalBuild, for a system one
// builder claims, for a system none claims, a chain); built with -j0 and -j1. For each, why
// runs first, then the real build, and the builder Nix names ("building '…' on '…'", or
// none) must be the predicted one. Then with one builder busy (a slow build holds its only
// slot) and with one stopped. On this machine's Nix 2.8 and on the trixie and sid clients.
// explain reads every one of those builds' output.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Builder, CLI, Client, initCommand, q, treeRoot } from './harness.js';

interface WhyJson {
  derivations: { path: string; name: string; where: string; builder: string | null; rule: string }[];
}
interface Finding {
  kind: string;
  builder: string | null;
  derivation: string | null;
  cause?: string;
  fix?: string;
}

/** The corpus, with a nonce so that each run builds afresh. */
function corpus(nonce: string): string {
  return `let
  mk = name: attrs: derivation ({
    inherit name;
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "echo \${name} > $out" ];
    nonce = "${nonce}";
  } // attrs);
in rec {
  plain = mk "plain" { };
  big = mk "big" { requiredSystemFeatures = [ "big-parallel" ]; };
  bench = mk "bench" { requiredSystemFeatures = [ "benchmark" ]; };
  local = mk "local" { preferLocalBuild = true; };
  i686 = mk "i686" { system = "i686-linux"; };
  riscv = mk "riscv" { system = "riscv64-linux"; };
  c1 = mk "c1" { };
  c2 = mk "c2" { dep = c1; };
  c3 = mk "c3" { dep = c2; };
  slow = mk "slow" { requiredSystemFeatures = [ "big-parallel" ]; args = [ "-c" "/bin/sleep 12; echo slow > $out" ]; };
}
`;
}

/** Which builder Nix named for each derivation it sent away. */
function sentTo(log: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const x of log.matchAll(/building '([^']+\.drv)' on '(?:ssh|ssh-ng):\/\/([^'/?]+)[^']*'/g)) m.set(x[1]!, x[2]!);
  return m;
}

const CLIENTS = (process.env.WHY_CLIENTS ?? ',trixie,sid').split(',');

for (const tree of CLIENTS) {
  describe(`why's predictions against real builds, client ${tree || 'Nix 2.8 (this machine)'}`, () => {
    test('three builders: idle, one busy, one stopped', {
      skip: tree && !treeRoot(tree) ? `no ${tree} tree` : false,
      timeout: 900_000,
    }, async () => {
      const made: Builder[] = [];
      const c = new Client(tree ? { tree } : {});
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-why-'));
      try {
        // fast: speed 4, big-parallel; slow: speed 1, also i686-linux; bench: speed 8, only
        // for derivations that require benchmark. One slot each.
        const specs: [string, string[]][] = [
          ['fast', ['--systems', 'x86_64-linux', '--features', 'big-parallel', '--speed-factor', '4']],
          ['slow', ['--systems', 'x86_64-linux,i686-linux', '--features', 'nixos-test', '--speed-factor', '1']],
          [
            'bench',
            [
              '--systems',
              'x86_64-linux',
              '--features',
              'benchmark',
              '--mandatory-features',
              'benchmark',
              '--speed-factor',
              '8',
            ],
          ],
        ];
        const byName = new Map<string, Builder>();
        for (const [name, extra] of specs) {
          const b = await Builder.create({ nixConf: 'extra-platforms = i686-linux' });
          made.push(b);
          byName.set(name, b);
          const r = await c.nixremote(
            [...initCommand(b, name), '--max-jobs', '1', ...extra, '--no-test-build', '--password-stdin'],
            { input: `${b.password}\n` },
          );
          assert.equal(r.exitCode, 0, `init ${name}:\n${r.stdout}\n${r.stderr}`);
        }

        let n = 0;
        /** why, then the real build; the builder Nix names must be the predicted one. */
        const check = async (attr: string, jobs: number, expect: Record<string, string>) => {
          const file = path.join(dir, `corpus-${n++}.nix`);
          fs.writeFileSync(file, corpus(`${process.pid}-${Date.now()}-${n}`));
          const w = await c.nixremote(['why', '-f', file, '-A', attr, '--max-jobs', String(jobs), '--json']);
          const said = `${w.stdout}\n${w.stderr}`;
          assert.ok(w.exitCode === 0 || w.exitCode === 1, said);
          const why = JSON.parse(String(w.stdout)) as WhyJson;
          const predicted = Object.fromEntries(
            why.derivations.map((d) => [d.name, d.where === 'builder' ? d.builder! : d.where]),
          );
          assert.deepEqual(predicted, expect, `why -A ${attr} -j${jobs}: ${said}`);
          assert.equal(w.exitCode, Object.values(expect).includes('fails') ? 1 : 0, said);
          const built = await c.run(`nix-build ${q(file)} -A ${attr} -j${jobs} --no-out-link`);
          const log = String(built.stderr);
          const sent = sentTo(log);
          for (const d of why.derivations) {
            const where = sent.get(d.path);
            const what = `${d.name} -j${jobs} (predicted: ${d.where} ${d.builder ?? ''}; ${d.rule}):\n${log}`;
            if (d.where === 'builder') assert.equal(where, d.builder, what);
            else if (d.where === 'here') assert.equal(where, undefined, what);
            else if (d.where === 'fails') assert.equal(where, undefined, what);
          }
          if (Object.values(expect).includes('fails')) assert.notEqual(built.exitCode, 0, log);
          else assert.equal(built.exitCode, 0, log);
          // explain reads the same output: each builder Nix sent to, and every failure with a cause.
          const ex = await c.nixremote(['explain', '--json'], { input: log });
          const findings = (JSON.parse(String(ex.stdout)) as { findings: Finding[] }).findings;
          for (const [drv, builder] of sent)
            assert.ok(
              findings.some((x) => x.kind === 'sent' && x.derivation === drv && x.builder === builder),
              `explain names ${builder} for ${drv}:\n${ex.stdout}`,
            );
          // A build that failed is explained: each failure with its cause and fix.
          const failed = findings.filter((x) => x.kind === 'failed');
          if (built.exitCode !== 0) {
            assert.equal(ex.exitCode, 1, `explain explains the failure:\n${ex.stdout}\n${log}`);
            for (const f of failed) assert.ok(f.cause && f.fix, JSON.stringify(f));
          }
          return { why, log, built, findings, explainExit: ex.exitCode };
        };

        // All idle. -j0: the hook is asked about everything.
        await check('plain', 0, { plain: 'fast' });
        await check('big', 0, { big: 'fast' });
        await check('bench', 0, { bench: 'bench' });
        await check('local', 0, { local: 'fast' });
        await check('i686', 0, { i686: 'slow' });
        const none = await check('riscv', 0, { riscv: 'fails' });
        assert.equal(none.explainExit, 1, 'explain explains the failure');
        await check('c3', 0, { c1: 'fast', c2: 'fast', c3: 'fast' });
        // -j1: a free builder still wins; preferLocalBuild stays here.
        await check('plain', 1, { plain: 'fast' });
        await check('local', 1, { local: 'here' });
        await check('riscv', 1, { riscv: 'fails' });

        // fast busy: a slow build holds its one slot.
        const slowFile = path.join(dir, 'slow.nix');
        fs.writeFileSync(slowFile, corpus(`slow-${process.pid}-${Date.now()}`));
        const slowBuild = c.run(`nix-build ${q(slowFile)} -A slow -j0 --no-out-link`);
        let slowDone = false;
        void slowBuild.then(() => {
          slowDone = true;
        });
        // Until the hook holds fast's slot: status shows it.
        let busy = false;
        for (let i = 0; i < 100 && !busy; i++) {
          const s = await c.nixremote(['status', 'fast', '--json']);
          const st = (JSON.parse(String(s.stdout)) as { builders: { slotsInUse: number }[] }).builders[0];
          busy = Boolean(st && st.slotsInUse > 0);
          if (slowDone) assert.fail(`the slow build ended early:\n${(await slowBuild).stderr}`);
          if (!busy) await new Promise((r) => setTimeout(r, 200));
        }
        assert.ok(busy, "the slow build holds fast's slot");
        await check('plain', 0, { plain: 'slow' });
        await check('big', 1, { big: 'here' });
        // -j0 and only fast takes big-parallel: it waits for the slot, then goes to fast.
        const waited = await check('big', 0, { big: 'waits' });
        assert.ok(slowDone, 'the waiting build ended after the slow one');
        assert.equal([...sentTo(waited.log).values()][0], 'fast', waited.log);
        const slow = await slowBuild;
        assert.equal(slow.exitCode, 0, String(slow.stderr));
        assert.equal(sentTo(String(slow.stderr)).size, 1);

        // fast stopped: the hook tries it first, cannot connect, and goes on.
        await byName.get('fast')!.stop();
        const next = await check('plain', 0, { plain: 'slow' });
        assert.match(next.log, /cannot build on 'ssh:\/\/fast/);
        assert.ok(
          next.findings.some((x) => x.kind === 'failed' && x.builder === 'fast' && x.cause),
          'explain names fast and why it could not be reached',
        );
        const gone = await check('big', 0, { big: 'fails' });
        assert.equal(gone.explainExit, 1);
        await check('big', 1, { big: 'here' });
      } finally {
        c.destroy();
        for (const b of made) await b.destroy();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

describe('why on a multi-user install: the builders the daemon takes, and the ones it ignores', () => {
  test("a user's builders are ignored unless the daemon trusts the user; root's --builders is taken", async () => {
    const b = await Builder.create();
    const c = new Client({ multiUser: true });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-why-'));
    try {
      fs.chmodSync(dir, 0o755);
      const r = await c.withDaemon(
        `${CLI} ${[...initCommand(b, 'box'), '--no-test-build', '--password-stdin'].map(q).join(' ')}`,
        {
          input: `${b.password}\n`,
        },
      );
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      const file = path.join(dir, 'corpus.nix');
      fs.writeFileSync(file, corpus(`mu-${process.pid}-${Date.now()}`));
      fs.chmodSync(file, 0o644);
      // A user who is not in trusted-users, with builders of their own.
      const asUser = (cmd: string) =>
        `su -s /bin/sh ${b.user} -c ${q(`NO_COLOR=1 NIX_REMOTE=daemon NIX_CONFIG='builders = ssh://ghost x86_64-linux' ${cmd}`)}`;
      const w = await c.withDaemon(asUser(`${CLI} why -f ${q(file)} -A plain -j0 --no-check --json`));
      assert.equal(w.exitCode, 0, `${w.stdout}\n${w.stderr}`);
      const why = JSON.parse(String(w.stdout)) as WhyJson & { ignored: { uri: string }[]; notes: string[] };
      assert.deepEqual(
        why.derivations.map((d) => d.builder),
        ['box'],
      );
      assert.deepEqual(
        why.ignored.map((m) => m.uri),
        ['ssh://ghost'],
      );
      assert.match(why.notes[0]!, /NIX_CONFIG.*is ignored: the daemon takes it only from a user in its trusted-users/);
      const built = await c.withDaemon(asUser(`nix-build ${q(file)} -A plain -j0 --no-out-link`));
      assert.equal(built.exitCode, 0, String(built.stderr));
      // (The daemon says "ignoring the client-specified setting 'builders'" in its own log, not to the client.)
      assert.equal([...sentTo(String(built.stderr)).values()][0], 'box', String(built.stderr));

      // root is trusted: its --builders '' is taken, and with -j0 nothing can build it.
      const none = await c.withDaemon(`${CLI} why -f ${q(file)} -A c1 -j0 --builders '' --json`);
      const nowhere = JSON.parse(String(none.stdout)) as WhyJson;
      assert.equal(none.exitCode, 1, String(none.stdout));
      assert.equal(nowhere.derivations[0]!.where, 'fails');
      const fails = await c.withDaemon(`nix-build ${q(file)} -A c1 -j0 --builders '' --no-out-link`);
      assert.notEqual(fails.exitCode, 0);
      assert.match(String(fails.stderr), /unable to start any build/i);
    } finally {
      c.destroy();
      await b.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
