// What a builder that is down costs, and what `keep` saves: a chain of small derivations
// built with -j0 against two live builders and one gone quiet (a port that takes TCP and
// never speaks SSH; the fastest, so the build hook tries it first). The baseline is the
// same chain with no quiet builder at all, measured in the same run; then the chain with
// the quiet one listed, and with it after one `keep` round has taken it out.
import { Builder, Client, initCommand, q } from '../test/e2e/harness.js';
import { Tarpit } from '../test/e2e/fleet.js';
import { median, timeMs } from './measure.js';

const CHAIN = 3;
const chain = (nonce: string) =>
  `let mk = name: dep: derivation { inherit name dep; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; nonce = "${nonce}"; }; in ${Array.from(
    { length: CHAIN },
    () => 'mk "c" (',
  ).join('')}""${')'.repeat(CHAIN)}`;

export async function benchKeep(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('keep: skipped (needs root for the builders in mount namespaces)');
    return;
  }
  // Each quiet run waits ConnectTimeout (10 s) per derivation: two runs of each kind at most.
  const runs = Math.min(Number(process.env.BENCH_RUNS) || 2, 2);
  const made: Builder[] = [];
  const c = new Client();
  let tarpit: Tarpit | null = null;
  try {
    for (const [name, speed] of [
      ['live1', '1'],
      ['live2', '2'],
      ['quiet', '8'],
    ] as const) {
      const b = await Builder.create();
      made.push(b);
      const r = await c.nixremote(
        [...initCommand(b, name), '--speed-factor', speed, '--no-test-build', '--password-stdin'],
        { input: `${b.password}\n` },
      );
      if (r.exitCode !== 0) throw new Error(`init ${name}: ${r.stderr}`);
    }
    let n = 0;
    const build = () =>
      c.run(`nix-build -j0 --no-out-link -E ${q(chain(`bench-${Date.now()}-${n++}`))}`).then((r) => {
        if (r.exitCode !== 0) throw new Error(String(r.stderr));
      });
    const each = async () => {
      const xs: number[] = [];
      for (let i = 0; i < runs; i++) xs.push(await timeMs(build));
      return median(xs);
    };
    const quiet = made[2]!;
    // Baseline: the quiet builder taken out by hand, so nothing is tried in vain.
    await c.nixremote(['disable', 'quiet']);
    const base = await each();
    await c.nixremote(['enable', 'quiet']);
    await quiet.stop();
    tarpit = await Tarpit.start(quiet.port);
    const down = await each();
    const k = await c.nixremote(['keep']);
    if (!/keep: disabled quiet/.test(String(k.stdout))) throw new Error(`keep did not take it out: ${k.stdout}`);
    const kept = await each();
    console.log(`a ${CHAIN}-derivation chain with -j0, one of three builders quiet, median of ${runs} runs`);
    const row = (what: string, t: number) =>
      console.log(`  ${what.padEnd(44)} ${t.toFixed(0).padStart(6)} ms   ${(t / base).toFixed(2)}x`);
    row('no quiet builder (baseline)', base);
    row('the quiet builder listed', down);
    row('after one keep round', kept);
  } finally {
    await tarpit?.stop();
    c.destroy();
    for (const b of made) await b.destroy();
  }
}
