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

/**
 * a and b alternating over `runs` runs, the ratio the median of the pairs' (as farm-bench
 * does), so a drift in the machine's speed moves both sides alike.
 */
export async function paired(
  a: () => Promise<unknown>,
  b: () => Promise<unknown>,
): Promise<{ a: number; b: number; ratio: number }> {
  const as: number[] = [];
  const bs: number[] = [];
  for (let i = 0; i < runs; i++) {
    bs.push(await timeMs(b));
    as.push(await timeMs(a));
  }
  return { a: median(as), b: median(bs), ratio: median(as.map((x, i) => x / bs[i]!)) };
}
