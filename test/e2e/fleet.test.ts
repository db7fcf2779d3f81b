// Several builders, as a new user meets them: three `init`s in a row, `list`, `status`
// (with a build running), `remove`, and builds still offloading to the others.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Builder, CLI, Client, PROBE_EXPR, q, Terminal, initCommand } from './harness.js';

const NAMES = ['w1', 'w2', 'w3'];

interface ListRow {
  name: string;
  uri: string;
  systems: string[];
  maxJobs: number;
  speedFactor: number;
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  source: string;
  managed: boolean;
  hostKeyPinned: boolean;
  hostBlock: string | null;
}
interface StatusRow {
  name: string;
  state: string;
  reachable: boolean;
  latencyMs: number | null;
  nixVersion: string | null;
  slotsInUse: number;
  maxJobs: number;
  error?: string;
}

/** The lines between a builder's markers in a file: what must stay byte for byte. */
function block(file: string, name: string): string {
  const text = fs.readFileSync(file, 'utf8');
  const m = new RegExp(`# BEGIN nixremote builder ${name}[ \\n][\\s\\S]*?# END nixremote builder ${name}\\n`).exec(
    text,
  );
  assert.ok(m, `no block for ${name} in ${file}:\n${text}`);
  return m[0];
}

function pinLine(c: Client, name: string): string {
  const line = fs
    .readFileSync(path.join(c.root, '.ssh/known_hosts'), 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name} `));
  assert.ok(line, `no pin for ${name}`);
  return line;
}

describe('three builders, one after another', () => {
  const bs: Builder[] = [];
  let c: Client;
  const machines = () => path.join(c.etcNix, 'machines');
  const sshConfig = () => path.join(c.root, '.ssh/config');

  before(async () => {
    for (let i = 0; i < NAMES.length; i++) bs.push(await Builder.create());
    c = new Client();
  });
  after(async () => {
    c.destroy();
    for (const b of bs) await b.destroy();
  });

  async function list(): Promise<{ code: number; rows: ListRow[] }> {
    const r = await c.nixremote(['list', '--json']);
    return { code: r.exitCode ?? -1, rows: JSON.parse(String(r.stdout)).builders };
  }
  async function status(names: string[] = []): Promise<{ code: number; rows: StatusRow[]; ms: number }> {
    const t0 = Date.now();
    const r = await c.nixremote(['status', '--json', ...names]);
    const ms = Date.now() - t0;
    try {
      return { code: r.exitCode ?? -1, rows: JSON.parse(String(r.stdout)).builders, ms };
    } catch {
      throw new Error(`status --json did not print JSON:\n${r.stdout}\n${r.stderr}`);
    }
  }

  test('each init proves its own builder and leaves the others byte for byte', async () => {
    for (let i = 0; i < NAMES.length; i++) {
      const name = NAMES[i]!;
      const b = bs[i]!;
      const kept = NAMES.slice(0, i).map((n) => [block(machines(), n), block(sshConfig(), n), pinLine(c, n)]);
      const r = await c.nixremote([...initCommand(b, name), '--password-stdin'], { input: b.password + '\n' });
      assert.equal(r.exitCode, 0, `init ${name} failed:\n${r.stdout}\n${r.stderr}`);
      const built = new RegExp(`(/nix/store/\\S+-nixremote-probe) was built on ${name}`).exec(String(r.stdout));
      assert.ok(built, `no proof for ${name}:\n${r.stdout}`);
      assert.ok(b.storeHas(built[1]!), `the proof for ${name} is not in its store`);
      for (const other of bs.filter((x) => x !== b))
        assert.ok(!other.storeHas(built[1]!), `the proof for ${name} ran elsewhere`);
      assert.deepEqual(
        NAMES.slice(0, i).map((n) => [block(machines(), n), block(sshConfig(), n), pinLine(c, n)]),
        kept,
      );
    }
    // One key for all of them, as init's default.
    const keys = new Set(NAMES.map((n) => /^ssh:\/\/\S+ \S+ (\S+)/m.exec(block(machines(), n))![1]));
    assert.deepEqual([...keys], ['/root/.ssh/nix_remote']);
    // Three changed writes of the machines file leave at most three backups beside it.
    const backups = fs.readdirSync(c.etcNix).filter((f) => f.startsWith('machines.nixremote-'));
    assert.ok(backups.length >= 1 && backups.length <= 3, `backups: ${backups.join(', ')}`);

    // Re-running init for an existing name updates it in place: still one block, same place.
    const before = fs.readFileSync(machines(), 'utf8');
    const b2 = bs[1]!;
    const again = await c.nixremote([...initCommand(b2, 'w2'), '--max-jobs', '3', '--no-test-build']);
    assert.equal(again.exitCode, 0, `${again.stdout}\n${again.stderr}`);
    const after = fs.readFileSync(machines(), 'utf8');
    assert.equal(after.match(/# BEGIN nixremote builder w2$/gm)?.length, 1);
    assert.equal(
      after.replace(/^(ssh:\/\/w2 \S+ \S+) 3 /m, '$1 X '),
      before.replace(/^(ssh:\/\/w2 \S+ \S+) \d+ /m, '$1 X '),
    );
  });

  test('list shows every builder, a hand-written one beside them', async () => {
    fs.appendFileSync(machines(), 'ssh://nix@handmade.example x86_64-linux,aarch64-linux - 4 2 big-parallel kvm\n');
    const handLine = fs.readFileSync(machines(), 'utf8').split('\n').length - 1;
    const { code, rows } = await list();
    assert.equal(code, 0);
    assert.deepEqual(
      rows.map((r) => r.name),
      [...NAMES, 'handmade.example'],
    );
    for (const r of rows.slice(0, 3)) {
      assert.equal(r.managed, true);
      assert.equal(r.hostKeyPinned, true);
      assert.match(r.source, /^\/etc\/nix\/machines:\d+$/);
      assert.match(r.hostBlock ?? '', /^\/root\/\.ssh\/config:\d+$/);
      assert.equal(r.uri, `ssh://${r.name}`);
    }
    assert.equal(rows[1]!.maxJobs, 3);
    const hand = rows[3]!;
    assert.deepEqual(
      {
        uri: hand.uri,
        systems: hand.systems,
        maxJobs: hand.maxJobs,
        speedFactor: hand.speedFactor,
        supported: hand.supportedFeatures,
        mandatory: hand.mandatoryFeatures,
        source: hand.source,
        managed: hand.managed,
        pinned: hand.hostKeyPinned,
        block: hand.hostBlock,
      },
      {
        uri: 'ssh://nix@handmade.example',
        systems: ['x86_64-linux', 'aarch64-linux'],
        maxJobs: 4,
        speedFactor: 2,
        supported: ['big-parallel'],
        mandatory: ['kvm'],
        source: `/etc/nix/machines:${handLine}`,
        managed: false,
        pinned: false,
        block: null,
      },
    );
    const text = await c.nixremote(['list']);
    assert.equal(text.exitCode, 0);
    assert.match(
      String(text.stdout),
      /^w1 +ssh:\/\/w1 +\S+ +\d+ +\d+ +\S+ +trusted +nixremote +machine line +nixremote$/m,
    );
    assert.match(
      String(text.stdout),
      /^handmade\.example +ssh:\/\/nix@handmade\.example .* trusted +hand +NOT PINNED +none$/m,
    );
  });

  test('status shows a running build in its slot, and a stopped builder as down within the connect timeout', async () => {
    const all = await status(NAMES);
    assert.equal(all.code, 0, JSON.stringify(all.rows));
    for (const r of all.rows) {
      assert.equal(r.reachable, true, JSON.stringify(r));
      assert.equal(r.state, 'idle');
      assert.match(r.nixVersion ?? '', /^2\.\d+\.\d+$/);
      assert.ok(typeof r.latencyMs === 'number' && r.latencyMs > 0);
      assert.equal(r.slotsInUse, 0);
    }

    // A slow build sent to w1 alone holds one of its slots while it runs. (A builder's PATH
    // is /path-not-set: sleep needs its full path, or the build is over at once.)
    const line = /^ssh:\/\/w1 .*$/m.exec(fs.readFileSync(machines(), 'utf8'))![0];
    const slow = `derivation { name = "slow"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "/bin/sleep 12; echo ok > $out" ]; nonce = "${randomBytes(6).toString('hex')}"; }`;
    const started = Date.now();
    const build = c.run(`nix-build --no-out-link -j0 --builders ${q(line)} -E ${q(slow)}`);
    try {
      let seen: StatusRow | undefined;
      for (let i = 0; i < 40 && !(seen && seen.slotsInUse === 1); i++) {
        seen = (await status(['w1'])).rows[0];
        if (seen?.slotsInUse !== 1) await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal(seen?.slotsInUse, 1, `w1's slot never showed in use: ${JSON.stringify(seen)}`);
      assert.equal(seen?.state, 'busy');
    } finally {
      const r = await build;
      assert.equal(r.exitCode, 0, String(r.stderr));
      assert.ok(Date.now() - started >= 12_000, 'the slow build did not take its 12 s');
    }

    await bs[2]!.stop();
    try {
      const down = await status();
      assert.equal(down.code, 1);
      const w3 = down.rows.find((r) => r.name === 'w3')!;
      assert.deepEqual([w3.reachable, w3.state], [false, 'down']);
      assert.match(w3.error ?? '', /nothing listens|refused/);
      assert.ok(down.ms < 12_000, `status took ${down.ms} ms`);
      const text = await c.nixremote(['status', 'w3']);
      assert.equal(text.exitCode, 1);
      assert.match(String(text.stdout), /^w3 +down +- +- +0\/\d+ .*nothing listens/m);
      assert.match(String(text.stdout), /0 of 1 builder reachable/);
    } finally {
      await bs[2]!.start();
    }

    // --watch without a terminal prints a round after another, as plain lines.
    const watch = await c.nixremote(['status', '--watch', '--interval', '1', '--count', '2', 'w1']);
    assert.equal(watch.exitCode, 0, String(watch.stderr));
    assert.equal(String(watch.stdout).match(/^w1 +idle /gm)?.length, 2);
    assert.ok(!String(watch.stdout).includes('\x1b'), 'escape sequences without a terminal');
  });

  test('status --watch on a terminal redraws in place, like top, until Ctrl-C', async () => {
    // Ctrl-C in a terminal signals the whole foreground group; the shell that records the
    // exit code traps it so that it outlives nixremote.
    const t = await Terminal.start(c, `trap : INT; ${CLI} status --watch --interval 1 w1 w2`);
    try {
      await t.waitFor(/every 1 s, Ctrl-C stops\n2 of 2 builders reachable\n[\s\S]*w1 +idle/, 30_000);
      const first = (await t.visible()).match(/\d+:\d+:\d+/)?.[0];
      await new Promise((r) => setTimeout(r, 2500));
      const now = await t.visible();
      // Later rounds replaced the first on the screen: one table, a newer clock.
      assert.equal(now.match(/^NAME +STATE/gm)?.length, 1, now);
      assert.notEqual(now.match(/\d+:\d+:\d+/)?.[0], first, now);
      await t.keys('C-c');
      assert.equal(await t.exitCode(30_000), 0);
    } finally {
      await t.close();
    }
  });

  test('remove refuses what it did not write, changes nothing on a dry run, and removes the rest', async () => {
    const snapshot = c.snapshot();
    const unknown = await c.nixremote(['remove', 'nosuch', '--yes']);
    assert.equal(unknown.exitCode, 2);
    assert.match(String(unknown.stderr), /no builder named nosuch \(configured: w1, w2, w3, handmade\.example\)/);
    const hand = await c.nixremote(['remove', 'handmade.example', '--yes']);
    assert.equal(hand.exitCode, 2);
    assert.match(
      String(hand.stderr),
      /handmade\.example was not set up by nixremote; it is defined by hand at \/etc\/nix\/machines:\d+/,
    );
    const dry = await c.nixremote(['remove', 'w2', '--on-builder', '--dry-run']);
    assert.equal(dry.exitCode, 0, String(dry.stderr));
    assert.match(String(dry.stdout), /-# BEGIN nixremote builder w2/);
    assert.match(String(dry.stdout), /-Host w2/);
    assert.deepEqual(c.snapshot(), snapshot);
    const keyBlob = fs.readFileSync(path.join(c.root, '.ssh/nix_remote.pub'), 'utf8').split(' ')[1]!;
    assert.ok(bs[1]!.authorizedKeys().includes(keyBlob));

    // A file changed by someone else during the apply: nothing is written over it, and what
    // was already written is put back.
    const known = path.join(c.root, '.ssh/known_hosts');
    const beforeAll = c.snapshot();
    const racing = c.nixremote(['remove', 'w2', '--yes'], { env: { NIXREMOTE_TEST_STEP_DELAY_MS: '1500' } });
    let edited = false;
    racing.stdout!.on('data', (d: Buffer) => {
      if (!edited && /wrote \/root\/\.ssh\/config/.test(String(d))) {
        edited = true;
        fs.appendFileSync(
          known,
          'someone-else ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINH5oCf1+utmWwIxA1e4/pDspOuCUPEOh10Z3z0t5j5s\n',
        );
      }
    });
    const raced = await racing;
    assert.ok(edited, String(raced.stdout));
    assert.equal(raced.exitCode, 1, String(raced.stdout));
    assert.match(
      String(raced.stderr),
      /known_hosts changed while nixremote was running; nothing of it was overwritten/,
    );
    assert.match(String(raced.stderr), /put back as they were: \/root\/\.ssh\/config, \/etc\/nix\/machines$/m);
    assert.match(fs.readFileSync(known, 'utf8'), /^someone-else /m);
    fs.writeFileSync(known, fs.readFileSync(known, 'utf8').replace(/^someone-else .*\n/m, ''));
    const after = c.snapshot();
    for (const [k, v] of beforeAll) if (!/\.bak$/.test(k)) assert.equal(after.get(k), v, `${k} is not as it was`);

    const kept = ['w1', 'w3'].map((n) => [block(machines(), n), block(sshConfig(), n), pinLine(c, n)]);
    const r = await c.nixremote(['remove', 'w2', '--on-builder', '--yes']);
    assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(String(r.stdout), /removed the key's line from authorized_keys on w2/);
    assert.match(String(r.stdout), /the key \/root\/\.ssh\/nix_remote stays: w1, w3 use it/);
    assert.doesNotMatch(fs.readFileSync(machines(), 'utf8'), /ssh:\/\/w2 |builder w2$/m);
    assert.doesNotMatch(fs.readFileSync(sshConfig(), 'utf8'), /\bw2\b/);
    assert.doesNotMatch(fs.readFileSync(path.join(c.root, '.ssh/known_hosts'), 'utf8'), /^w2 /m);
    assert.ok(!bs[1]!.authorizedKeys().includes(keyBlob), "the key is still in w2's authorized_keys");
    assert.deepEqual(
      ['w1', 'w3'].map((n) => [block(machines(), n), block(sshConfig(), n), pinLine(c, n)]),
      kept,
    );
    assert.deepEqual(
      (await list()).rows.map((x) => x.name),
      ['w1', 'w3', 'handmade.example'],
    );
  });

  test('after the removal the other two pass doctor and builds offload to them', async () => {
    // The hand-written line names a host that does not exist; it was there for list and remove.
    fs.writeFileSync(machines(), fs.readFileSync(machines(), 'utf8').replace(/^ssh:\/\/nix@handmade.*\n/m, ''));
    const doc = await c.nixremote(['doctor', '--json']);
    const report = JSON.parse(String(doc.stdout)) as { status: string; builders: { name: string; status: string }[] };
    assert.equal(doc.exitCode, 0, String(doc.stdout));
    assert.deepEqual(
      report.builders.map((b) => [b.name, b.status]),
      [
        ['w1', 'pass'],
        ['w3', 'pass'],
      ],
    );
    for (let i = 0; i < 2; i++) {
      const build = await c.run(`nix-build --no-out-link -j0 -E ${q(PROBE_EXPR(randomBytes(8).toString('hex')))}`);
      assert.equal(build.exitCode, 0, String(build.stderr));
      const out = String(build.stdout).trim();
      assert.ok(bs[0]!.storeHas(out) || bs[2]!.storeHas(out), `${out} is on neither w1 nor w3`);
      assert.ok(!bs[1]!.storeHas(out), `${out} went to the removed w2`);
    }
  });

  test('remove --on-builder with the builder down still does the local part, and says so', async () => {
    await bs[2]!.stop();
    const r = await c.nixremote(['remove', 'w3', '--on-builder', '--yes']);
    assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(String(r.stdout), /could not reach w3 to remove the key \(.*\); the local part goes on/);
    assert.doesNotMatch(fs.readFileSync(machines(), 'utf8'), /ssh:\/\/w3 |builder w3$/m);
    assert.match(String(r.stdout), /the key \/root\/\.ssh\/nix_remote stays: w1 uses it/);
    const last = await c.nixremote(['remove', 'w1', '--yes']);
    assert.equal(last.exitCode, 0, String(last.stderr));
    assert.match(String(last.stdout), /no builder uses the key \/root\/\.ssh\/nix_remote any more; it stays/);
    assert.ok(fs.existsSync(path.join(c.root, '.ssh/nix_remote')));
  });
});
