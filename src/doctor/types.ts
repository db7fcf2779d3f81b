// A doctor check is data plus one function: what it checks, which checks must have passed
// first, and run(), which observes and returns a status with its evidence, the cause in
// one sentence and the fix.
import type { Step } from '../plan/plan.js';
export type Status = 'pass' | 'warn' | 'fail' | 'skip';

export interface Evidence {
  command: string;
  output: string;
}

export interface FixAction {
  /** What will be done, shown before it is done. */
  description: string;
  /** Asked before applying even under --fix (e.g. trusting a new host key). */
  confirm?: string;
  /** The change as plan steps: shown with diffs, applied by init's engine (lock, rollback). */
  steps: Step[];
}

export interface Result {
  status: Status;
  summary: string;
  cause?: string;
  fix?: string;
  evidence?: Evidence[];
  action?: FixAction;
}

export interface Check<S> {
  id: string;
  title: string;
  needs: string[];
  timeoutMs?: number;
  run: (state: S) => Promise<Result>;
}

export interface CheckReport extends Result {
  id: string;
  title: string;
  ms: number;
  /** Skipped by the runner because this check's prerequisite did not pass. */
  blockedBy?: string;
}

export const pass = (summary: string, extra: Partial<Result> = {}): Result => ({ status: 'pass', summary, ...extra });
export const warn = (summary: string, extra: Partial<Result> = {}): Result => ({ status: 'warn', summary, ...extra });
export const fail = (summary: string, cause: string, fix: string, extra: Partial<Result> = {}): Result => ({
  status: 'fail',
  summary,
  cause,
  fix,
  ...extra,
});
