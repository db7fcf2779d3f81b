// How many builders to look at side by side. status on 16 real builders (sshd + Nix on
// 127.0.0.1, each in its own namespace, as in the end-to-end tests) at several --jobs,
// next to the bare minimum measured in the same run: one `ssh NAME <the same probe>` per
// builder, all 16 started at once. On a machine where the ssh key exchanges are CPU-bound,
// widths past a few per core buy nothing; the chosen default should sit at the knee.
import * as os from 'node:os';
import { Builder, Client } from '../test/e2e/harness.js';
import { medianMs, runs } from './measure.js';
import { authorize, fleetClientSetup, hostKeyPub, mapLimit } from '../test/e2e/fleet.js';
import { fleetWidth } from '../src/builders/status.js';
import { probeCommand } from '../src/path/probe.js';

const N = 16;

export async function benchFleet(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('status on a fleet: skipped (needs root for the builders in mount namespaces)');
    return;
  }
  const builders: Builder[] = [];
  const client = new Client();
  try {
    await mapLimit(
      Array.from({ length: N }, (_, i) => i),
      4,
      async () => builders.push(await Builder.create()),
    );
    const names = builders.map((_, i) => `fleet${String(i).padStart(2, '0')}`);
    const { publicKey } = await fleetClientSetup(
      client,
      builders.map((b, i) => ({ name: names[i]!, port: b.port, hostKeyPub: hostKeyPub(b) })),
    );
    for (const b of builders) authorize(b, publicKey);
    const facts = probeCommand(null).replace(/'/g, `'\\''`);
    const bare = () =>
      client.run(names.map((n) => `ssh -x -a -o BatchMode=yes ${n} '${facts}' >/dev/null &`).join(' ') + ' wait');
    const status = (jobs: number) =>
      client.nixremote(['status', '--json', '--jobs', String(jobs)]).then((r) => {
        if (r.exitCode !== 0) throw new Error(`status failed: ${r.stdout}\n${r.stderr}`);
      });
    console.log(`status on ${N} real builders (${os.availableParallelism()} cores here), median of ${runs} runs`);
    const base = await medianMs(bare);
    console.log(`  ${'ssh + facts, all at once (baseline)'.padEnd(40)} ${base.toFixed(0).padStart(6)} ms   1.00x`);
    for (const jobs of [1, 2, 4, 8, 16]) {
      const t = await medianMs(() => status(jobs));
      const mark = jobs === fleetWidth() ? '  <- default' : '';
      console.log(
        `  ${`nixremote status --jobs ${jobs}`.padEnd(40)} ${t.toFixed(0).padStart(6)} ms   ${(t / base).toFixed(2)}x${mark}`,
      );
    }
  } finally {
    client.destroy();
    await mapLimit(builders, 8, (b) => b.destroy());
  }
}
