// The fault table: each fault made real on a builder here (../shared/TESTING.md), on this
// machine's Nix 2.8 and on the trixie (2.26) and sid (2.34) trees where the fault exists
// there. For each row: a good init, then the fault; init run again refuses before it writes
// (where it can meet the fault), doctor names it, status names it in the same words, and a
// real `nix-build -j0` shows that the fault is real (or, for the rows that must not be
// flagged, that builds work).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  type Builder,
  type BuilderOptions,
  Client,
  Builder as B,
  initCommand,
  PROBE_EXPR,
  q,
  treeRoot,
} from './harness.js';
import { printReport, type DoctorReport } from '../../src/doctor/report.js';
import { makeOutput } from '../../src/io/output.js';

interface Check {
  id: string;
  title: string;
  status: string;
  summary: string;
  cause?: string;
  fix?: string;
}
interface DoctorJson {
  status: string;
  local: Check[];
  builders: { name: string; checks: Check[] }[];
}
interface StatusJson {
  builders: { name: string; state: string; error?: string; check?: string }[];
}

interface Row {
  name: string;
  opts?: BuilderOptions;
  /** Make the fault real, after a good init. */
  apply: (b: Builder, c: Client) => Promise<void> | void;
  /** The doctor check that names it, and how. */
  check: string;
  /** 'none': a row that must not be flagged. */
  verdict: 'fail' | 'warn' | 'none';
  cause?: RegExp;
  /**
   * init run again with the fault there: refuses before it writes ('refuses'), goes on
   * ('works'), or mends it ('fixes'); absent: not run.
   */
  init?: 'refuses' | 'works' | 'fixes';
  /** Whether status names it (a fault of one builder), and as what state. */
  status?: 'down' | 'broken' | 'idle';
  /** What a real build does with the fault there. */
  build: 'fails' | 'works';
  /** A build that writes this many MiB in its build directory (the probe writes 3 bytes). */
  buildMiB?: number;
  /** The builder trees where the fault exists ('' is this machine). */
  on?: string[];
  /** A fault of the client's side: the client trees it exists on instead (the builder is this machine's). */
  clients?: string[];
  /** sshd 9.8+ penalises failed logins: start it afresh before each step that fails one. */
  penalised?: boolean;
}

const NIX_CONF = (b: Builder) => path.join(b.dir, 'etcnix/nix.conf');
const trustOnlyRoot = (b: Builder) =>
  fs.writeFileSync(
    NIX_CONF(b),
    fs.readFileSync(NIX_CONF(b), 'utf8').replace(/^trusted-users = .*\n/gm, '') + 'trusted-users = root\n',
  );
const restartWith = async (b: Builder, o: Partial<BuilderOptions>) => {
  Object.assign(b.opts, o);
  await b.restart();
};
const keyLinePrefix = (b: Builder, prefix: string) => {
  const f = path.join(b.dir, 'home/.ssh/authorized_keys');
  fs.writeFileSync(f, fs.readFileSync(f, 'utf8').replace(/^restrict /m, `${prefix},restrict `));
};
const TRUSTED = { untrusted: true, nixConf: 'trusted-users = root nixremote-e2e' };

