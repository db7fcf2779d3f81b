// Work over many items with at most `n` in flight: a fleet of builders is checked side by side,
// but not all at once, since each check costs processes and CPU on this machine.
/**
 * fn over items, at most n at a time, results in the order of items. After the first
 * failure no new item is started; the ones already running are awaited, then the first
 * error is thrown. fn should record what it creates (e.g. push each Builder to a list)
 * so the caller can clean up after a failure.
 */
export async function mapLimit<T, R>(items: T[], n: number, fn: (t: T, i: number) => Promise<R>): Promise<R[]> {
  if (!(n >= 1)) throw new Error(`mapLimit: n must be at least 1, got ${n}`);
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  let firstError: unknown;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!, i);
      } catch (e) {
        if (!failed) firstError = e;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failed) throw firstError;
  return results;
}
