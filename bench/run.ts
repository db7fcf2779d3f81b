// `npm run bench`: each figure next to its baseline, measured in the same run.
// BENCH_ONLY=startup,doctor,init,status,keep,why,scale picks parts; BENCH_RUNS sets the runs of the
// builder benchmarks (default 3), BENCH_STARTUP_RUNS the start-up pairs (default 40).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchDoctor } from './doctor.js';
import { benchFleet } from './fleet.js';
import { benchInit } from './init.js';
import { benchKeep } from './keep.js';
import { benchScale } from './scale.js';
import { benchWhy } from './why.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(repo, 'bin/nixremote');
const only = process.env.BENCH_ONLY?.split(',');
const want = (part: string) => !only || only.includes(part);

/** Wall time of one run, its output read through a pipe as a shell pipeline or script would. */
function once(args: string[]): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}`);
  return Number(process.hrtime.bigint() - t) / 1e6;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

if (want('startup')) {
  // Runs alternate with bare node and the ratio is taken pair by pair, so a drift in the
  // machine's speed during the run moves both sides alike.
  const runs = Number(process.env.BENCH_STARTUP_RUNS) || 40;
  console.log(`start-up against bare node, ${runs} pairs, medians (target 1.1x)`);
  for (const args of [['--version'], ['--help'], ['init', '--help']]) {
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < runs; i++) {
      b.push(once(['-e', '0']));
      a.push(once([cli, ...args]));
    }
    const ratio = median(a.map((x, i) => x / b[i]!));
    const what = `nixremote ${args.join(' ')}`;
    console.log(
      `  ${what.padEnd(24)} ${median(a).toFixed(1).padStart(6)} ms   node -e 0 ${median(b).toFixed(1).padStart(6)} ms   ${ratio.toFixed(2)}x`,
    );
  }
}
if (want('doctor')) await benchDoctor();
if (want('init')) await benchInit();
if (want('status')) await benchFleet();
if (want('keep')) await benchKeep();
if (want('why')) await benchWhy();
if (want('scale')) await benchScale();
