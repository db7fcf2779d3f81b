// The machines file (and the `builders` setting) as Nix reads it. From Nix's
// src/libstore/machines.cc (2.8 and later): entries are separated by newlines or ';',
// '#' starts a comment, '@PATH' includes a file, fields are separated by whitespace, and
// '-' or a missing field means "unset". The eight fields, in order: store URI, systems,
// SSH key, max jobs, speed factor, supported features, mandatory features, host key.
import { nixremoteLines, readBlock, upsertBlock, type BlockEdit, type Markers } from '../text/managed-block.js';
import { joinLines, splitLines, type Line } from '../text/lines.js';
import { machinesHostKeyField, type HostKey } from '../ssh/host-key.js';
import { isTomlMachines, readLixToml } from './machines-toml.js';

/** The eight fields by meaning, for messages: "field 5" tells nobody anything. */
export const FIELD_NAMES = [
  'store URI',
  'systems',
  'ssh key',
  'max jobs',
  'speed factor',
  'supported features',
  'mandatory features',
  'host key',
] as const;

export interface Machine {
  uri: string;
  systems: string[];
  sshKey: string | null;
  maxJobs: number;
  speedFactor: number;
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  hostKey: string | null; // base64 field, as written
}

export interface MachineSource {
  file: string;
  line: number;
}

export interface ParsedMachine extends Machine {
  source: MachineSource;
}

export interface MachinesParseError extends MachineSource {
  column: number;
  message: string;
}

export const machineMarkers = (name: string): Markers => ({
  begin: `# BEGIN nixremote builder ${name}`,
  end: `# END nixremote builder ${name}`,
});

const field = (v: string[] | string | number | null): string => {
  if (v === null) return '-';
  if (Array.isArray(v)) return v.length ? v.join(',') : '-';
  const s = String(v);
  return s === '' ? '-' : s;
};

export function formatMachineLine(m: Machine): string {
  return [m.uri, m.systems, m.sshKey, m.maxJobs, m.speedFactor, m.supportedFeatures, m.mandatoryFeatures, m.hostKey]
    .map(field)
    .join(' ');
}

export function machineFromHost(opts: {
  name: string;
  remoteProgram?: string | null;
  systems: string[];
  sshKey: string | null;
  maxJobs: number;
  speedFactor: number;
  features: string[];
  mandatoryFeatures: string[];
  hostKey: HostKey;
  protocol?: 'ssh' | 'ssh-ng';
}): Machine {
  const query = opts.remoteProgram ? `?remote-program=${opts.remoteProgram}` : '';
  return {
    uri: `${opts.protocol ?? 'ssh'}://${opts.name}${query}`,
    systems: opts.systems,
    sshKey: opts.sshKey,
    maxJobs: opts.maxJobs,
    speedFactor: opts.speedFactor,
    supportedFeatures: opts.features,
    mandatoryFeatures: opts.mandatoryFeatures,
    hostKey: machinesHostKeyField(opts.hostKey),
  };
}

export interface UriParts {
  scheme: string;
  user: string | null;
  host: string;
  /** Only newer Nix (2.31+) passes a port from the URI to ssh (-p). */
  port: number | null;
  /**
   * The port ssh is given when the build hook honours the URI's port: host:port (Nix 2.31+),
   * else ?port=N (Lix 2.93+). Whether this Nix does is the store URI check's to say.
   */
  sshPort: number | null;
  params: URLSearchParams;
}

