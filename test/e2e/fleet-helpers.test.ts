// The fleet helpers (fleet.ts) checked against real sockets, a real sshd and real ssh, so a
// many-builder test that fails can trust its tools: a tarpit that is silent, a proxy that
// is slow both ways yet passes bytes unchanged and in order, a hand-made client setup
// that ssh accepts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { execa } from 'execa';
import { Builder, Client } from './harness.js';
import { DelayProxy, Tarpit, authorize, fleetClientSetup, hostKeyPub, mapLimit, nixSystem } from './fleet.js';

function connect(port: number): Promise<{ sock: net.Socket; connectedAt: number }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.off('error', reject);
      resolve({ sock, connectedAt: performance.now() });
    });
  });
}

/** The first line a server sends (its SSH banner), and how long after connect it came. */
/** A real builder, on a machine whose fresh nix-bin left no /nix or /etc/nix to bind over. */
async function createBuilder(): Promise<Builder> {
  return Builder.create();
}

async function readBanner(port: number, timeoutMs = 5_000): Promise<{ line: string; ms: number }> {
  const { sock, connectedAt } = await connect(port);
  try {
    return await new Promise((resolve, reject) => {
      let buf = '';
      const fail = () => reject(new Error(`no banner from port ${port} within ${timeoutMs} ms`));
      const timer = setTimeout(fail, timeoutMs);
      sock.on('error', reject);
      sock.on('close', () => reject(new Error(`port ${port} closed before a full line: ${JSON.stringify(buf)}`)));
      sock.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        const nl = buf.indexOf('\n');
        if (nl >= 0) {
          clearTimeout(timer);
          resolve({ line: buf.slice(0, nl + 1), ms: performance.now() - connectedAt });
        }
      });
    });
  } finally {
    sock.destroy();
  }
}

describe('Tarpit', () => {
  test('accepts TCP, says nothing, and stop() drops the held connection', async () => {
    const tarpit = await Tarpit.start();
    let sock: net.Socket | undefined;
    try {
      ({ sock } = await connect(tarpit.port));
      const s = sock;
      const got: Buffer[] = [];
      s.on('data', (d: Buffer) => got.push(d));
      // Something to ignore: a client speaking first must not make it answer.
      s.write('SSH-2.0-probe\r\n');
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(Buffer.concat(got).length, 0, 'the tarpit sent data');
      assert.ok(!s.destroyed, 'the tarpit closed the connection');
      assert.equal(tarpit.connections, 1);

      const closed = new Promise<void>((r) => s.once('close', () => r()));
      s.on('error', () => {});
      await tarpit.stop();
      await Promise.race([
        closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error('stop() left the connection open')), 2_000)),
      ]);
      await assert.rejects(connect(tarpit.port), /ECONNREFUSED/, 'still listening after stop()');
    } finally {
      sock?.destroy();
      await tarpit.stop();
    }
  });
});

describe('DelayProxy', () => {
  test('an echo through it: same bytes, same order, delayed each way', async () => {
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const proxy = await DelayProxy.start((echo.address() as net.AddressInfo).port, 150);
    try {
      const { sock, connectedAt } = await connect(proxy.port);
      const sent = Array.from({ length: 200 }, (_, i) => `chunk ${i};`);
      const received: Buffer[] = [];
      let firstAt = 0;
      sock.on('data', (d: Buffer) => {
        if (!firstAt) firstAt = performance.now();
        received.push(d);
      });
      const ended = new Promise<void>((r) => sock.once('end', () => r()));
      // Many small writes spread over a few event-loop turns, so chunks arrive separately.
      for (const [i, s] of sent.entries()) {
        sock.write(s);
        if (i % 20 === 0) await new Promise((r) => setImmediate(r));
      }
      // A half-close must travel through too: the echo server ends only after our end.
      sock.end();
      await ended;
      assert.equal(Buffer.concat(received).toString(), sent.join(''));
      assert.ok(firstAt - connectedAt >= 300, `first echo after ${Math.round(firstAt - connectedAt)} ms, want >= 300`);
      sock.destroy();
    } finally {
      await proxy.stop();
      await new Promise((r) => echo.close(r));
    }
  });

  test('a target that refuses: the client is dropped, the test process survives', async () => {
    const gone = net.createServer();
    await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
    const port = (gone.address() as net.AddressInfo).port;
    await new Promise((r) => gone.close(r));
    const proxy = await DelayProxy.start(port, 50);
    try {
      const { sock } = await connect(proxy.port);
      sock.on('error', () => {});
      await new Promise<void>((resolve, reject) => {
        sock.once('close', () => resolve());
        setTimeout(() => reject(new Error('the client was not dropped')), 2_000);
      });
    } finally {
      await proxy.stop();
    }
  });

  test('in front of a real sshd: the same banner, at least 200 ms late; ssh-keyscan works through it', async () => {
    const b = await createBuilder();
    let proxy: DelayProxy | undefined;
    try {
      proxy = await DelayProxy.start(b.port, 200);
      const direct = await readBanner(b.port);
      const slow = await readBanner(proxy.port);
      assert.match(direct.line, /^SSH-2\.0-\S+.*\r\n$/);
      assert.equal(slow.line, direct.line);
      assert.ok(slow.ms >= 200, `banner through the proxy after ${slow.ms.toFixed(1)} ms, want >= 200`);

      // A key exchange needs both directions to work.
      const scan = await execa('ssh-keyscan', ['-T', '10', '-t', 'ed25519', '-p', String(proxy.port), '127.0.0.1'], {
        reject: false,
      });
      const keys = String(scan.stdout)
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .map((l) => l.split(/\s+/).slice(1).join(' '));
      assert.deepEqual(keys, [hostKeyPub(b)], `ssh-keyscan through the proxy:\n${scan.stdout}\n${scan.stderr}`);

      let held: net.Socket | undefined;
      try {
        ({ sock: held } = await connect(proxy.port));
        const s = held;
        s.on('error', () => {});
        const closed = new Promise<void>((r) => s.once('close', () => r()));
        await proxy.stop();
        await Promise.race([
          closed,
          new Promise((_, reject) => setTimeout(() => reject(new Error('stop() left a connection open')), 2_000)),
        ]);
      } finally {
        held?.destroy();
      }
    } finally {
      await proxy?.stop();
      await b.destroy();
    }
  });
});

