// Line-level text handling that preserves a file's bytes: every line keeps its own
// terminator, so text that nixremote does not manage is written back exactly as read.

export interface Line {
  /** The line's content, without its terminator. */
  text: string;
  /** '\n', '\r\n', or '' for a last line with no newline. */
  eol: string;
}

export function splitLines(text: string): Line[] {
  const lines: Line[] = [];
  let start = 0;
  for (const m of text.matchAll(/\r?\n/g)) {
    lines.push({ text: text.slice(start, m.index), eol: m[0] });
    start = m.index + m[0].length;
  }
  if (start < text.length) lines.push({ text: text.slice(start), eol: '' });
  return lines;
}

export function joinLines(lines: Line[]): string {
  return lines.map((l) => l.text + l.eol).join('');
}

/** The newline a file uses: CRLF if its first line ends so, LF otherwise. */
export function detectEol(text: string): string {
  const i = text.indexOf('\n');
  return i > 0 && text[i - 1] === '\r' ? '\r\n' : '\n';
}
