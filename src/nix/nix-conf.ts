// nix.conf as text. From Nix's src/libutil/config.cc: '#' starts a comment anywhere on a
// line, a setting is `name = value` with the value's words joined by single spaces,
// `include PATH` / `!include PATH` pull in other files, and a later line overrides an
// earlier one. So nixremote's block goes at the end, and where the user already set
// `builders` its value is merged into ours rather than silently overridden.
import { nixremoteLines, readBlock, upsertBlock, type BlockEdit, type Markers } from '../text/managed-block.js';
import { splitLines } from '../text/lines.js';
import { uriHost } from './machines-file.js';

export const nixConfMarkers: Markers = {
  begin: '# BEGIN nixremote (managed by nixremote; edits inside are replaced)',
  end: '# END nixremote',
};

export interface NixSetting {
  line: number;
  name: string;
  value: string;
}

export function parseNixConf(text: string): {
  settings: NixSetting[];
  includes: { line: number; path: string; optional: boolean }[];
} {
  const settings: NixSetting[] = [];
  const includes: { line: number; path: string; optional: boolean }[] = [];
  splitLines(text).forEach((l, i) => {
    const hash = l.text.indexOf('#');
    const tokens = (hash >= 0 ? l.text.slice(0, hash) : l.text).trim().split(/\s+/).filter(Boolean);
    if (tokens.length === 0) return;
    if ((tokens[0] === 'include' || tokens[0] === '!include') && tokens.length === 2) {
      includes.push({ line: i + 1, path: tokens[1]!, optional: tokens[0] === '!include' });
      return;
    }
    if (tokens.length < 2 || tokens[1] !== '=') return;
    settings.push({ line: i + 1, name: tokens[0]!, value: tokens.slice(2).join(' ') });
  });
  return { settings, includes };
}

/** Line numbers inside nixremote's block, so our own settings are not taken for the user's. */
export const blockLineNumbers = nixremoteLines;

/** The user's own last value of a setting in this file, outside our block. */
export function userSetting(text: string, name: string): NixSetting | null {
  const ours = blockLineNumbers(text);
  const found = parseNixConf(text).settings.filter((s) => s.name === name && !ours.has(s.line));
  return found.length ? found[found.length - 1]! : null;
}

export interface NixConfPlan {
  edit: BlockEdit;
  /** What we found and merged, for the user to read. */
  notes: string[];
}

/**
 * `builders = @MACHINES` and `builders-use-substitutes = true`, merged with what is there.
 * `inherited` is the user's effective builders where it comes from an included file
 * (found by reading the includes as Nix does); otherwise this file's own line counts.
 */
export function upsertNixConf(
  text: string,
  machinesFile: string,
  inherited?: { value: string; where: string } | null,
  /** A builder the user listed inline that the machines file now holds (adopted): left out. */
  without?: string,
  /** Signed access: the secret key this machine signs what it builds with. */
  secretKeyFile?: string | null,
): NixConfPlan {
  const notes: string[] = [];
  const include = `@${machinesFile}`;
  let builders = include;
  const own = userSetting(text, 'builders');
  const existing = inherited ? { value: inherited.value, line: inherited.where } : own;
  if (existing && existing.value !== '' && existing.value !== '-') {
    const all = existing.value
      .split(';')
      .map((e) => e.trim())
      .filter(Boolean);
    const entries = without ? all.filter((e) => !inlineEntryNames(e, without)) : all;
    const value = entries.join(' ; ');
    const where = typeof existing.line === 'number' ? `nix.conf line ${existing.line}` : existing.line;
    if (entries.length < all.length)
      notes.push(
        `${where} lists ${without} inline; nixremote's builders leave that entry out, since the machines file now has ${without}`,
      );
    if (entries.includes(include)) {
      builders = value;
    } else if (entries.length) {
      builders = `${value} ; ${include}`;
      notes.push(
        `${where} already sets builders = ${existing.value}; nixremote keeps those builders and adds ${include}`,
      );
    }
  }
  const subst = userSetting(text, 'builders-use-substitutes');
  if (subst && subst.value !== 'true') {
    notes.push(
      `nix.conf line ${subst.line} sets builders-use-substitutes = ${subst.value}; nixremote's setting below it takes effect`,
    );
  }
  // The signing key serves every signed builder: a later init for another builder keeps it.
  // extra-: added to a secret-key-files the user has (a binary cache's key), not replacing it.
  const signing = [
    ...new Set([
      ...(readBlock(text, nixConfMarkers) ?? []).filter((l) => /^extra-secret-key-files = /.test(l)),
      ...(secretKeyFile ? [`extra-secret-key-files = ${secretKeyFile}`] : []),
    ]),
  ];
  const edit = upsertBlock(text, nixConfMarkers, [
    `builders = ${builders}`,
    'builders-use-substitutes = true',
    ...signing,
  ]);
  return { edit, notes };
}

/** Whether a `builders` entry (not an @file) is a machine whose store URI names `name`. */
export function inlineEntryNames(entry: string, name: string): boolean {
  if (entry.startsWith('@')) return false;
  const uri = entry.split(/\s+/)[0] ?? '';
  return uriHost(uri) === name;
}
