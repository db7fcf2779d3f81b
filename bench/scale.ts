// status and doctor --no-build at 32 builders and at 128, the same mix at both sizes: half
// real sshds (each in its own namespace with its own Nix, as in the end-to-end tests), an
// eighth behind a link that delays 200 ms each way, an eighth stopped, a quarter tarpits
// (the port takes TCP and never speaks SSH, so ssh waits its ConnectTimeout). Printed: wall
// time and nixremote's peak memory at each size, and the ratio of 128 to 32 (4.00 is
// linear growth; the targets: no worse than that). Tests check behaviour, never this.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Builder, Client } from '../test/e2e/harness.js';
import {
  authorize,
  DelayProxy,
  fleetClientSetup,
  hostKeyPub,
  mapLimit,
  Tarpit,
  type FleetMember,
} from '../test/e2e/fleet.js';
import { timeMs } from './measure.js';

interface Fleet {
  client: Client;
  stop: () => Promise<void>;
}

async function fleet(n: number): Promise<Fleet> {
  const builders: Builder[] = [];
  const proxies: DelayProxy[] = [];
  const tarpits: Tarpit[] = [];
  const kind = (i: number) => (i % 8 < 4 ? 'direct' : i % 8 === 4 ? 'delayed' : i % 8 === 5 ? 'stopped' : 'tarpit');
  const members = await mapLimit(
    Array.from({ length: n }, (_, i) => i),
    8,
    async (i): Promise<FleetMember & { builder?: Builder }> => {
      const name = `s${String(i).padStart(3, '0')}-${kind(i)}`;
      if (kind(i) === 'tarpit') {
        const t = await Tarpit.start();
        tarpits.push(t);
        return { name, port: t.port, hostKeyPub: null };
      }
      const b = await Builder.create();
      builders.push(b);
      let port = b.port;
      if (kind(i) === 'delayed') {
        const p = await DelayProxy.start(b.port, 200);
        proxies.push(p);
        port = p.port;
      }
      return { name, port, hostKeyPub: hostKeyPub(b), builder: b };
    },
  );
  const client = new Client();
  const { publicKey } = await fleetClientSetup(client, members);
  for (const m of members) {
    if (!m.builder) continue;
    authorize(m.builder, publicKey);
    if (m.name.endsWith('-stopped')) await m.builder.stop();
  }
  return {
    client,
    stop: async () => {
      client.destroy();
      for (const p of proxies) await p.stop();
      for (const t of tarpits) await t.stop();
      await mapLimit(builders, 8, (b) => b.destroy());
    },
  };
}

/** Wall time and nixremote's peak resident memory (MiB) of one run, every builder reported. */
async function measure(c: Client, args: string[], n: number): Promise<{ ms: number; mib: number }> {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-rss-')), 'rss');
  const hook = path.join(path.dirname(out), 'rss.cjs');
  // The process's own peak, written as it exits (process.resourceUsage: maxRSS in KiB).
  fs.writeFileSync(
    hook,
    `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(out)}, String(process.resourceUsage().maxRSS)));\n`,
  );
  let doc: { builders: unknown[] } = { builders: [] };
  const ms = await timeMs(async () => {
    const r = await c.nixremote([...args, '--json'], { env: { NO_COLOR: '1', NODE_OPTIONS: `--require ${hook}` } });
    doc = JSON.parse(String(r.stdout));
  });
  if (doc.builders.length !== n) throw new Error(`${args.join(' ')} reported ${doc.builders.length} of ${n} builders`);
  return { ms, mib: Number(fs.readFileSync(out, 'utf8')) / 1024 };
}

export async function benchScale(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('status and doctor at 128 builders: skipped (needs root for the builders in mount namespaces)');
    return;
  }
  const sizes = [32, 128];
  const seen = new Map<string, { ms: number; mib: number }[]>();
  for (const n of sizes) {
    const f = await fleet(n);
    try {
      for (const args of [['status'], ['doctor', '--no-build']]) {
        const k = args.join(' ');
        seen.set(k, [...(seen.get(k) ?? []), await measure(f.client, args, n)]);
      }
    } finally {
      await f.stop();
    }
  }
  console.log(
    `status and doctor --no-build at 32 and 128 builders (half real sshds, an eighth delayed 200 ms, an eighth stopped, a quarter tarpits; ${os.availableParallelism()} cores here), one run each`,
  );
  for (const [k, [a, b]] of seen) {
    console.log(
      `  nixremote ${k.padEnd(20)} 32: ${(a!.ms / 1000).toFixed(1).padStart(6)} s ${a!.mib.toFixed(0).padStart(4)} MiB   128: ${(b!.ms / 1000).toFixed(1).padStart(6)} s ${b!.mib.toFixed(0).padStart(4)} MiB   time ${(b!.ms / a!.ms).toFixed(2)}x, memory ${(b!.mib / a!.mib).toFixed(2)}x (linear: 4.00x)`,
    );
  }
}
