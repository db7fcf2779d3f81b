// Where each answer comes from: the flag if given, else the default under --yes, else a
// prompt. Without a terminal nothing can be asked, so a missing answer is a usage error
// that names its flag. Every answer is recorded, to print the equivalent command at the end.
import type { Choice, Prompter } from '../io/prompts.js';
import { UsageError } from '../validate.js';
import { shellQuote } from '../io/exec.js';

export interface AnswerSource {
  yes: boolean;
  /** null when there is no terminal to ask on. */
  prompter: () => Promise<Prompter | null>;
}

export class Answers {
  /** flag → value, in the order asked, for the repeat command. */
  readonly given: [string, string | true][] = [];

  constructor(private readonly src: AnswerSource) {}

  get yes() {
    return this.src.yes;
  }

  private record(flag: string, v: string | true) {
    const i = this.given.findIndex(([f]) => f === flag);
    if (i >= 0) this.given.splice(i, 1);
    this.given.push([flag, v]);
  }

  private async prompter(flag: string, what: string): Promise<Prompter> {
    const p = await this.src.prompter();
    if (!p) throw new UsageError(`${what} is needed: pass ${flag} (there is no terminal to ask on)`);
    return p;
  }

  /** A text answer; `parse` validates (throwing UsageError) and converts. */
  async text<T>(q: {
    flag: string;
    value: string | undefined;
    message: string;
    default?: string;
    parse: (v: string, flag: string) => T;
    show?: (v: T) => string;
  }): Promise<T> {
    let v: T;
    if (q.value !== undefined) v = q.parse(q.value, q.flag);
    else if (this.src.yes && q.default !== undefined) v = q.parse(q.default, q.flag);
    else if (this.src.yes) throw new UsageError(`${q.message.replace(/[?:]\s*$/, '')} has no default: pass ${q.flag}`);
    else {
      const p = await this.prompter(q.flag, q.message.replace(/[?:]\s*$/, ''));
      const raw = await p.input(q.message, {
        default: q.default,
        validate: (s) => {
          try {
            q.parse(s.trim(), q.flag);
            return true;
          } catch (e) {
            return (e as Error).message.replace(`${q.flag}: `, '');
          }
        },
      });
      v = q.parse(raw.trim(), q.flag);
    }
    this.record(q.flag, q.show ? q.show(v) : String(v));
    return v;
  }

  async choose<T extends string>(q: {
    flag: string;
    value: string | undefined;
    message: string;
    choices: Choice<T>[];
    default: T;
  }): Promise<T> {
    const allowed = q.choices.map((c) => c.value);
    let v: T;
    if (q.value !== undefined) {
      if (!allowed.includes(q.value as T))
        throw new UsageError(`${q.flag}: '${q.value}' is not one of ${allowed.join(', ')}`);
      v = q.value as T;
    } else if (this.src.yes) v = q.default;
    else v = await (await this.prompter(q.flag, q.message)).select(q.message, q.choices, q.default);
    this.record(q.flag, v);
    return v;
  }

  /**
   * A yes/no question. `flag` is the flag that forces yes (or null when there is none);
   * under --yes the default is taken.
   */
  async confirm(q: {
    flag: string | null;
    value: boolean | undefined;
    message: string;
    default: boolean;
    record?: boolean;
  }): Promise<boolean> {
    let v: boolean;
    if (q.value !== undefined) v = q.value;
    else if (this.src.yes) v = q.default;
    else v = await (await this.prompter(q.flag ?? '--yes', q.message)).confirm(q.message, q.default);
    return v;
  }

  async password(q: { flag: string; fromStdin: () => Promise<string> | null; message: string }): Promise<string> {
    const s = q.fromStdin();
    if (s) {
      this.record(q.flag, true);
      return s;
    }
    const p = await this.src.prompter();
    if (!p)
      throw new UsageError(`a password for the builder is needed: pipe it to ${q.flag}, or use --copy-key ssh|manual`);
    const pw = await p.password(q.message);
    // Unattended, the same run reads it from standard input.
    this.record(q.flag, true);
    return pw;
  }

  /**
   * Whether a wrong answer found out later can be asked again: a terminal and no --yes.
   * Unattended runs keep failing with the exit code of the fault.
   */
  async canAsk(): Promise<boolean> {
    return !this.src.yes && (await this.src.prompter()) !== null;
  }

  /** Record a flag whose value was settled without a question. */
  note(flag: string, v: string | true) {
    this.record(flag, v);
  }
}

/** The command that repeats this run without questions. */
export function repeatCommand(given: [string, string | true][]): string {
  const parts = ['nixremote', 'init', '--yes'];
  for (const [flag, v] of given) {
    if (v === true) parts.push(flag);
    else parts.push(flag, shellQuote(v));
  }
  return parts.join(' ');
}
