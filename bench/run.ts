// Start-up cost of the CLI against bare `node`, measured in the same run. --help and
// --version must not load the prompt or ssh libraries, so they should stay close to 1x.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchDoctor } from './doctor.js';
import { benchFleet } from './fleet.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(repo, 'bin/nixremote');
const runs = Number(process.env.BENCH_RUNS) || 20;

function median(args: string[]): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    const r = spawnSync(process.execPath, args, { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}`);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

const base = median(['-e', '0']);
console.log(`start-up, median of ${runs} runs`);
console.log(`  ${'node -e 0 (baseline)'.padEnd(32)} ${base.toFixed(1).padStart(7)} ms   1.00x`);
for (const args of [['--version'], ['--help'], ['init', '--help']]) {
  const t = median([cli, ...args]);
  console.log(
    `  ${`nixremote ${args.join(' ')}`.padEnd(32)} ${t.toFixed(1).padStart(7)} ms   ${(t / base).toFixed(2)}x`,
  );
}

await benchDoctor();
await benchFleet();
