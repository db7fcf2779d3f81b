// How many builders to look at side by side. status on 32 real builders (sshd + Nix on
// 127.0.0.1, each in its own namespace, as in the end-to-end tests) at several --jobs,
// next to the bare minimum measured in the same run: one `ssh NAME <the same probe>` per
// builder, all 32 started at once (the target: the default width within 1.1x of that). On a machine where the ssh key exchanges are CPU-bound,
// widths past a few per core buy nothing; the chosen default should sit at the knee.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Builder, Client } from '../test/e2e/harness.js';
import { paired, runs } from './measure.js';
import { authorize, fleetClientSetup, hostKeyPub, mapLimit } from '../test/e2e/fleet.js';
import { fleetWidth } from '../src/builders/status.js';
import { probeCommand } from '../src/path/probe.js';

const N = 32;

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
    // The probe as one file (32 copies of it on one command line would pass the kernel's
    // limit on an argument); every ssh must succeed, or the baseline measured nothing.
    fs.writeFileSync(path.join(client.root, 'probe.sh'), probeCommand(null));
    const bare = () =>
      client
        .run(
          `P=$(cat /root/probe.sh); pids=; for n in ${names.join(' ')}; do ssh -x -a -o BatchMode=yes $n "$P" >/dev/null & pids="$pids $!"; done; rc=0; for p in $pids; do wait $p || rc=1; done; exit $rc`,
        )
        .then((r) => {
          if (r.exitCode !== 0) throw new Error(`the baseline's logins failed: ${r.stderr}`);
        });
    const status = (jobs: number) =>
      client.nixremote(['status', '--json', '--jobs', String(jobs)]).then((r) => {
        if (r.exitCode !== 0) throw new Error(`status failed: ${r.stdout}\n${r.stderr}`);
      });
    console.log(
      `status on ${N} real builders (${os.availableParallelism()} cores here), ${runs} pairs each (a run of the baseline, then one of status), medians`,
    );
    for (const jobs of [2, 4, 8, 16, 32]) {
      const p = await paired(() => status(jobs), bare);
      const mark = jobs === fleetWidth() ? '  <- default (target 1.1x)' : '';
      console.log(
        `  ${`nixremote status --jobs ${jobs}`.padEnd(34)} ${p.a.toFixed(0).padStart(6)} ms   all ${N} ssh + facts at once ${p.b.toFixed(0).padStart(6)} ms   ${p.ratio.toFixed(2)}x${mark}`,
      );
    }
  } finally {
    client.destroy();
    await mapLimit(builders, 8, (b) => b.destroy());
  }
}
