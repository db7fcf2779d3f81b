// A managed block is a run of lines between two marker comments that nixremote owns.
// Everything outside the markers is the user's and is kept byte for byte: inserting a
// block and removing it again gives back the original text.
import { detectEol, joinLines, splitLines, type Line } from './lines.js';

export interface Markers {
  begin: string;
  end: string;
}

export class BlockError extends Error {}

export interface BlockEdit {
  text: string;
  changed: boolean;
}

/** Where the begin and end marker lines of a block are, or null when absent. */
export function findBlock(lines: Line[], markers: Markers): { start: number; end: number } | null {
  const starts: number[] = [];
  const ends: number[] = [];
  lines.forEach((l, i) => {
    const t = l.text.trim();
    if (t === markers.begin) starts.push(i);
    else if (t === markers.end) ends.push(i);
  });
  if (starts.length === 0 && ends.length === 0) return null;
  if (starts.length !== 1 || ends.length !== 1 || ends[0]! < starts[0]!) {
    throw new BlockError(
      `the markers "${markers.begin}" / "${markers.end}" are damaged (found ${starts.length} begin and ${ends.length} end); ` +
        'fix or remove them by hand, then re-run',
    );
  }
  return { start: starts[0]!, end: ends[0]! };
}

/** The lines between the markers, without the markers. */
export function readBlock(text: string, markers: Markers): string[] | null {
  const lines = splitLines(text);
  const at = findBlock(lines, markers);
  return at ? lines.slice(at.start + 1, at.end).map((l) => l.text) : null;
}

/**
 * Put `body` between the markers. An existing block is replaced where it stands; a new
 * one goes before line `insertAt(lines)` (or at the end when that returns lines.length).
 */
export function upsertBlock(
  text: string,
  markers: Markers,
  body: string[],
  insertAt: (lines: Line[]) => number = (lines) => lines.length,
): BlockEdit {
  const lines = splitLines(text);
  const eol = detectEol(text);
  const at = findBlock(lines, markers);
  const block: Line[] = [markers.begin, ...body, markers.end].map((t) => ({ text: t, eol }));
  let out: Line[];
  if (at) {
    // Keep the terminator the end marker had, so a block at the very end of a file with
    // no final newline stays that way.
    block[block.length - 1]!.eol = lines[at.end]!.eol;
    out = [...lines.slice(0, at.start), ...block, ...lines.slice(at.end + 1)];
  } else {
    const i = Math.max(0, Math.min(insertAt(lines), lines.length));
    if (i === lines.length && lines.length > 0 && lines[lines.length - 1]!.eol === '') {
      // Appending to a file with no final newline: give the old last line one and leave
      // the block without one, so that removing the block restores the file exactly.
      const copy = lines.map((l) => ({ ...l }));
      copy[copy.length - 1]!.eol = eol;
      block[block.length - 1]!.eol = '';
      out = [...copy, ...block];
    } else {
      out = [...lines.slice(0, i), ...block, ...lines.slice(i)];
    }
  }
  const result = joinLines(out);
  return { text: result, changed: result !== text };
}

export function removeBlock(text: string, markers: Markers): BlockEdit {
  const lines = splitLines(text);
  const at = findBlock(lines, markers);
  if (!at) return { text, changed: false };
  const before = lines.slice(0, at.start).map((l) => ({ ...l }));
  const after = lines.slice(at.end + 1);
  if (after.length === 0 && lines[at.end]!.eol === '' && before.length > 0) {
    before[before.length - 1]!.eol = '';
  }
  const result = joinLines([...before, ...after]);
  return { text: result, changed: result !== text };
}

/**
 * Line numbers (1-based) inside any of nixremote's blocks, markers included: every
 * nixremote marker starts with "# BEGIN nixremote" or "# END nixremote".
 */
export function nixremoteLines(text: string): Set<number> {
  const set = new Set<number>();
  let inside = false;
  splitLines(text).forEach((l, i) => {
    const t = l.text.trim();
    if (t.startsWith('# BEGIN nixremote')) inside = true;
    if (inside) set.add(i + 1);
    if (t.startsWith('# END nixremote')) inside = false;
  });
  return set;
}
