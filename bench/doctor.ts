// doctor's wall time on 1 and 8 real builders (sshd + Nix on 127.0.0.1, as in the
// end-to-end tests), next to the irreducible work on the same builders done by hand
// (bench/rig.ts), the builders side by side. Needs root (mount namespaces, a builder user).
import { type Builder, Client } from '../test/e2e/harness.js';
import { paired, runs } from './measure.js';
import { byHand, setUpBuilders } from './rig.js';

async function must(p: Promise<{ exitCode?: number; stdout?: unknown; stderr?: unknown }>, what: string) {
  const r = await p;
  if (r.exitCode !== 0) throw new Error(`${what} failed: ${r.stdout}\n${r.stderr}`);
}

export async function benchDoctor(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('doctor: skipped (needs root for the builders in mount namespaces)');
    return;
  }
  const client = new Client();
  let builders: Builder[] = [];
  try {
    const rig = await setUpBuilders(client, 8, 'bench');
    builders = rig.builders;
    const names = (n: number) => rig.names.slice(0, n);
    const byHandRun = (n: number, build: boolean) => client.run(byHand(client, names(n), build));
    // By hand and doctor alternate, pair by pair (measure.ts).
    console.log(`doctor on real builders, ${runs} pairs, medians`);
    for (const n of [1, 8]) {
      const full = await paired(
        () => must(client.nixremote(['doctor', ...names(n)]), 'doctor'),
        () => byHandRun(n, true),
      );
      const quick = await paired(
        () => must(client.nixremote(['doctor', '--no-build', ...names(n)]), 'doctor'),
        () => byHandRun(n, false),
      );
      const row = (what: string, ms: number, ratio: number) =>
        console.log(`  ${what.padEnd(58)} ${ms.toFixed(0).padStart(6)} ms   ${ratio.toFixed(2)}x`);
      const b = `${n} builder${n > 1 ? 's' : ''}`;
      row(`${b}: login + store ping + -j0 build, by hand (baseline)`, full.b, 1);
      row(`${b}: nixremote doctor (target ${n === 1 ? '0.9' : '1.1'}x)`, full.a, full.ratio);
      row(`${b}: login + store ping, by hand (baseline)`, quick.b, 1);
      row(`${b}: nixremote doctor --no-build${n === 1 ? ' (target 1.15x)' : ''}`, quick.a, quick.ratio);
    }
  } finally {
    client.destroy();
    await Promise.all(builders.map((b) => b.destroy()));
  }
}
