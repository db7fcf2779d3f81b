// The versions users run, for real: clients and builders with Nix 2.8 / OpenSSH 9.2 (this
// machine), Nix 2.26 / OpenSSH 10.0 (Debian trixie) and Nix 2.34 / OpenSSH 10.6 (Debian sid),
// from the trees scripts/make-trees.sh makes (npm test makes them, as root on Debian). Every
// client sets up every builder with init, whose proof is a build offloaded there, and then
// doctor passes on all three. Faults that only newer OpenSSH has are reproduced on it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Builder, Client, treeRoot, treeVersions, TREES, withRig, initCommand } from './harness.js';

const KINDS: (string | null)[] = [null, 'trixie', 'sid'];
const label = (k: string | null) => k ?? 'bookworm';

for (const k of KINDS) {
  if (k && !treeRoot(k))
    throw new Error(`the ${k} tree is missing from ${TREES}: run scripts/make-trees.sh (npm test does, as root)`);
}

interface Check {
  id: string;
  status: string;
  summary: string;
  cause?: string;
}

describe('every client × builder pair, Nix 2.8 to 2.34, OpenSSH 9.2 to 10.6', () => {
  const builders = new Map<string | null, Builder>();
  before(async () => {
    for (const k of KINDS) builders.set(k, await Builder.create(k ? { tree: k } : {}));
  });
  after(async () => {
    for (const b of builders.values()) await b.destroy();
  });

  for (const client of KINDS) {
    test(`client ${label(client)} (${client ? treeVersions(client) : 'this machine'})`, async () => {
      const c = new Client(client ? { tree: client } : {});
      try {
        for (const [k, b] of builders) {
          const name = `v-${label(k)}`;
          const r = await c.nixremote([...initCommand(b, name), '--password-stdin'], { input: b.password + '\n' });
          assert.equal(r.exitCode, 0, `init ${name} from ${label(client)}:\n${r.stdout}\n${r.stderr}`);
          const built = new RegExp(`(/nix/store/\\S+-nixremote-probe) was built on ${name}`).exec(String(r.stdout));
          assert.ok(built && b.storeHas(built[1]!), `the proof for ${name} is not in its store:\n${r.stdout}`);
        }
        const d = await c.nixremote(['doctor', '--json']);
        const report = JSON.parse(String(d.stdout)) as {
          builders: { name: string; status: string; checks: Check[] }[];
        };
        const bad = report.builders.flatMap((b) =>
          b.checks.filter((x) => x.status !== 'pass').map((x) => `${b.name} ${x.id}: ${x.status} ${x.summary}`),
        );
        assert.deepEqual(bad, []);
        assert.equal(d.exitCode, 0);
        assert.deepEqual(
          report.builders.map((b) => b.name),
          KINDS.map((k) => `v-${label(k)}`),
        );
        const s = await c.nixremote(['status', '--json']);
        assert.equal(s.exitCode, 0, String(s.stdout));
        const versions = (JSON.parse(String(s.stdout)).builders as { nixVersion: string }[]).map((x) => x.nixVersion);
        assert.deepEqual(
          versions.map((v) => v.split('.').slice(0, 2).join('.')),
          ['2.8', '2.26', '2.34'],
        );
      } finally {
        c.destroy();
      }
    });
  }
});

describe("sshd's PerSourcePenalties (OpenSSH 9.8 and later)", () => {
  for (const tree of ['trixie', 'sid']) {
    test(`${tree}: after failed logins doctor and status name the penalty, not a wrong port`, async () => {
      await withRig({ tree }, async (b, c) => {
        const init = await c.nixremote([...initCommand(b, 'pen'), '--password-stdin', '--no-test-build'], {
          input: b.password + '\n',
        });
        assert.equal(init.exitCode, 0, String(init.stderr));
        // The key revoked on the builder, then a few logins that fail, as a broken setup makes.
        fs.writeFileSync(path.join(b.dir, 'home/.ssh/authorized_keys'), '');
        for (let i = 0; i < 5; i++) await c.run('ssh -o BatchMode=yes pen true');
        assert.match(
          fs.readFileSync(path.join(b.dir, 'sshd.log'), 'utf8'),
          /penalty: failed authentication|srclimit_penalise/,
        );

        const d = await c.nixremote(['doctor', '--json', '--no-build']);
        assert.equal(d.exitCode, 1);
        const checks = JSON.parse(String(d.stdout)).builders[0].checks as Check[];
        const f = checks.find((x) => x.status === 'fail')!;
        assert.equal(f.id, 'host-key', JSON.stringify(checks));
        assert.match(f.summary, /refused this address \("Not allowed at this time"\)/, JSON.stringify(f));
        assert.match(f.cause ?? '', /PerSourcePenalties/);
        assert.doesNotMatch(JSON.stringify(checks), /did not answer as an SSH server|without saying why/);

        const s = await c.nixremote(['status', '--json']);
        assert.equal(s.exitCode, 1);
        assert.match(JSON.parse(String(s.stdout)).builders[0].error, /PerSourcePenalties/);
      });
    });
  }

  test('doctor costs a builder at most one failed authentication per run', async () => {
    await withRig({ tree: 'sid' }, async (b, c) => {
      const init = await c.nixremote([...initCommand(b, 'once'), '--password-stdin', '--no-test-build'], {
        input: b.password + '\n',
      });
      assert.equal(init.exitCode, 0, String(init.stderr));
      fs.writeFileSync(path.join(b.dir, 'home/.ssh/authorized_keys'), '');
      const log = path.join(b.dir, 'sshd.log');
      const before = fs.readFileSync(log, 'utf8').length;
      const d = await c.nixremote(['doctor', '--json']);
      assert.equal(d.exitCode, 1);
      const login = (JSON.parse(String(d.stdout)).builders[0].checks as Check[]).find((x) => x.id === 'login')!;
      assert.equal(login.status, 'fail');
      assert.match(login.cause ?? '', /refused the key/);
      const failures =
        fs
          .readFileSync(log, 'utf8')
          .slice(before)
          .match(/Connection closed by authenticating user|Failed publickey/g) ?? [];
      assert.ok(
        failures.length <= 1,
        `doctor failed ${failures.length} authentications:\n${fs.readFileSync(log, 'utf8').slice(before)}`,
      );
      assert.doesNotMatch(fs.readFileSync(log, 'utf8').slice(before), /srclimit_penalise/);
    });
  });
});