describe('fleetClientSetup and authorize', () => {
  test('ssh from the client reaches a builder directly and through a proxy, and times out at a tarpit', async () => {
    const b = await createBuilder();
    const c = new Client();
    const tarpit = await Tarpit.start();
    let proxy: DelayProxy | undefined;
    try {
      proxy = await DelayProxy.start(b.port, 50);
      const fleet = [
        { name: 'fleet-0', port: b.port, hostKeyPub: hostKeyPub(b) },
        { name: 'fleet-slow', port: proxy.port, hostKeyPub: hostKeyPub(b) },
        { name: 'fleet-tarpit', port: tarpit.port, hostKeyPub: null },
      ];
      const { keyPath, publicKey } = await fleetClientSetup(c, fleet, {});
      assert.equal(keyPath, '/root/.ssh/fleet_key');
      assert.match(publicKey, /^ssh-ed25519 \S+/);
      authorize(b, publicKey);

      const mode = (f: string) => fs.statSync(f).mode & 0o777;
      assert.equal(mode(path.join(c.root, '.ssh')), 0o700);
      assert.equal(mode(path.join(c.root, '.ssh/fleet_key')), 0o600);
      assert.equal(mode(path.join(c.root, '.ssh/config')), 0o600);
      const ak = path.join(b.dir, 'home/.ssh/authorized_keys');
      assert.equal(mode(ak), 0o600);
      assert.equal(fs.statSync(ak).uid, fs.statSync(path.join(b.dir, 'home')).uid);
      assert.equal(
        fs.readFileSync(path.join(c.root, '.ssh/known_hosts'), 'utf8'),
        `fleet-0 ${hostKeyPub(b)}\nfleet-slow ${hostKeyPub(b)}\n`,
      );
      assert.equal(
        fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8'),
        fleet.map((f) => `ssh://${f.name} ${nixSystem()} /root/.ssh/fleet_key 1 1 - - -\n`).join(''),
      );
      const conf = fs.readFileSync(path.join(c.etcNix, 'nix.conf'), 'utf8');
      assert.match(conf, /^sandbox = false$/m, 'the Client constructor’s nix.conf was lost');
      assert.match(conf, /^builders = @\/etc\/nix\/machines$/m);

      // StrictHostKeyChecking=yes: only the pinned known_hosts lines can make these work.
      const ssh = (name: string, extra = '') =>
        c.run(`ssh -o BatchMode=yes -o StrictHostKeyChecking=yes ${extra} ${name} whoami`);
      for (const name of ['fleet-0', 'fleet-slow']) {
        const r = await ssh(name);
        assert.equal(r.exitCode, 0, `ssh ${name}: ${r.stderr}`);
        assert.equal(String(r.stdout).trim(), b.user);
      }
      // The command line wins over the config's ConnectTimeout 10, to keep this short.
      const t0 = performance.now();
      const r = await ssh('fleet-tarpit', '-o ConnectTimeout=2');
      assert.notEqual(r.exitCode, 0);
      assert.match(String(r.stderr), /timed out during banner exchange/);
      assert.ok(performance.now() - t0 >= 1_900, 'ssh gave up on the tarpit before its ConnectTimeout');
    } finally {
      await proxy?.stop();
      await tarpit.stop();
      c.destroy();
      await b.destroy();
    }
  });
});

describe('mapLimit', () => {
  test('keeps order, never runs more than n at once, and stops starting work after a failure', async () => {
    let running = 0;
    let peak = 0;
    const out = await mapLimit([50, 10, 30, 0, 20, 40, 5], 3, async (ms, i) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, ms));
      running--;
      return i * 10;
    });
    assert.deepEqual(out, [0, 10, 20, 30, 40, 50, 60]);
    assert.equal(peak, 3);

    const started: number[] = [];
    await assert.rejects(
      mapLimit([0, 1, 2, 3, 4, 5], 2, async (n) => {
        started.push(n);
        if (n === 1) throw new Error('boom 1');
        await new Promise((r) => setTimeout(r, 20));
        return n;
      }),
      /boom 1/,
    );
    assert.deepEqual(started, [0, 1], 'work started after a failure');
  });
});