const ROWS: Row[] = [
  {
    name: 'login shell nologin',
    apply: (b) => restartWith(b, { loginShell: '/usr/sbin/nologin' }),
    check: 'login-shell',
    verdict: 'fail',
    cause: /the login shell of nixremote-e2e on the builder is nologin/,
    init: 'refuses',
    status: 'broken',
    build: 'fails',
  },
  {
    name: 'login shell /bin/false',
    apply: (b) => restartWith(b, { loginShell: '/bin/false' }),
    check: 'login-shell',
    verdict: 'fail',
    cause:
      /the command sent printed nothing and exited 1: the login shell of nixremote-e2e on the builder runs no commands/,
    init: 'refuses',
    status: 'broken',
    build: 'fails',
  },
  {
    name: 'login shell that does not exist',
    apply: (b) => restartWith(b, { loginShell: '/nonexistent/shell' }),
    check: 'login',
    verdict: 'fail',
    cause: /the account is locked, not in AllowUsers, or its login shell does not exist/,
    status: 'down',
    build: 'fails',
    penalised: true,
  },
  {
    name: 'a full store',
    opts: { storeSizeMiB: 64 },
    apply: (b) => b.fillStore(),
    check: 'space',
    verdict: 'fail',
    cause: /Nix cannot write the outputs, its database or the build directory/,
    init: 'refuses',
    status: 'broken',
    build: 'fails',
  },
  {
    name: 'a full build directory',
    opts: { buildDirSizeMiB: 32 },
    apply: (b) => b.fillBuildDir(),
    check: 'space',
    verdict: 'fail',
    cause: /Nix cannot write the outputs, its database or the build directory/,
    init: 'refuses',
    status: 'broken',
    build: 'fails',
    buildMiB: 1,
  },
  {
    name: 'StrictModes: ~/.ssh writable by others',
    apply: (b) => fs.chmodSync(path.join(b.dir, 'home/.ssh'), 0o777),
    check: 'login',
    verdict: 'fail',
    cause:
      /StrictModes ignores authorized_keys because the home, ~\/\.ssh or authorized_keys is writable by group or others/,
    status: 'down',
    build: 'fails',
    penalised: true,
  },
  {
    name: 'a forced command that serves the protocol (nix-store --serve --write, ssh://)',
    apply: (b) => keyLinePrefix(b, 'command="nix-store --serve --write"'),
    check: 'login-shell',
    // The key can only speak Nix: a sound setup, said as a pass that names what it hides.
    verdict: 'none',
    init: 'works',
    status: 'idle',
    build: 'works',
  },
  {
    name: 'a forced command for the other protocol (nix-daemon --stdio, ssh://)',
    apply: (b) => keyLinePrefix(b, 'command="nix-daemon --stdio"'),
    check: 'login-shell',
    verdict: 'fail',
    cause: /the key's forced command .* is nix-daemon --stdio, which speaks ssh-ng:\/\/ only/,
    init: 'refuses',
    status: 'broken',
    build: 'fails',
  },
  {
    name: "the builder's own max-jobs = 0",
    apply: (b) => fs.appendFileSync(NIX_CONF(b), 'max-jobs = 0\n'),
    check: 'builder-jobs',
    verdict: 'fail',
    cause: /a builder with max-jobs = 0 builds nothing itself/,
    init: 'refuses',
    status: 'broken',
    build: 'fails',
  },
  {
    name: "the builder's nix-daemon stopped, its socket left behind",
    opts: TRUSTED,
    apply: (b) => b.stopDaemon(),
    check: 'builder-daemon',
    verdict: 'fail',
    cause: /a nix-daemon is not running where its socket is/,
    init: 'refuses',
    status: 'broken',
    build: 'fails',
  },
  {
    name: 'allowed-users leaving the ssh user out',
    opts: TRUSTED,
    apply: async (b) => {
      trustOnlyRoot(b);
      fs.appendFileSync(NIX_CONF(b), 'allowed-users = root\n');
      await b.restart();
    },
    check: 'builder-daemon',
    verdict: 'fail',
    cause: /the builder's nix-daemon refuses connections from users that allowed-users leaves out/,
    init: 'refuses',
    status: 'broken',
    build: 'fails',
  },
  {
    name: 'an untrusted ssh user over ssh://',
    opts: TRUSTED,
    apply: async (b) => {
      trustOnlyRoot(b);
      await b.restart();
    },
    check: 'trust',
    verdict: 'fail',
    cause: /refuses to build or import unsigned paths for an untrusted user/,
    init: 'refuses',
    status: 'broken',
    build: 'fails',
  },
  {
    name: 'a port inside the store URI (made by hand)',
    apply: (b, c) => {
      const f = path.join(c.etcNix, 'machines');
      fs.writeFileSync(f, fs.readFileSync(f, 'utf8').replace('ssh://box ', `ssh://${b.user}@127.0.0.1:${b.port} `));
    },
    check: 'uri',
    verdict: 'fail',
    cause: /Nix before 2\.31 gives ssh "127\.0\.0\.1:\d+" as the host name/,
    status: 'broken',
    build: 'fails',
    // Nix 2.31 and later pass the port to ssh (ssh.cc), so the fault is the older clients'.
    clients: ['', 'trixie'],
  },
  {
    name: 'RequestTTY force under Host *',
    apply: (_b, c) => fs.appendFileSync(path.join(c.root, '.ssh/config'), '\nHost *\n  RequestTTY force\n'),
    check: 'ssh-config',
    verdict: 'fail',
    cause: /ssh asks the builder for a terminal \(RequestTTY in the ssh config, often under Host \*\)/,
    status: 'down',
    build: 'fails',
    // OpenSSH 9.2, 10.0 and 10.6 as the client.
    clients: ['', 'trixie', 'sid'],
  },
  {
    name: 'a shell that prints on stderr only (not a fault)',
    apply: (b) => b.setBashrc('echo hello from the builder >&2'),
    check: 'shell',
    verdict: 'none',
    init: 'works',
    status: 'idle',
    build: 'works',
  },
];

const VERSIONS = ['', 'trixie', 'sid'];

