// Lix's TOML machines file (Lix 2.95.0 on, lix/libstore/machines.cc, read at 2.95.0 and
// 2.95.3; the line format stays, "frozen"). What is read as TOML, and how:
// - The whole `builders` setting is tried as TOML first: from the file when its first
//   character is '@' (the rest, untrimmed, is the path: one file, no nested '@'), else the
//   value itself. A file that cannot be read goes to the line reader (which ignores it).
// - A TOML syntax error is Lix's to report only when the setting's own text contains "toml"
//   (any case) or a '"'; otherwise Lix quietly reads the text as lines. So with the default
//   @/etc/nix/machines a broken TOML file is read as lines.
// - Once it parses, it is TOML, and every error below rejects all builders (a UsageError):
//   optional `version` (an integer, 1 only), `machines` a table of name -> table, nothing
//   else at the top; per machine `uri` (a string, required, taken as written: no ssh:// is
//   added), `system-types`, `ssh-key`, `jobs` (an integer >= 0), `speed-factor` (an integer
//   or float >= 0), `supported-features`, `mandatory-features`, `ssh-public-host-key` (the
//   key's text: Lix base64-encodes it) and `enable` (false: checked, then left out).
// The messages are Lix's (toml11's where it says the type is wrong); Lix points at the
// place with toml11's caret and no line:column, nixremote with FILE:LINE:COLUMN.
import { parse, TomlError } from 'smol-toml';
import { readBlock, upsertBlock, type BlockEdit } from '../text/managed-block.js';
import { DISABLED_LINE, TOML_OFF, type Machine, type MachinesParseError, type ParsedMachine } from './machines-file.js';

const KEYS = [
  'uri',
  'system-types',
  'ssh-key',
  'jobs',
  'speed-factor',
  'supported-features',
  'mandatory-features',
  'ssh-public-host-key',
  'enable',
] as const;

export interface TomlMachines {
  machines: ParsedMachine[];
  /** Machines with `enable = false`: checked by Lix, then left out. */
  off: { name: string; machine: ParsedMachine }[];
  errors: MachinesParseError[];
}

/** A TOML key as written: bare when it can be, else a basic string. */
export const tomlKey = (k: string) => (/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k));

const lixSays = (msg: string) => `Lix 2.95 rejects it: ${msg}`;

/** The line (1-based) where machine `name` starts, as well as the text lets us find it. */
function machineLine(lines: string[], name: string): number {
  const q = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const key = `(?:${q}|"${q}"|'${q}')`;
  const header = new RegExp(`^\\s*\\[\\s*machines\\s*\\.\\s*${key}\\s*\\]`);
  const dotted = new RegExp(`^\\s*(?:machines\\s*\\.\\s*)?${key}\\s*(?:=|\\.)`);
  const i = lines.findIndex((l) => header.test(l));
  if (i >= 0) return i + 1;
  const j = lines.findIndex((l) => dotted.test(l));
  return j >= 0 ? j + 1 : 1;
}

