// Runs checks as soon as what they need has passed, so independent checks overlap (the
// store ping and the real build, say). A check whose prerequisite failed, or was itself
// skipped for that, is skipped, not failed a second time (a check that skipped itself,
// having nothing to look at, blocks nothing); a check that throws or times out is a failure with
// the error as its cause, never a crash. Reports come back in the declared order.
import type { Check, CheckReport, Result } from './types.js';

export async function runChecks<S>(checks: Check<S>[], state: S): Promise<CheckReport[]> {
  const started = new Map<string, Promise<CheckReport>>();
  const ids = new Set(checks.map((c) => c.id));
  for (const c of checks) {
    const unknown = c.needs.find((n) => !ids.has(n) || !started.has(n));
    if (unknown) throw new Error(`check ${c.id} needs ${unknown}, which is not declared before it`);
    const deps = c.needs.map((n) => started.get(n)!);
    started.set(
      c.id,
      Promise.all(deps).then(async (done) => {
        const blocked = done.find((r) => r.status === 'fail' || (r.status === 'skip' && r.blockedBy));
        if (blocked)
          return {
            id: c.id,
            title: c.title,
            status: 'skip',
            summary: `skipped: needs ${blocked.id}`,
            blockedBy: blocked.id,
            ms: 0,
          } satisfies CheckReport;
        const t0 = Date.now();
        let r: Result;
        try {
          r = await withTimeout(c.run(state), c.timeoutMs ?? 60_000, c.title);
        } catch (e) {
          r = {
            status: 'fail',
            summary: `${c.title}: the check itself failed`,
            cause: (e as Error).message,
            fix: 'run with --verbose and report this',
          };
        }
        return { id: c.id, title: c.title, ms: Date.now() - t0, ...r };
      }),
    );
  }
  return Promise.all(checks.map((c) => started.get(c.id)!));
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${Math.round(ms / 1000)} s`)), ms);
    }),
  ]);
}

export function worst(reports: { status: string }[]): 'pass' | 'warn' | 'fail' {
  if (reports.some((r) => r.status === 'fail')) return 'fail';
  if (reports.some((r) => r.status === 'warn')) return 'warn';
  return 'pass';
}
