// What a person sees. Symbols and colour only on a terminal, and never with NO_COLOR.
import { Chalk } from 'chalk';

export interface Output {
  info(msg: string): void;
  step(msg: string): void;
  ok(msg: string): void;
  warn(msg: string): void;
  fail(msg: string): void;
  raw(text: string): void;
  dim(s: string): string;
  bold(s: string): string;
}

export function makeOutput(stream: NodeJS.WriteStream = process.stdout): Output {
  const color = Boolean(stream.isTTY) && !('NO_COLOR' in process.env) && process.env.TERM !== 'dumb';
  const c = new Chalk({ level: color ? 1 : 0 });
  const fancy = Boolean(stream.isTTY);
  const sym = (f: string, p: string) => (fancy ? f : p);
  const line = (s: string) => stream.write(s + '\n');
  return {
    info: (m) => line(m),
    step: (m) => line(`${c.cyan(sym('→', '-'))} ${m}`),
    ok: (m) => line(`${c.green(sym('✓', 'ok:'))} ${m}`),
    warn: (m) => line(`${c.yellow(sym('!', 'warning:'))} ${m}`),
    fail: (m) => line(`${c.red(sym('✗', 'error:'))} ${m}`),
    raw: (t) => stream.write(t),
    dim: (s) => c.dim(s),
    bold: (s) => c.bold(s),
  };
}