/** The line of `key = ` at or after line `from` (1-based), within that table. */
function keyLine(lines: string[], from: number, key: string): number {
  const q = key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  for (let i = from; i < lines.length; i++) {
    if (/^\s*\[/.test(lines[i]!)) break;
    if (new RegExp(`^\\s*"?${q}"?\\s*=`).test(lines[i]!)) return i + 1;
  }
  return Math.max(from, 1);
}

/**
 * The setting as Lix 2.95 reads it when it is TOML, or null when Lix would read it as lines
 * (not TOML, a syntax error it keeps quiet about, or a file it cannot read).
 */
export function readLixToml(
  setting: string,
  settingFile: string,
  firstLine: number,
  readFile: (p: string) => string | null,
  /** Lix itself (true), not a Nix of unknown version: its syntax errors are its own to report. */
  lix = true,
): TomlMachines | null {
  const fromFile = setting.startsWith('@');
  const file = fromFile ? setting.slice(1) : settingFile;
  const text = fromFile ? readFile(setting.slice(1)) : setting;
  if (text === null) return null;
  const at = (line: number) => (fromFile ? line : firstLine + line - 1);
  let data: Record<string, unknown>;
  try {
    data = parse(text, { integersAsBigInt: true }) as Record<string, unknown>;
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    if (!lix || (!/toml/i.test(setting) && !setting.includes('"'))) return null;
    const first = e.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
    return {
      machines: [],
      off: [],
      errors: [
        {
          file,
          line: at(e.line),
          column: e.column,
          message: `${first}; ${lixSays(`invalid Machines TOML syntax`)}`,
        },
      ],
    };
  }
  const lines = text.split('\n');
  const out: TomlMachines = { machines: [], off: [], errors: [] };
  const err = (line: number, message: string) =>
    out.errors.push({ file, line: at(line), column: 1, message: lixSays(message) });
  if (Object.keys(data).length === 0) return out;
  const extra = Object.keys(data).filter((k) => k !== 'version' && k !== 'machines');
  if (extra.length) err(keyLine(lines, 0, extra[0]!), `unexpected keys found: ${extra.join(', ')}`);
  if ('version' in data) {
    const v = data.version;
    if (typeof v !== 'bigint') err(keyLine(lines, 0, 'version'), 'toml::value::as_integer(): bad_cast to integer');
    else if (v !== 1n)
      err(
        keyLine(lines, 0, 'version'),
        `Unable to parse Machines of version ${v}, only versions between 1 and 1 are supported.`,
      );
  }
  if (!('machines' in data)) {
    // machines.cc reads data.at("machines"), which throws a std::out_of_range that nothing catches.
    err(1, 'there is no `machines` table (Lix 2.95 fails on that: write `machines = {}` for none)');
    return out;
  }
  const ms = data.machines;
  if (typeof ms !== 'object' || ms === null || Array.isArray(ms) || ms instanceof Date) {
    err(keyLine(lines, 0, 'machines'), 'Expected key `machines` to be a table of name -> machine configurations');
    return out;
  }
  for (const [name, m] of Object.entries(ms as Record<string, unknown>)) {
    const line = machineLine(lines, name);
    if (typeof m !== 'object' || m === null || Array.isArray(m)) {
      err(line, `for machine ${name}: Each machine must be a table`);
      continue;
    }
    const f = m as Record<string, unknown>;
    const before = out.errors.length;
    const bad = (key: string, msg: string) => err(keyLine(lines, line, key), `for machine ${name}: ${msg}`);
    for (const k of Object.keys(f)) if (!(KEYS as readonly string[]).includes(k)) bad(k, `unexpected key \`${k}\``);
    const str = (k: string): string | null => {
      if (!(k in f)) return null;
      if (typeof f[k] === 'string') return f[k] as string;
      bad(k, `toml::value::as_string(): bad_cast to string (\`${k}\`)`);
      return null;
    };
    const strs = (k: string): string[] => {
      if (!(k in f)) return [];
      const v = f[k];
      if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
      bad(k, `toml::value::as_array(): bad_cast to array of strings (\`${k}\`)`);
      return [];
    };
    const uri = str('uri');
    if (!('uri' in f)) bad('uri', 'uri must be present');
    let jobs = 1;
    if ('jobs' in f) {
      if (typeof f.jobs !== 'bigint') bad('jobs', 'toml::value::as_integer(): bad_cast to integer (`jobs`)');
      else if (f.jobs < 0n) bad('jobs', 'jobs must be >= 0');
      else jobs = Number(f.jobs);
    }
    let speed = 1;
    if ('speed-factor' in f) {
      const s = f['speed-factor'];
      if (typeof s !== 'bigint' && typeof s !== 'number')
        bad('speed-factor', 'bad_cast to floating for `speed-factor`: Was neither an integer nor a float');
      else if (Number(s) < 0) bad('speed-factor', 'speed factor must be >= 0');
      else speed = Number(s);
    }
    if ('enable' in f && typeof f.enable !== 'boolean')
      err(keyLine(lines, line, 'enable'), 'toml::value::as_boolean(): bad_cast to boolean (`enable`)');
    const hostKey = str('ssh-public-host-key');
    const machine: ParsedMachine = {
      uri: uri ?? '',
      systems: strs('system-types'),
      sshKey: str('ssh-key') || null,
      maxJobs: jobs,
      speedFactor: speed,
      supportedFeatures: strs('supported-features'),
      mandatoryFeatures: strs('mandatory-features'),
      // Lix base64-encodes the key's text (machines.cc); the line format holds it encoded.
      hostKey: hostKey ? Buffer.from(hostKey).toString('base64') : null,
      source: { file, line: at(line) },
    };
    if (out.errors.length > before) continue;
    if (f.enable === false) out.off.push({ name, machine });
    else out.machines.push(machine);
  }
  return out;
}

/** Whether this text is a TOML machines file (it parses, and has a `machines` table). */
export function isTomlMachines(text: string): boolean {
  try {
    const d = parse(text) as Record<string, unknown>;
    return typeof d.machines === 'object' && d.machines !== null;
  } catch {
    return false;
  }
}

/** Whether the file has a table for this machine (anywhere, nixremote's or not). */
export function tomlHasMachine(text: string, name: string): boolean {
  try {
    const d = parse(text) as { machines?: Record<string, unknown> };
    return typeof d.machines === 'object' && d.machines !== null && name in d.machines;
  } catch {
    return false;
  }
}

const tomlString = (s: string) => JSON.stringify(s);
const tomlList = (xs: string[]) => `[${xs.map(tomlString).join(', ')}]`;

/** A builder's table, as nixremote writes it between its markers. */
export function tomlMachineBody(name: string, m: Machine): string[] {
  const hostKey = m.hostKey ? Buffer.from(m.hostKey, 'base64').toString('utf8').trim() : null;
  return [
    `[machines.${tomlKey(name)}]`,
    `uri = ${tomlString(m.uri)}`,
    `system-types = ${tomlList(m.systems)}`,
    ...(m.sshKey ? [`ssh-key = ${tomlString(m.sshKey)}`] : []),
    `jobs = ${m.maxJobs}`,
    `speed-factor = ${m.speedFactor}`,
    `supported-features = ${tomlList(m.supportedFeatures)}`,
    `mandatory-features = ${tomlList(m.mandatoryFeatures)}`,
    ...(hostKey ? [`ssh-public-host-key = ${tomlString(hostKey)}`] : []),
  ];
}

export const TOML_HEADER = 'version = 1';

/**
 * Add or replace a builder's table in a TOML machines file: replaced where it stands, a new
 * one at the end (after every table, where a table header starts a table of its own). A new
 * file starts with `version = 1`.
 */
export function upsertTomlMachine(
  text: string,
  name: string,
  m: Machine,
  markers: { begin: string; end: string },
): BlockEdit {
  const base = text === '' ? `${TOML_HEADER}\n\n` : text;
  const was = readBlock(base, markers);
  // A disabled builder stays disabled when its table is rewritten.
  const off = was?.find((l) => DISABLED_LINE.test(l));
  const body = off ? [off, ...tomlMachineBody(name, m), TOML_OFF] : tomlMachineBody(name, m);
  const edit = upsertBlock(base, markers, body);
  return text === '' ? { text: edit.text, changed: true } : edit;
}
