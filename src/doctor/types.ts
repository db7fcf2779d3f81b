// A doctor check is data plus one function: what it checks, which checks must have passed
// first, and run(), which observes and returns a status with its evidence, the cause in
// one sentence and the fix.
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
  /** A file it changes, shown as a diff before asking. */
  diff?: { path: string; before: string; after: string };
  apply: () => Promise<void>;
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
}

export const pass = (summary: string, extra: Partial<Result> = {}): Result => ({ status: 'pass', summary, ...extra });
export const warn = (summary: string, extra: Partial<Result> = {}): Result => ({ status: 'warn', summary, ...extra });
export const fail = (summary: string, cause: string, fix: string, extra: Partial<Result> = {}): Result => ({ status: 'fail', summary, cause, fix, ...extra });
