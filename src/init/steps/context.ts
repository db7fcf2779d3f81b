// What every wizard step gets: the flags, the dependencies, and who builds.
import type { Exec } from '../../io/exec.js';
import type { Output } from '../../io/output.js';
import type { Answers } from '../answers.js';
import type { Install } from '../install.js';
import type { InitFlags } from '../options.js';

export interface InitDeps {
  exec: Exec;
  out: Output;
  answers: Answers;
  /** Reads the password piped to --password-stdin, once. */
  readStdin: () => Promise<string>;
  isInterrupted: () => boolean;
  /** From here on an interrupt rolls back instead of exiting at once. */
  beginApply: () => void;
  /** Run this when the command ends, however it ends. */
  onExit: (fn: () => void) => void;
  /** Waits for the user to press Enter (interactive --copy-key manual). */
  pause: (message: string) => Promise<void>;
  /** The caller holds the lock on the build user's files already (apply). */
  locked?: boolean;
}

export interface WizardCtx extends InitDeps {
  flags: InitFlags;
  install: Install;
  /** The build user's home (from the passwd entry) and its .ssh. */
  home: string;
  sshDir: string;
  /** Whether to take over what the user wrote by hand for this builder, once decided. */
  adopt?: boolean;
}

/** A failure of the operation (exit 1), as opposed to bad input (UsageError, exit 2). */
export class InitFailed extends Error {}

/**
 * Take over a Host block or machine line the user wrote for this builder? --adopt says yes;
 * on a terminal the question is asked once; otherwise it is refused, naming --adopt.
 */
export async function decideAdopt(c: WizardCtx, what: string): Promise<boolean> {
  if (c.adopt === undefined) {
    c.adopt = await c.answers.confirm({
      flag: '--adopt',
      value: c.flags.adopt ? true : undefined,
      message: `${what}. Take it over (nixremote's settings, your other options kept, a backup made; the plan shows the diff)?`,
      default: false,
    });
    if (c.adopt) c.answers.note('--adopt', true);
  }
  return c.adopt;
}
