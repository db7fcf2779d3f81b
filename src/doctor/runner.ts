// Runs checks in dependency order. A check whose prerequisite did not pass is skipped,
// not failed a second time; a check that throws or times out is a failure with the
// error as its evidence, never a crash.
import type { Check, CheckReport, Result } from './types.js';

export async function runChecks<S>(checks: Check<S>[], state: S, onDone?: (r: CheckReport) => void): Promise<CheckReport[]> {
  const byId = new Map<string, CheckReport>();
  const out: CheckReport[] = [];
  for (const c of checks) {
    const blocked = c.needs.find((n) => {
      const r = byId.get(n);
      return !r || (r.status !== 'pass' && r.status !== 'warn');
    });
    let report: CheckReport;
    if (blocked) {
      report = { id: c.id, title: c.title, status: 'skip', summary: `skipped: needs ${blocked}`, ms: 0 };
    } else {
      const t0 = Date.now();
      let r: Result;
      try {
        r = await withTimeout(c.run(state), c.timeoutMs ?? 60_000, c.title);
      } catch (e) {
        r = { status: 'fail', summary: `${c.title}: the check itself failed`, cause: (e as Error).message, fix: 'run with --verbose and report this' };
      }
      report = { id: c.id, title: c.title, ms: Date.now() - t0, ...r };
    }
    byId.set(c.id, report);
    out.push(report);
    onDone?.(report);
  }
  return out;
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
