// A plan is the list of everything `init` will change or run, made before anything is
// touched. `--dry-run` prints it; otherwise it is applied in order. Local files are
// written atomically, and if a later step fails (or the user presses Ctrl-C) the files
// this apply wrote are put back as they were.
import { createTwoFilesPatch } from 'diff';
import { readText, restore, writeAtomic } from '../io/files.js';

export interface WriteStep {
  kind: 'write';
  title: string;
  path: string;
  before: string | null;
  after: string;
  mode: number;
  dirMode?: number;
  uid?: number;
  gid?: number;
}

export interface RunStep {
  kind: 'keygen' | 'remote' | 'check' | 'command';
  title: string;
  /** What it will do, for the plan (a command line, a remote change). */
  detail?: string;
  // biome-ignore lint/suspicious/noConfusingVoidType: a step's run may return nothing to report, or a line
  run: () => Promise<string | void>;
}

export interface NoteStep {
  kind: 'note';
  title: string;
  detail?: string;
}

export type Step = WriteStep | RunStep | NoteStep;

/** An edit of a file as a step: `before` as read when planning (null: no such file yet). */
export function editFile(
  title: string,
  path: string,
  before: string | null,
  after: string,
  opts: { mode?: number; dirMode?: number } = {},
): WriteStep {
  return { kind: 'write', title, path, before, after, mode: opts.mode ?? 0o644, dirMode: opts.dirMode };
}

export class StepFailed extends Error {
  constructor(
    readonly step: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

export class Interrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

export function diffOf(s: WriteStep): string {
  return createTwoFilesPatch(
    s.before === null ? '/dev/null' : s.path,
    s.path,
    s.before ?? '',
    s.after,
    s.before === null ? '' : 'current',
    'planned',
    { context: 2 },
  )
    .split('\n')
    .filter((l) => !l.startsWith('=====') && !l.startsWith('Index: '))
    .join('\n');
}

/** The plan as text: each step, and each file change as a diff. */
export function renderPlan(steps: Step[]): string {
  const out: string[] = [];
  steps.forEach((s, i) => {
    const n = `${i + 1}.`;
    if (s.kind === 'write' && s.before === s.after) {
      out.push(`${n} ${s.title}: ${s.path} is already as planned`);
    } else if (s.kind === 'write') {
      const how =
        s.before === null
          ? `create (mode ${s.mode.toString(8).padStart(4, '0')})`
          : 'edit (mode and owner kept, backup beside it)';
      out.push(`${n} ${s.title}: ${how} ${s.path}`);
      out.push(indent(diffOf(s).trimEnd()));
    } else {
      out.push(`${n} ${s.title}`);
      if (s.detail) out.push(indent(s.detail));
    }
  });
  return out.join('\n');
}

const indent = (t: string) =>
  t
    .split('\n')
    .map((l) => `     ${l}`)
    .join('\n');

export interface ApplyReporter {
  start(step: Step): void;
  // biome-ignore lint/suspicious/noConfusingVoidType: what run() returned, nothing included
  done(step: Step, result: string | void, backup?: string | null): void;
}

export interface ApplyOptions {
  reporter: ApplyReporter;
  /** Test hook: pause this long after each step (NIXREMOTE_TEST_STEP_DELAY_MS). */
  stepDelayMs?: number;
  isInterrupted?: () => boolean;
}

/** Apply the steps in order; on failure restore the files written so far and rethrow. */
export async function applyPlan(steps: Step[], opts: ApplyOptions): Promise<void> {
  const written: WriteStep[] = [];
  try {
    for (const s of steps) {
      if (opts.isInterrupted?.()) throw new Interrupted();
      opts.reporter.start(s);
      if (s.kind === 'write') {
        if (s.before === s.after) {
          opts.reporter.done(s, 'unchanged');
          continue;
        }
        // The plan was made from what the file held then; never write over an edit made since.
        if (readText(s.path) !== s.before) {
          throw new StepFailed(
            'write',
            `${s.path} changed while nixremote was running; nothing of it was overwritten. Re-run to plan again from its new content`,
          );
        }
        const backup = writeAtomic(s.path, s.after, { mode: s.mode, dirMode: s.dirMode, uid: s.uid, gid: s.gid });
        written.push(s);
        opts.reporter.done(s, undefined, backup);
      } else if (s.kind === 'note') {
        opts.reporter.done(s);
      } else {
        const r = await s.run();
        opts.reporter.done(s, r);
      }
      if (opts.stepDelayMs) await new Promise((r) => setTimeout(r, opts.stepDelayMs));
    }
    if (opts.isInterrupted?.()) throw new Interrupted();
  } catch (e) {
    for (const w of written.reverse()) {
      try {
        restore(w.path, w.before, w.mode);
      } catch {
        // Reported below: the backup beside the file still holds the old content.
      }
    }
    if (written.length && e instanceof Error) {
      (e as Error & { rolledBack?: string[] }).rolledBack = written.map((w) => w.path);
    }
    throw e;
  }
}
