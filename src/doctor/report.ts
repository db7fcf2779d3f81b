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
  out.info(out.bold('This machine'));
  r.local.forEach(line);
  for (const b of r.builders) {
    out.info('');
    out.info(out.bold(`Builder ${b.name}`) + out.dim(`  ${b.uri}  (${b.source})`));
    b.checks.forEach(line);
  }
  const s = r.summary;
  out.info('');
  const text = `${s.passed}/${s.checks} checks passed, ${s.failed} failed, ${s.warnings} warning${s.warnings === 1 ? '' : 's'}, ${s.skipped} skipped, ${r.builders.length} builder${r.builders.length === 1 ? '' : 's'}`;
  if (r.status === 'fail') out.fail(text);
  else if (r.status === 'warn') out.warn(text);
  else out.ok(text);
}
