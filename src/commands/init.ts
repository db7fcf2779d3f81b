// `nixremote init`: flags → dependencies → the wizard.
import { exec } from '../io/exec.js';
import { makeOutput } from '../io/output.js';
import { inquirerPrompter, type Prompter } from '../io/prompts.js';
import { Answers } from '../init/answers.js';
import type { InitFlags } from '../init/options.js';
import { runInit } from '../init/wizard.js';
import { UsageError } from '../validate.js';

async function readAllStdin(): Promise<string> {
  if (process.stdin.isTTY)
    throw new UsageError(
      '--password-stdin: standard input is a terminal; pipe the password in, e.g. printf %s "$PW" | nixremote init ...',
    );
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  // One trailing newline is how `echo` ends it, not part of the password.
  const s = Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (s === '') throw new UsageError('--password-stdin: standard input was empty');
  return s;
}

export async function initCommand(flags: InitFlags): Promise<void> {
  let interrupted = false;
  let applying = false;
  const onSigint = () => {
    if (!applying) {
      // Still asking or looking: nothing has been changed yet.
      process.stderr.write('\nInterrupted; nothing was changed.\n');
      process.exit(130);
    }
    // The current step finishes (each write is atomic), then the apply rolls back.
    interrupted = true;
  };
  const interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY) && !flags.passwordStdin;
  let prompter: Prompter | null = null;
  const answers = new Answers({
    yes: Boolean(flags.yes),
    prompter: async () => {
      if (!interactive) return null;
      prompter ??= await inquirerPrompter();
      return prompter;
    },
  });
  let stdinOnce: Promise<string> | null = null;
  const atExit: (() => void)[] = [];
  process.on('SIGINT', onSigint);
  try {
    await runInit(flags, {
      exec,
      out: makeOutput(),
      answers,
      readStdin: () => (stdinOnce ??= readAllStdin()),
      isInterrupted: () => interrupted,
      beginApply: () => {
        applying = true;
      },
      onExit: (fn) => atExit.push(fn),
      pause: async (message) => {
        if (!interactive) throw new UsageError('cannot wait for Enter without a terminal');
        prompter ??= await inquirerPrompter();
        await prompter.input(message);
      },
    });
  } finally {
    process.off('SIGINT', onSigint);
    for (const fn of atExit) fn();
  }
}
