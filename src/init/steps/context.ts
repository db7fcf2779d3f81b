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
}

export interface WizardCtx extends InitDeps {
  flags: InitFlags;
  install: Install;
  /** The build user's home (from the passwd entry) and its .ssh. */
  home: string;
  sshDir: string;
}

/** A failure of the operation (exit 1), as opposed to bad input (UsageError, exit 2). */
export class InitFailed extends Error {}
