// 32 builders in one run: real sshds, some behind a link that delays 200 ms each way, some
// stopped, some tarpits (the port takes TCP and never speaks SSH). list, status and doctor
// report every one on its own, and the whole run stays within a stated bound.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Builder, Client } from './harness.js';
import { authorize, DelayProxy, fleetClientSetup, hostKeyPub, mapLimit, Tarpit, type FleetMember } from './fleet.js';

const DIRECT = 20;
const DELAYED = 4;
const STOPPED = 4;
const TARPITS = 4;
const TOTAL = DIRECT + DELAYED + STOPPED + TARPITS;

// The bounds asserted below. status: one login per builder, at most ConnectTimeout (10 s)
// for a tarpit, the rest side by side; doctor (--no-build): about a second of this
// machine's CPU per working builder plus the 10 s handshake timeout for a tarpit.
const STATUS_BOUND_MS = 30_000;
const DOCTOR_BOUND_MS = 120_000;

type Kind = 'direct' | 'delayed' | 'stopped' | 'tarpit';
const kindOf = (i: number): Kind =>
  i < DIRECT ? 'direct' : i < DIRECT + DELAYED ? 'delayed' : i < DIRECT + DELAYED + STOPPED ? 'stopped' : 'tarpit';
// Kinds interleaved in the file, so that no kind is favoured by its place in the order.
const order = Array.from({ length: TOTAL }, (_, i) => i).sort((a, b) => (a % 8) - (b % 8) || a - b);
const name = (i: number) => `m${String(i).padStart(2, '0')}-${kindOf(i)}`;

interface StatusRow {
  name: string;
  state: string;
  reachable: boolean;
  latencyMs: number | null;
  error?: string;
}

describe('32 builders at once', () => {
  const builders: Builder[] = [];
  const proxies: DelayProxy[] = [];
  const tarpits: Tarpit[] = [];
  let c: Client;

  before(async () => {
    const members = await mapLimit(order, 4, async (i): Promise<FleetMember> => {
      const kind = kindOf(i);
      if (kind === 'tarpit') {
        const t = await Tarpit.start();
        tarpits.push(t);
        return { name: name(i), port: t.port, hostKeyPub: null };
      }
      const b = await Builder.create();
      builders.push(b);
      let port = b.port;
      if (kind === 'delayed') {
        const p = await DelayProxy.start(b.port, 200);
        proxies.push(p);
        port = p.port;
      }
      return { name: name(i), port, hostKeyPub: hostKeyPub(b), builder: b } as FleetMember & { builder: Builder };
    });
    c = new Client();
    const { publicKey } = await fleetClientSetup(c, members);
    for (const m of members as (FleetMember & { builder?: Builder })[]) {
      if (!m.builder) continue;
      authorize(m.builder, publicKey);
      if (m.name.endsWith('-stopped')) await m.builder.stop();
    }
  });

  after(async () => {
    c?.destroy();
    for (const p of proxies) await p.stop();
    for (const t of tarpits) await t.stop();
    await mapLimit(builders, 8, (b) => b.destroy());
  });

  test('list shows all 32 from the machines file', async () => {
    const r = await c.nixremote(['list', '--json']);
    assert.equal(r.exitCode, 0, String(r.stderr));
    const rows = JSON.parse(String(r.stdout)).builders as {
      name: string;
      managed: boolean;
      hostKeyPinned: boolean;
      hostBlock: string | null;
    }[];
    assert.deepEqual(
      rows.map((x) => x.name),
      order.map(name),
    );
    for (const x of rows) {
      assert.equal(x.managed, false);
      assert.match(x.hostBlock ?? '', /^\/root\/\.ssh\/config:\d+$/);
      assert.equal(x.hostKeyPinned, !x.name.endsWith('-tarpit'), x.name);
    }
  });

  test(`status reports each builder on its own within ${STATUS_BOUND_MS / 1000} s`, async () => {
    const t0 = Date.now();
    const r = await c.nixremote(['status', '--json']);
    const ms = Date.now() - t0;
    assert.equal(r.exitCode, 1, 'some builders are down, so status exits 1');
    const rows = JSON.parse(String(r.stdout)).builders as StatusRow[];
    assert.deepEqual(
      rows.map((x) => x.name),
      order.map(name),
    );
    for (const x of rows) {
      const kind = x.name.split('-')[1] as Kind;
      if (kind === 'direct' || kind === 'delayed') {
        assert.equal(x.reachable, true, JSON.stringify(x));
        assert.equal(x.state, 'idle', JSON.stringify(x));
        // A login is several round trips, each 400 ms through the delaying link.
        if (kind === 'delayed') assert.ok(x.latencyMs! >= 800, JSON.stringify(x));
      } else {
        assert.deepEqual([x.reachable, x.state], [false, 'down'], JSON.stringify(x));
        assert.match(x.error ?? '', kind === 'stopped' ? /nothing listens/ : /no SSH server spoke/, JSON.stringify(x));
      }
    }
    assert.ok(ms < STATUS_BOUND_MS, `status on ${TOTAL} builders took ${ms} ms`);
  });

  test(`doctor --no-build reports each builder on its own within ${DOCTOR_BOUND_MS / 1000} s`, async () => {
    const t0 = Date.now();
    const r = await c.nixremote(['doctor', '--json', '--no-build']);
    const ms = Date.now() - t0;
    assert.equal(r.exitCode, 1);
    const report = JSON.parse(String(r.stdout)) as {
      builders: { name: string; status: string; checks: { id: string; status: string }[] }[];
    };
    assert.deepEqual(
      report.builders.map((b) => b.name),
      order.map(name),
    );
    for (const b of report.builders) {
      const kind = b.name.split('-')[1] as Kind;
      const failed = b.checks.find((x) => x.status === 'fail')?.id ?? null;
      const expected = kind === 'stopped' ? 'tcp' : kind === 'tarpit' ? 'host-key' : null;
      assert.equal(failed, expected, `${b.name}: ${JSON.stringify(b.checks.map((x) => [x.id, x.status]))}`);
    }
    assert.ok(ms < DOCTOR_BOUND_MS, `doctor on ${TOTAL} builders took ${ms} ms`);
  });
});