/** doctor's text report of a JSON report, as doctor prints it to a pipe. */
function textReport(d: DoctorJson): string {
  const chunks: string[] = [];
  const sink = { write: (t: string) => chunks.push(t), isTTY: false } as unknown as NodeJS.WriteStream;
  printReport(makeOutput(sink), d as unknown as DoctorReport, false);
  return chunks.join('');
}

async function doctor(c: Client, args: string[] = []): Promise<DoctorJson> {
  const r = await c.nixremote(['doctor', '--json', ...args]);
  try {
    return JSON.parse(String(r.stdout));
  } catch {
    throw new Error(`doctor --json printed no JSON (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
  }
}

async function status(c: Client): Promise<StatusJson> {
  const r = await c.nixremote(['status', '--json']);
  try {
    return JSON.parse(String(r.stdout));
  } catch {
    throw new Error(`status --json printed no JSON (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
  }
}

/** A build only a builder can do, through the machines file init wrote, as Nix's daemon would send it. */
async function realBuild(c: Client, mib = 0) {
  const nonce = `${Date.now()}-${Math.random()}`;
  const expr = mib
    ? `derivation { name = "e2e-big"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "/bin/dd if=/dev/zero of=scratch bs=1M count=${mib} && echo > $out" ]; nonce = "${nonce}"; }`
    : PROBE_EXPR(nonce);
  return c.run(`nix-build -j0 --no-out-link -E ${q(expr)}`);
}

for (const row of ROWS) {
  describe(row.name, () => {
    for (const v of row.clients ?? row.on ?? VERSIONS) {
      const side = row.clients ? 'client' : 'builder';
      const label = `${side} ${v || 'Nix 2.8 (this machine)'}`;
      test(label, { skip: v && !treeRoot(v) ? `no ${v} tree` : false }, async () => {
        const b = await B.create({ ...row.opts, ...(v && !row.clients ? { tree: v } : {}) });
        const c = new Client(v && row.clients ? { tree: v } : {});
        try {
          const args = [...initCommand(b, 'box'), '--password-stdin'];
          const good = await c.nixremote(args, { input: b.password + '\n' });
          assert.equal(good.exitCode, 0, `a good init first:\n${good.stdout}\n${good.stderr}`);
          await row.apply(b, c);
          const fresh = async () => {
            if (row.penalised && v) await b.restart();
          };

          // doctor names it.
          await fresh();
          const d = await doctor(c);
          const checks = d.builders[0]!.checks;
          const got = checks.find((x) => x.id === row.check);
          assert.ok(got, `no ${row.check} check: ${JSON.stringify(checks.map((x) => x.id))}`);
          const failures = checks.filter((x) => x.status === 'fail');
          if (row.verdict === 'fail') {
            assert.equal(failures[0]?.id, row.check, `the first failure names it: ${JSON.stringify(failures)}`);
            assert.match(got.cause ?? '', row.cause!);
            // The text report of this very run leads with the answer: the broken builder,
            // its first broken link, the cause and the fix, before any detail.
            const text = textReport(d);
            const head = text.split('\n').findIndex((l) => l.startsWith(`error: ${d.builders[0]!.name}:`));
            const line = text.split('\n')[head] ?? '';
            assert.ok(line.includes(`FAIL at "${got.title}": `), line);
            if (got.fix) assert.ok(line.includes('. Fix: '), line);
            assert.ok(head >= 0 && head < text.split('\n').findIndex((l) => l.startsWith('Builder ')), text);
          } else if (row.verdict === 'warn') {
            assert.equal(got.status, 'warn', JSON.stringify(got));
            assert.match(got.cause ?? '', row.cause!);
            assert.deepEqual(failures, [], 'nothing fails');
          } else {
            assert.equal(got.status, 'pass', JSON.stringify(got));
            assert.deepEqual(
              checks.filter((x) => x.status !== 'pass' && x.status !== 'skip'),
              [],
              'not flagged',
            );
          }
          assert.doesNotMatch(JSON.stringify(d), /install Nix on the builder/, 'no guessed cause');

          // status says it in the same words.
          if (row.status) {
            await fresh();
            const s = (await status(c)).builders[0]!;
            assert.equal(s.state, row.status, JSON.stringify(s));
            if (row.verdict === 'fail') assert.equal(s.error, got.cause, 'status and doctor name the same cause');
            else if (row.verdict === 'warn') assert.equal(s.error, `warning: ${got.summary}`);
            else assert.equal(s.error, undefined, JSON.stringify(s));
          }

          // And the fault is real: a build sent to the builder fails, or works.
          await fresh();
          const built = await realBuild(c, row.buildMiB);
          if (row.build === 'fails') assert.notEqual(built.exitCode, 0, `the build should fail:\n${built.stderr}`);
          else assert.equal(built.exitCode, 0, `the build should work:\n${built.stderr}`);
          // explain reads that build's output: the builder, a cause from the catalogue, or nothing wrong.
          const ex = await c.nixremote(['explain', '--json'], { input: String(built.stderr) });
          const findings: { kind: string; builder: string | null; cause?: string }[] = JSON.parse(
            String(ex.stdout),
          ).findings;
          const failedOn = findings.filter((x) => x.kind === 'failed');
          if (row.build === 'fails') {
            assert.equal(ex.exitCode, 1, String(ex.stdout));
            assert.ok(
              failedOn.some((x) => x.builder === 'box' || x.builder === '127.0.0.1'),
              `explain names the builder:\n${ex.stdout}\n${built.stderr}`,
            );
          } else {
            assert.equal(ex.exitCode, 0, String(ex.stdout));
            assert.ok(
              findings.some((x) => x.kind === 'sent' && x.builder === 'box'),
              String(ex.stdout),
            );
          }
          // init run again: before it writes anything, or with everything put back.
          if (row.init) {
            await fresh();
            const before = c.snapshot();
            const again = await c.nixremote(args, { input: b.password + '\n' });
            const said = `${again.stdout}\n${again.stderr}`;
            if (row.init === 'refuses') {
              assert.equal(again.exitCode, 1, said);
              if (row.verdict === 'fail') assert.ok(said.includes(got.cause!), `init names the same cause:\n${said}`);
              assert.deepEqual(c.snapshot(), before, 'init changed nothing');
            } else assert.equal(again.exitCode, 0, said);
            if (row.init === 'fixes') {
              assert.match(said, /writable by others/);
              await fresh();
              const after = await doctor(c, ['--no-build']);
              assert.equal(
                after.status,
                'pass',
                JSON.stringify(after.builders[0]!.checks.filter((x) => x.status !== 'pass')),
              );
            }
          }
        } finally {
          c.destroy();
          await b.destroy();
        }
      });
    }
  });
}

describe('an untrusted user over ssh-ng://, with a Nix that takes the trustless path (sid)', () => {
  test('the proof copies a locally built input and fails as a real build does', {
    skip: treeRoot('sid') ? false : 'no sid tree',
  }, async () => {
    const b = await B.create({ ...TRUSTED, tree: 'sid' });
    const c = new Client({ tree: 'sid' });
    try {
      const args = [...initCommand(b, 'ngbox'), '--protocol', 'ssh-ng', '--password-stdin'];
      const good = await c.nixremote(args, { input: b.password + '\n' });
      assert.equal(good.exitCode, 0, `${good.stdout}\n${good.stderr}`);
      trustOnlyRoot(b);
      await b.restart();
      const d = await doctor(c);
      const checks = d.builders[0]!.checks;
      assert.equal(checks.find((x) => x.status === 'fail')?.id, 'trust');
      // The build hook sends the derivation itself to an untrusted ssh-ng builder; what fails
      // is the copy of the unsigned input that was built here, as in real builds.
      const build = checks.find((x) => x.id === 'build')!;
      assert.equal(build.status, 'fail');
      assert.match(build.cause!, /does not trust the ssh user/);
      const s = (await status(c)).builders[0]!;
      assert.equal(s.error, checks.find((x) => x.id === 'trust')!.cause);
    } finally {
      c.destroy();
      await b.destroy();
    }
  });
});

describe('the same builder listed twice (made by hand)', () => {
  test('doctor warns and names the line to remove; builds still work', async () => {
    const b = await B.create();
    const c = new Client();
    try {
      const good = await c.nixremote([...initCommand(b, 'box'), '--password-stdin'], { input: b.password + '\n' });
      assert.equal(good.exitCode, 0, String(good.stderr));
      const f = path.join(c.etcNix, 'machines');
      const line = fs
        .readFileSync(f, 'utf8')
        .split('\n')
        .find((l) => l.startsWith('ssh://box '))!;
      fs.appendFileSync(f, `${line}\n`);
      const d = await doctor(c, ['--no-build']);
      const dup = d.local.find((x) => x.id === 'builders')!;
      assert.equal(dup.status, 'warn');
      assert.match(dup.summary, /^ssh:\/\/box is listed 2 times \(\/etc\/nix\/machines:2, \/etc\/nix\/machines:4\)$/);
      assert.equal(dup.fix, 'keep one line for each builder: remove /etc/nix/machines:4');
      assert.equal((await realBuild(c)).exitCode, 0);
    } finally {
      c.destroy();
      await b.destroy();
    }
  });
});