/** ssh://user@host:port?x=y into its parts; a bare host name is ssh:// in Nix's eyes. */
export function parseStoreUri(uri: string): UriParts {
  const scheme = uri.includes('://') ? uri.slice(0, uri.indexOf('://')) : 'ssh';
  const rest = uri.includes('://') ? uri.slice(uri.indexOf('://') + 3) : uri;
  const q = rest.indexOf('?');
  const authority = q >= 0 ? rest.slice(0, q) : rest;
  const params = new URLSearchParams(q >= 0 ? rest.slice(q + 1) : '');
  const m = /^(?:(.*)@)?(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(authority);
  const host = (m?.[2] ?? authority).replace(/^\[(.*)\]$/, '$1');
  const port = m?.[3] ? Number(m[3]) : null;
  const query = /^\d+$/.test(params.get('port') ?? '') ? Number(params.get('port')) : null;
  return { scheme, user: m?.[1] ?? null, host, port, sshPort: port ?? query, params };
}

export function uriHost(uri: string): string {
  return parseStoreUri(uri).host;
}

export type ReadFile = (path: string) => string | null;

/**
 * How a Nix version's machines.cc reads a line, where versions differ (read from Nix's
 * source, tags 2.8.0 to 2.35). A validator says what that Nix will reject.
 */
export interface MachineRules {
  /** 2.20+: the speed factor is a float; before, an unsigned int. */
  floatSpeed: boolean;
  /** 2.24.15 and 2.28.2+: '#' comments out the rest of the physical line, across ';'. */
  lineComments: boolean;
  /** Before 2.24.15 / 2.28.2: an entry of blanks in a machines file fails the whole list. */
  rawBlanksFail: boolean;
  /** Lix 2.95+ reads the setting as TOML first (true); Nix and older Lix only lines (false); null: unknown, TOML when it is. */
  toml: boolean | null;
  /** "Nix 2.8.0", "Lix 2.95.3"; null: unknown. */
  version: string | null;
}

/** What nixremote accepts when it does not know the version: the newest rules. */
export const LENIENT: MachineRules = {
  floatSpeed: true,
  lineComments: true,
  rawBlanksFail: false,
  toml: null,
  version: null,
};

export function machineRules(v: [number, number, number] | null): MachineRules {
  if (!v) return LENIENT;
  const n = v[0] * 1e6 + v[1] * 1e3 + v[2];
  // Lix (2.90+) keeps the old reader, with the float speed factor.
  const lix = v[0] === 2 && v[1] >= 90;
  const newLines = !lix && (n >= 2_028_002 || (n >= 2_024_015 && n < 2_025_000));
  return {
    floatSpeed: n >= 2_020_000,
    lineComments: newLines,
    rawBlanksFail: !newLines,
    toml: lix && n >= 2_095_000,
    version: `${lix ? 'Lix' : 'Nix'} ${v.join('.')}`,
  };
}

/**
 * The `builders` setting as the local Nix reads it: Lix 2.95 on tries the whole value as
 * TOML first (machines-toml.ts), every other Nix reads lines (parseMachines).
 */
export function parseBuildersSetting(
  text: string,
  file: string,
  readFile: ReadFile = () => null,
  firstLine = 1,
  rules: MachineRules = LENIENT,
): { machines: ParsedMachine[]; errors: MachinesParseError[] } {
  // The whole setting, as Lix 2.95 reads it first (machines-toml.ts); for a Nix of unknown
  // version, TOML only when it parses as TOML.
  if (rules.toml !== false) {
    const t = readLixToml(text, file, firstLine, readFile, rules.toml === true);
    if (t) return { machines: t.machines, errors: t.errors };
  }
  if (rules.toml === false && text.startsWith('@') && isTomlMachines(readFile(text.slice(1)) ?? '')) {
    return {
      machines: [],
      errors: [
        {
          file: text.slice(1),
          line: 1,
          column: 1,
          message: `this is Lix's TOML machines format (Lix 2.95 on), and ${rules.version} reads only the line format (it would take each line of it for a machine); write the lines instead`,
        },
      ],
    };
  }
  return parseMachines(text, file, readFile, 0, firstLine, rules);
}

/**
 * Parse a builders value or a machines file. `file` names where the text came from, for
 * messages, and `firstLine` the line its text starts on there (a `builders` value inline
 * in nix.conf starts on the setting's line); `readFile` resolves '@' includes (null:
 * missing, which Nix ignores).
 */
export function parseMachines(
  text: string,
  file: string,
  readFile: ReadFile = () => null,
  depth = 0,
  firstLine = 1,
  rules: MachineRules = LENIENT,
): { machines: ParsedMachine[]; errors: MachinesParseError[] } {
  const machines: ParsedMachine[] = [];
  const errors: MachinesParseError[] = [];
  const nixSays = (msg: string) => `${rules.version ?? 'Nix'} rejects it: ${msg}`;
  let lineNo = firstLine;
  // Walk entries while tracking the line each starts on: ';' separates without a newline.
  for (const physical of text.split('\n')) {
    let column = 1;
    // 2.24.15 and 2.28.2 on: '#' comments out the rest of the line, across ';'.
    const lineHash = rules.lineComments ? physical.indexOf('#') : -1;
    for (const rawEntry of (lineHash >= 0 ? physical.slice(0, lineHash) : physical).split(';')) {
      const entryColumn = column;
      column += rawEntry.length + 1;
      const hash = rawEntry.indexOf('#');
      const uncommented = hash >= 0 ? rawEntry.slice(0, hash) : rawEntry;
      const entry = uncommented.trim();
      const source = { file, line: lineNo };
      // Before that, an entry of blanks (an indented comment, a space after ';') reaches
      // the parser untrimmed, with no store URI (machines.cc ignored trim's result). A
      // nix.conf value has had its blanks squeezed by then; a machines file has not.
      if (entry === '' && rules.rawBlanksFail && depth > 0 && uncommented !== '' && uncommented !== '\r') {
        errors.push({
          ...source,
          column: entryColumn,
          message: `an entry of blanks only${hash >= 0 ? ' (an indented comment)' : ''}; ${nixSays(`bad machine specification: store URL was not found at the first column of a row: '${uncommented}'`)}`,
        });
        continue;
      }
      if (entry === '') continue;
      const lead = rawEntry.length - rawEntry.trimStart().length;
      if (entry.startsWith('@')) {
        const path = entry.slice(1).trim();
        if (depth > 8) {
          errors.push({ ...source, column: entryColumn + lead, message: `'@${path}' includes too deeply` });
          continue;
        }
        const sub = readFile(path);
        if (sub !== null) {
          const r = parseMachines(sub, path, readFile, depth + 1, 1, rules);
          machines.push(...r.machines);
          errors.push(...r.errors);
        }
        continue;
      }
      const tokens = entry.split(/\s+/);
      const offsets: number[] = [];
      for (const m of rawEntry.matchAll(/\S+/g)) offsets.push(entryColumn + m.index);
      const isSet = (n: number) => tokens.length > n && tokens[n] !== '' && tokens[n] !== '-';
      const num = (n: number, float: boolean): number => {
        if (!isSet(n)) return 1;
        // Nix rejects the whole list for a bad number, naming the column from 0; the speed
        // factor is a float from 2.20 (negative: "speed factor must be >= 0"), an unsigned int before.
        if (!(float ? /^-?\d+(\.\d+)?$/ : /^\d+$/).test(tokens[n]!)) {
          const type = float ? 'float' : 'unsigned int';
          // Named by meaning: nobody knows what "field 5" is.
          const why =
            n === 4 && !float && /^\d+\.\d+$/.test(tokens[n]!)
              ? `speed factor ${tokens[n]}: Nix before 2.20 reads the speed factor as a whole number`
              : `${FIELD_NAMES[n]} '${tokens[n]}' (field ${n + 1}) is not ${float ? 'a number' : 'a whole number'}`;
          errors.push({
            ...source,
            column: offsets[n]!,
            message: `${why}; ${nixSays(`bad machine specification: failed to convert column #${n} in a row: '${entry}' to '${type}'`)}`,
          });
          return NaN;
        }
        if (Number(tokens[n]) < 0) {
          errors.push({
            ...source,
            column: offsets[n]!,
            message: `${FIELD_NAMES[n]} '${tokens[n]}' (field ${n + 1}) is negative; ${nixSays('speed factor must be >= 0')}`,
          });
          return NaN;
        }
        return Number(tokens[n]);
      };
      const list = (n: number) => (isSet(n) ? tokens[n]!.split(',').filter(Boolean) : []);
      const before = errors.length;
      const maxJobs = num(3, false);
      const speedFactor = num(4, rules.floatSpeed);
      // Every version base64-decodes the 8th field as it reads the line.
      const badChar = isSet(7) ? /[^A-Za-z0-9+/=\n]/.exec(tokens[7]!.split('=')[0]!) : null;
      if (badChar)
        errors.push({
          ...source,
          column: offsets[7]!,
          message: `host key (field 8) is not base64; ${nixSays(`invalid character in Base64 string: '${badChar[0]}'`)}`,
        });
      // Fields past the 8th are ignored by Nix (2.8 to 2.35), so they are here too.
      if (errors.length > before) continue;
      machines.push({
        uri: tokens[0]!,
        systems: list(1),
        sshKey: isSet(2) ? tokens[2]! : null,
        maxJobs,
        speedFactor,
        supportedFeatures: list(5),
        mandatoryFeatures: list(6),
        hostKey: isSet(7) ? tokens[7]! : null,
        source,
      });
    }
    lineNo++;
  }
  return { machines, errors };
}

/** Lines outside nixremote's blocks whose store URI names `name`. */
export function unmanagedMachineLines(text: string, name: string): number[] {
  const ours = nixremoteLines(text);
  const out: number[] = [];
  text.split('\n').forEach((l, i) => {
    if (ours.has(i + 1)) return;
    const { machines } = parseMachines(l, '', () => null);
    if (machines.some((m) => uriHost(m.uri) === name)) out.push(i + 1);
  });
  return out;
}

export function upsertMachine(text: string, name: string, m: Machine): BlockEdit {
  return upsertBlock(text, machineMarkers(name), [formatMachineLine(m)]);
}

/**
 * Edit the fields of the machine on line `lineNo`, if that line is one of nixremote's
 * (between its markers); null otherwise, since a user's own lines are theirs to edit.
 * Fields are joined by single spaces, as nixremote writes them.
 */
function editManagedLine(text: string, lineNo: number, edit: (fields: string[]) => string[]): string | null {
  const lines = text.split('\n');
  const line = lines[lineNo - 1];
  if (!nixremoteLines(text).has(lineNo) || line === undefined || line.trim() === '' || line.trim().startsWith('#'))
    return null;
  // A table of Lix's TOML file is not a line: its fix is said, not made.
  if (line.trim().startsWith('[machines.')) return null;
  const fields = line.trim().split(/\s+/);
  while (fields.length < 8) fields.push('-');
  lines[lineNo - 1] = edit(fields).join(' ');
  return lines.join('\n');
}

/** The machine on line `lineNo` with ?remote-program= on its store URI (nixremote's lines only). */
export function withRemoteProgram(text: string, lineNo: number, program: string): string | null {
  return editManagedLine(text, lineNo, (f) => {
    const uri = f[0]!;
    const params = new URLSearchParams(uri.includes('?') ? uri.slice(uri.indexOf('?') + 1) : '');
    params.set('remote-program', program);
    return [`${uri.split('?')[0]}?${decodeURIComponent(params.toString())}`, ...f.slice(1)];
  });
}

/** The machine on line `lineNo` with another pinned host key (nixremote's lines only). */
export function withHostKey(text: string, lineNo: number, key: HostKey): string | null {
  return editManagedLine(text, lineNo, (f) => [...f.slice(0, 7), machinesHostKeyField(key)]);
}

/**
 * The user's own lines for `name` replaced, where the first stood, by nixremote's block
 * for it. null when one of those lines also holds other machines (';'), which nixremote
 * will not take apart.
 */
export function adoptMachineLines(text: string, lineNos: number[], name: string, m: Machine): BlockEdit | null {
  const lines = splitLines(text);
  if (lineNos.some((n) => parseMachines(lines[n - 1]?.text ?? '', '').machines.length !== 1)) return null;
  const { begin, end } = machineMarkers(name);
  const out: Line[] = [];
  lines.forEach((l, i) => {
    if (i + 1 === lineNos[0])
      out.push(
        { text: begin, eol: l.eol || '\n' },
        { text: formatMachineLine(m), eol: l.eol || '\n' },
        { text: end, eol: l.eol },
      );
    else if (!lineNos.includes(i + 1)) out.push(l);
  });
  const result = joinLines(out);
  return { text: result, changed: result !== text };
}

/**
 * A builder taken out of what Nix uses, kept inside its own markers: the machine line
 * commented (Nix skips a line starting with '#', machines.cc, every version) under a line
 * saying who took it out, when and why. Everything else about it stays.
 */
export interface Disabled {
  /** 'user' (nixremote disable) or 'keep' (the keeper found it down). */
  by: 'user' | 'keep';
  at: string;
  why: string;
}

/** The line that takes a builder's table out of Lix's TOML machines file. */
export const TOML_OFF = 'enable = false';

export const DISABLED_LINE = /^\s*# nixremote: disabled by (user|keep) at (\S+): (.*)$/;

/** The builder's block with its line commented out, or null when the file has no block for it. */
export function disableMachine(text: string, name: string, d: Disabled): BlockEdit | null {
  const body = readBlock(text, machineMarkers(name));
  if (body === null) return null;
  // No ';' in a comment: Nix before 2.24.15 and 2.28.2 splits entries at ';' before it
  // strips comments, and would read what follows as a machine (see parseMachines).
  const why = d.why.replace(/\s+/g, ' ').replace(/;/g, ',').trim();
  const was = body.findIndex((l) => DISABLED_LINE.test(l));
  if (was >= 0) {
    // Disabled already: by the keeper and now by hand, it becomes the user's (keep leaves it be).
    if (DISABLED_LINE.exec(body[was]!)![1] === d.by) return { text, changed: false };
    const lines = [...body];
    lines[was] = `# nixremote: disabled by ${d.by} at ${d.at}: ${why}`;
    return upsertBlock(text, machineMarkers(name), lines);
  }
  // A table of Lix's TOML file stays, with `enable = false` (Lix checks it, then leaves it out).
  if (body[0]?.startsWith('[machines.'))
    return upsertBlock(text, machineMarkers(name), [
      `# nixremote: disabled by ${d.by} at ${d.at}: ${why}`,
      ...body,
      TOML_OFF,
    ]);
  // Every line of the block gets one '#' more (a NixOS module's block is Nix code: its
  // lines become Nix comments), which enable takes off again: byte for byte.
  return upsertBlock(text, machineMarkers(name), [
    `# nixremote: disabled by ${d.by} at ${d.at}: ${why}`,
    ...body.map((l) => (l === '' ? l : `#${l}`)),
  ]);
}

/** The builder's block with its line back in use, or null when the file has no block for it. */
export function enableMachine(text: string, name: string): BlockEdit | null {
  const body = readBlock(text, machineMarkers(name));
  if (body === null) return null;
  if (!body.some((l) => DISABLED_LINE.test(l))) return { text, changed: false };
  if (body[1]?.startsWith('[machines.'))
    return upsertBlock(
      text,
      machineMarkers(name),
      body.filter((l, i) => !DISABLED_LINE.test(l) && !(i === body.length - 1 && l === TOML_OFF)),
    );
  return upsertBlock(
    text,
    machineMarkers(name),
    body.filter((l) => !DISABLED_LINE.test(l)).map((l) => (l.startsWith('#') ? l.slice(1) : l)),
  );
}

/** The builders disabled in a machines file's nixremote blocks, with the line each would have. */
export function disabledMachines(
  text: string,
  file: string,
): { name: string; disabled: Disabled; machine: ParsedMachine | null }[] {
  const out: { name: string; disabled: Disabled; machine: ParsedMachine | null }[] = [];
  const lines = text.split('\n');
  lines.forEach((l, i) => {
    const begin = /^# BEGIN nixremote builder (\S+)/.exec(l.trim());
    if (!begin) return;
    const name = begin[1]!;
    const next = DISABLED_LINE.exec((lines[i + 1] ?? '').trim());
    if (!next) return;
    const commented = (lines[i + 2] ?? '').replace(/\r$/, '');
    let machine: ParsedMachine | null = null;
    if (commented.startsWith('#'))
      machine = parseMachines(commented.slice(1), file, () => null, 0, i + 3).machines[0] ?? null;
    else if (commented.startsWith('[machines.')) {
      // A table in Lix's TOML file, left in with `enable = false`.
      const end = lines.findIndex((x, j) => j > i && x.trim() === `# END nixremote builder ${name}`);
      const body = lines.slice(i + 2, end < 0 ? undefined : end).join('\n');
      const t = readLixToml(body, file, i + 3, () => null, false);
      machine = t?.off[0]?.machine ?? t?.machines[0] ?? null;
    }
    out.push({ name, disabled: { by: next[1] as 'user' | 'keep', at: next[2]!, why: next[3]! }, machine });
  });
  return out;
}
