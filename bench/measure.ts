// The median wall time of an async piece of work over BENCH_RUNS runs (default 3).
export const runs = Number(process.env.BENCH_RUNS) || 3;

export async function medianMs(fn: () => Promise<unknown>): Promise<number> {
  const all: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    all.push(performance.now() - t);
  }
  all.sort((a, b) => a - b);
  return all[Math.floor(all.length / 2)]!;
}

/** The wall time of one run of some async work. */
export async function timeMs(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
