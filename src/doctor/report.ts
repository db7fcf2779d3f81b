// Doctor's report: for people, a line per check with ✓/!/✗/- and, for what is wrong, the
// cause, the fix and the evidence; for programs, one JSON document.
import type { Output } from '../io/output.js';
import type { CheckReport } from './types.js';
import { printable } from '../text/printable.js';

export interface BuilderReport {
  name: string;
  uri: string;
  source: string;
  status: 'pass' | 'warn' | 'fail';
  checks: CheckReport[];
}

export interface DoctorReport {
  status: 'pass' | 'warn' | 'fail';
  local: CheckReport[];
  builders: BuilderReport[];
  summary: { checks: number; passed: number; warnings: number; failed: number; skipped: number };
}

export function summarize(local: CheckReport[], builders: BuilderReport[]): DoctorReport['summary'] {
  const all = [...local, ...builders.flatMap((b) => b.checks)];
  const n = (st: string) => all.filter((c) => c.status === st).length;
  return { checks: all.length, passed: n('pass'), warnings: n('warn'), failed: n('fail'), skipped: n('skip') };
}

/**
 * The report for people, the answer first: a line per builder (and this machine) saying ok,
 * its warnings, or FAIL with the first broken link, its cause and fix; then the details of
 * what failed or warned (its checks, cause, fix, evidence; passing checks with --verbose);
 * then the totals.
 */
export function printReport(out: Output, r: DoctorReport, verbose: boolean): void {
  const line = (c: CheckReport) => {
    const text = printable(`${c.title}: ${c.summary}`);
    if (c.status === 'pass') out.ok(text);
    else if (c.status === 'warn') out.warn(text);
    else if (c.status === 'fail') out.fail(text);
    else out.info(`  ${out.dim(`- ${text}`)}`);
    if (c.status === 'fail' || c.status === 'warn' || verbose) {
      if (c.cause) out.info(`    cause: ${printable(c.cause)}`);
      if (c.fix) out.info(`    fix:   ${printable(c.fix)}`);
      for (const e of c.status === 'fail' || verbose ? (c.evidence ?? []) : []) {
        out.info(out.dim(`    $ ${printable(e.command)}`));
        for (const l of e.output.split('\n').slice(0, 12)) out.info(out.dim(`      ${printable(l)}`));
      }
    }
  };
  const parts = [
    { title: 'This machine', head: out.bold('This machine'), checks: r.local },
    ...r.builders.map((b) => ({
      title: b.name,
      head: out.bold(`Builder ${b.name}`) + out.dim(`  ${b.uri}  (${b.source})`),
      checks: b.checks,
    })),
  ];
  // 1. The answer: one line each.
  const width = Math.max(...parts.map((p) => p.title.length));
  for (const p of parts) {
    const failed = p.checks.find((c) => c.status === 'fail');
    const warned = p.checks.filter((c) => c.status === 'warn');
    const name = `${p.title}:`.padEnd(width + 2);
    if (failed)
      out.fail(
        printable(
          `${name}FAIL at "${failed.title}": ${failed.cause ?? failed.summary}${failed.fix ? `. Fix: ${failed.fix}` : ''}`,
        ),
      );
    else if (warned.length)
      out.warn(
        printable(
          `${name}${warned.length} warning${warned.length === 1 ? '' : 's'}: ${warned.map((c) => c.title).join(', ')}`,
        ),
      );
    else out.ok(`${name}ok`);
  }
  // 2. The details of what is not ok (of everything, with --verbose).
  for (const p of parts) {
    const bad = p.checks.some((c) => c.status === 'fail' || c.status === 'warn');
    if (!bad && !verbose) continue;
    out.info('');
    out.info(p.head);
    for (const c of p.checks) if (verbose || c.status !== 'pass') line(c);
  }
  // 3. The totals.
  const s = r.summary;
  out.info('');
  const text = `${s.passed}/${s.checks} checks passed, ${s.failed} failed, ${s.warnings} warning${s.warnings === 1 ? '' : 's'}, ${s.skipped} skipped, ${r.builders.length} builder${r.builders.length === 1 ? '' : 's'}${verbose ? '' : ' (passing checks: --verbose)'}`;
  if (r.status === 'fail') out.fail(text);
  else if (r.status === 'warn') out.warn(text);
  else out.ok(text);
}
