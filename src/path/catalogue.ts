// One catalogue of what goes wrong on the daemon's path: every text a failing step can
// print (OpenSSH's client and what sshd sends back, the builder's login shell, nix-store
// and nix-daemon, SQLite, the filesystem, the build hook) is matched here, on stdout and
// stderr together and on the exit code, and nowhere else. init, doctor and status ask the
// same question and so get the same answer. What no entry matches is said to be not
// recognised, quoted in full, with the next diagnostic step: never a default cause.
import type { Entry, Names, Output, Source, Stage } from './entry.js';
import { decodeProtocolError } from './protocol-text.js';
import { HOOK_FAILURES, NIX_FAILURES, NIX_SYMPTOMS } from './failures/nix.js';
import { SHELL_FAILURES } from './failures/shell.js';
import { SSH_FAILURES } from './failures/ssh.js';

export type { Entry, Names, Output, Source, Stage } from './entry.js';

export interface Known {
  known: true;
  id: string;
  from: Source;
  cause: string;
  fix: string;
  /** The line of the output that the entry matched. */
  said: string;
}

export interface Unknown {
  known: false;
  id: 'not-recognised';
  cause: string;
  fix: string;
  said: string;
}

export type Diagnosis = Known | Unknown;

/** The entries in the order they are tried: the first match wins, so specific ones come first. */
export const CATALOGUE: Entry[] = [
  ...SHELL_FAILURES,
  ...NIX_FAILURES,
  ...SSH_FAILURES,
  ...NIX_SYMPTOMS,
  ...HOOK_FAILURES,
];

/** Text as a person can read it in one line: control bytes escaped, nothing dropped. */
export function quote(s: string): string {
  return JSON.stringify(s);
}

function lineOf(text: string, index: number): string {
  const start = text.lastIndexOf('\n', index - 1) + 1;
  const end = text.indexOf('\n', index);
  return text.slice(start, end < 0 ? undefined : end).trim();
}

/** The first entry that matches `o`, or null. */
export function match(o: Output, stage: Stage, entries: Entry[] = CATALOGUE): { entry: Entry; said: string } | null {
  const text = `${o.stdout}\n${o.stderr}`;
  const empty = o.stdout.trim() === '' && o.stderr.trim() === '';
  for (const e of entries) {
    if (e.stages && !e.stages.includes(stage)) continue;
    if (e.exit && !e.exit.includes(o.exitCode)) continue;
    if (e.silent) {
      if (empty) return { entry: e, said: '' };
      continue;
    }
    const m = e.pattern?.exec(text);
    if (m) return { entry: e, said: lineOf(text, m.index) };
  }
  return null;
}

/**
 * What a failed step's output means. `step` says what ran ("ssh box", "the store ping"),
 * `next` the command that shows more when nothing here matches.
 */
export function diagnose(o: Output, stage: Stage, n: Names, step: string, next: string): Diagnosis {
  const hit = match(o, stage);
  if (hit) {
    const shellText = hit.entry.id === 'nix.protocol-noise' ? decodeProtocolError(`${o.stdout}\n${o.stderr}`) : null;
    const text = `${o.stdout}\n${o.stderr}`;
    const cause = hit.entry.cause(n, hit.said, text);
    return {
      known: true,
      id: hit.entry.id,
      from: hit.entry.from,
      cause: shellText !== null ? `${cause}: it printed ${quote(shellText)}` : cause,
      fix: hit.entry.fix(n, hit.said, text),
      said: hit.said,
    };
  }
  return unrecognised(o, step, next);
}

/** A failure no entry matches: said so, quoted whole, with the step that shows more. */
export function unrecognised(o: Output, step: string, next: string): Unknown {
  const said = [o.stdout.trim(), o.stderr.trim()].filter(Boolean).join('\n');
  return {
    known: false,
    id: 'not-recognised',
    cause: said
      ? `not recognised: ${step} failed (exit ${o.exitCode}) and printed ${quote(said)}`
      : `not recognised: ${step} failed (exit ${o.exitCode}) and printed nothing`,
    fix: `run ${next} to see more, and report what it prints if nixremote should know it`,
    said,
  };
}
