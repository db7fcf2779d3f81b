// ~/.ssh/config as text. OpenSSH reads it top to bottom and, for each option, keeps the
// first value that applies (ssh_config(5): "the first obtained value will be used"), so
// where our Host block goes matters: it is put before the user's first Host or Match
// section, where no wildcard block above it can override it.
import { nixremoteLines, readBlock, upsertBlock, type BlockEdit, type Markers } from '../text/managed-block.js';
import { detectEol, joinLines, splitLines, type Line } from '../text/lines.js';

export interface SshConfigEntry {
  line: number; // 1-based
  keyword: string; // lower-cased
  args: string[];
}

/** Split an ssh_config argument list the way OpenSSH does: whitespace, double quotes. */
export function splitArgs(s: string): string[] {
  const out: string[] = [];
  for (const m of s.matchAll(/"([^"]*)"|(\S+)/g)) out.push(m[1] ?? m[2]!);
  return out;
}

/** Each option line: `Keyword value`, `Keyword=value` or `Keyword = value`; comments skipped. */
export function parseSshConfig(text: string): SshConfigEntry[] {
  const entries: SshConfigEntry[] = [];
  splitLines(text).forEach((l, i) => {
    const t = l.text.trim();
    if (t === '' || t.startsWith('#')) return;
    const m = /^([A-Za-z][A-Za-z0-9]*)\s*(?:=\s*|\s+|$)(.*)$/.exec(t);
    if (!m) return;
    entries.push({ line: i + 1, keyword: m[1]!.toLowerCase(), args: splitArgs(m[2]!) });
  });
  return entries;
}

export const hostBlockMarkers = (name: string): Markers => ({
  begin: `# BEGIN nixremote builder ${name} (managed by nixremote; edits inside are replaced)`,
  end: `# END nixremote builder ${name}`,
});

const ANY_BEGIN = /^# BEGIN nixremote /;

export interface HostBlock {
  name: string;
  hostName: string;
  port: number;
  user: string;
  identityFile: string;
  /** Seconds ssh waits for the TCP connection and the server's banner (init --connect-timeout; default 10). */
  connectTimeout?: number;
}

/** ssh_config quoting: a value with whitespace goes in double quotes. */
function quoteArg(v: string): string {
  return /\s/.test(v) ? `"${v}"` : v;
}

export function hostBlockBody(b: HostBlock): string[] {
  return [
    `Host ${b.name}`,
    `  HostName ${b.hostName}`,
    `  Port ${b.port}`,
    `  User ${b.user}`,
    `  IdentityFile ${quoteArg(b.identityFile)}`,
    '  IdentitiesOnly yes',
    // Nix pins the host key from the machines file under the name in the store URI; with
    // the alias, ssh looks the key up as NAME instead of [HostName]:Port. Without it
    // Nix 2.8 fails with only "remote machines may not have all required system features".
    `  HostKeyAlias ${b.name}`,
    // A dead builder should fail a build's ssh within seconds, not hang it: ssh's own
    // default waits as long as the kernel's TCP connect does (minutes on a dropped route).
    `  ConnectTimeout ${b.connectTimeout ?? 10}`,
    '  ServerAliveInterval 15',
    '  ServerAliveCountMax 3',
    // No multiplexing for the builder, whatever a wider Host * or Match sets: Nix runs its
    // own ssh sessions, and a shared master that outlives them (ControlPersist) is known to
    // hang or break the build hook's connections.
    '  ControlMaster no',
    '  ControlPath none',
  ];
}

/** Line numbers (1-based) of Host lines outside nixremote's blocks that name `name` exactly. */
export function unmanagedHostLines(text: string, name: string): number[] {
  const managed = nixremoteLines(text);
  return parseSshConfig(text)
    .filter((e) => e.keyword === 'host' && !managed.has(e.line) && e.args.includes(name))
    .map((e) => e.line);
}

/** Before the first Host/Match section (and the comments right above it), or at the end. */
function insertionPoint(lines: Line[]): number {
  let i = lines.findIndex((l) => {
    const t = l.text.trim();
    return ANY_BEGIN.test(t) || /^(host|match)(\s|=|$)/i.test(t);
  });
  if (i < 0) return lines.length;
  while (
    i > 0 &&
    lines[i - 1]!.text.trim().startsWith('#') &&
    !lines[i - 1]!.text.trim().startsWith('# END nixremote ')
  )
    i--;
  return i;
}

export function upsertHostBlock(text: string, b: HostBlock): BlockEdit {
  // Options of the user's own that an adopted block carries (ProxyJump, Ciphers, ...) stay
  // when nixremote rewrites its settings.
  const theirs = (readBlock(text, hostBlockMarkers(b.name)) ?? []).filter((l) => {
    const e = parseSshConfig(l)[0];
    return e !== undefined && e.keyword !== 'host' && !MANAGED_KEYWORDS.has(e.keyword);
  });
  return upsertBlock(text, hostBlockMarkers(b.name), [...hostBlockBody(b), ...theirs], insertionPoint);
}

/** `ssh -G` output as a map of lower-case keyword to its values. */
export function parseSshG(out: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const line of out.split('\n')) {
    const m = /^(\S+)\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    const k = m[1]!.toLowerCase();
    map.set(k, [...(map.get(k) ?? []), m[2]!]);
  }
  return map;
}

/** What in `ssh -G NAME` differs from the block we wrote: another section won. */
export function effectiveConfigMismatches(sshG: string, b: HostBlock, expandedKey: string): string[] {
  const g = parseSshG(sshG);
  const first = (k: string) => g.get(k)?.[0];
  const out: string[] = [];
  const want: [string, string][] = [
    ['hostname', b.hostName],
    ['port', String(b.port)],
    ['user', b.user],
    ['hostkeyalias', b.name],
  ];
  for (const [k, v] of want) {
    if (first(k) !== v) out.push(`${k} is ${first(k) ?? '(unset)'}, expected ${v}`);
  }
  const ids = g.get('identityfile') ?? [];
  if (!ids.includes(expandedKey)) out.push(`identityfile does not include ${expandedKey}`);
  return out;
}

/**
 * Add `HostKeyAlias alias` under the Host line that names `alias` exactly (a user's block
 * or ours), keeping everything else; null when no such Host line exists or it already has one.
 */
export function addHostKeyAlias(text: string, alias: string): string | null {
  const entries = parseSshConfig(text);
  const host = entries.find((e) => e.keyword === 'host' && e.args.includes(alias));
  if (!host) return null;
  const next = entries.find((e) => e.line > host.line && (e.keyword === 'host' || e.keyword === 'match'));
  if (entries.some((e) => e.line > host.line && (!next || e.line < next.line) && e.keyword === 'hostkeyalias'))
    return null;
  const lines = splitLines(text);
  const eol = lines[host.line - 1]!.eol || detectEol(text);
  if (lines[host.line - 1]!.eol === '') lines[host.line - 1] = { ...lines[host.line - 1]!, eol };
  lines.splice(host.line, 0, { text: `  HostKeyAlias ${alias}`, eol: host.line === lines.length ? '' : eol });
  return joinLines(lines);
}

/**
 * ssh_config's pattern match (match.c, match_pattern): '*' any run, '?' one character,
 * compared case-insensitively, as ssh lower-cases the host it is given.
 */
export function matchPattern(name: string, pattern: string): boolean {
  return globRegExp(pattern, 'i').test(name);
}

/** A glob with '*' and '?' (ssh_config patterns, Include file names) as a whole-string RegExp. */
export function globRegExp(glob: string, flags = ''): RegExp {
  return new RegExp(
    `^${glob
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    flags,
  );
}

/** A Host line's patterns match `name`: one positive pattern matches and no negated one does. */
export function hostLineMatches(patterns: string[], name: string): boolean {
  let hit = false;
  for (const p of patterns) {
    if (p.startsWith('!')) {
      if (matchPattern(name, p.slice(1))) return false;
    } else if (matchPattern(name, p)) hit = true;
  }
  return hit;
}

export interface HostSection {
  line: number;
  patterns: string[];
  /** Inside nixremote's markers. */
  managed: boolean;
  /** Keyword (lower-case) to its first value in the section, as ssh keeps the first. */
  options: Map<string, string[]>;
}

/**
 * The Host sections that name `name` itself, not only through `*`: what "has a Host block
 * for the builder" means to a person. Match sections are left out; ssh -G tells their effect.
 */
export function hostSectionsFor(text: string, name: string): HostSection[] {
  const managed = nixremoteLines(text);
  const out: HostSection[] = [];
  let current: HostSection | null = null;
  for (const e of parseSshConfig(text)) {
    if (e.keyword === 'host' || e.keyword === 'match') {
      const specific =
        e.keyword === 'host' && e.args.some((p) => !p.startsWith('!') && p !== '*' && matchPattern(name, p));
      current =
        specific && hostLineMatches(e.args, name)
          ? { line: e.line, patterns: e.args, managed: managed.has(e.line), options: new Map() }
          : null;
      if (current) out.push(current);
    } else if (current && !current.options.has(e.keyword)) current.options.set(e.keyword, e.args);
  }
  return out;
}

/** StrictHostKeyChecking values that let ssh connect to a host whose key it does not know. */
export const CHECKING_OFF = new Set(['no', 'off', 'false', 'accept-new']);

/**
 * The config without the lines, in Host sections naming `name` itself, that turn host key
 * checking off for it: `StrictHostKeyChecking no|off|accept-new` and `UserKnownHostsFile
 * /dev/null` (as the NixOS wiki's distributed-builds page has them). ssh's defaults
 * (ask, which batch mode treats as yes; ~/.ssh/known_hosts) then apply. `removed` lists
 * the line numbers taken out; none when those settings come from elsewhere (Host *, Match).
 */
export function restoreHostKeyChecking(text: string, name: string): { text: string; removed: number[] } {
  const sections = hostSectionsFor(text, name);
  const entries = parseSshConfig(text);
  const removed: number[] = [];
  for (const sec of sections) {
    const next =
      entries.find((e) => e.line > sec.line && (e.keyword === 'host' || e.keyword === 'match'))?.line ?? Infinity;
    for (const e of entries) {
      if (e.line <= sec.line || e.line >= next) continue;
      const off = e.keyword === 'stricthostkeychecking' && CHECKING_OFF.has((e.args[0] ?? '').toLowerCase());
      const devNull = e.keyword === 'userknownhostsfile' && e.args.length > 0 && e.args.every((a) => a === '/dev/null');
      if (off || devNull) removed.push(e.line);
    }
  }
  if (!removed.length) return { text, removed };
  const drop = new Set(removed);
  return { text: joinLines(splitLines(text).filter((_, i) => !drop.has(i + 1))), removed };
}

/**
 * Connection sharing that ssh -G says applies to the builder: ControlMaster other than
 * no, with a ControlPath other than none. null when there is none.
 */
export function multiplexing(g: Map<string, string[]>): string | null {
  const master = (g.get('controlmaster')?.[0] ?? 'false').toLowerCase();
  const cpath = g.get('controlpath')?.[0] ?? 'none';
  if (master === 'false' || master === 'no' || cpath === 'none') return null;
  const persist = g.get('controlpersist')?.[0];
  return `ControlMaster ${master}, ControlPath ${cpath}${persist && persist !== 'no' && persist !== 'false' ? `, ControlPersist ${persist}` : ''}`;
}

/** What init's Host block sets, and what it replaces with a pinned key: in an adopted block these give way. */
const MANAGED_KEYWORDS = new Set([
  'hostname',
  'port',
  'user',
  'identityfile',
  'identitiesonly',
  'hostkeyalias',
  'connecttimeout',
  'serveraliveinterval',
  'serveralivecountmax',
  'controlmaster',
  'controlpath',
  'controlpersist',
  'stricthostkeychecking',
  'userknownhostsfile',
]);

export interface Adoption {
  text: string;
  /** The user's lines taken into nixremote's block as they were (ProxyJump, Ciphers, ...). */
  kept: string[];
  /** The user's lines nixremote's own settings replace. */
  replaced: string[];
  /** Where the user's block began. */
  line: number;
}

/**
 * Take the user's own `Host NAME` section under nixremote's markers: nixremote's settings,
 * then every option of theirs that nixremote does not set, in their order. The block moves
 * to where init puts its blocks (before the first Host or Match), since ssh keeps the first
 * value it finds. null when no section's Host line names NAME alone (a line naming other
 * hosts too is shared with them, and not nixremote's to take).
 */
export function adoptHostBlock(text: string, b: HostBlock): Adoption | null {
  const managed = nixremoteLines(text);
  const entries = parseSshConfig(text);
  const host = entries.find(
    (e) => e.keyword === 'host' && !managed.has(e.line) && e.args.length === 1 && e.args[0] === b.name,
  );
  if (!host) return null;
  const lines = splitLines(text);
  let end =
    entries.find((e) => e.line > host.line && (e.keyword === 'host' || e.keyword === 'match'))?.line ??
    lines.length + 1;
  // Comments and blank lines right above the next section belong to it.
  while (end - 1 > host.line && /^\s*(#.*)?$/.test(lines[end - 2]!.text)) end--;
  const kept: string[] = [];
  const replaced: string[] = [];
  for (let n = host.line + 1; n < end; n++) {
    const t = lines[n - 1]!.text.trim();
    if (t === '') continue;
    const e = entries.find((x) => x.line === n);
    if (e && MANAGED_KEYWORDS.has(e.keyword)) replaced.push(t);
    else kept.push(`  ${t}`);
  }
  const rest = joinLines([...lines.slice(0, host.line - 1), ...lines.slice(end - 1)]);
  const edit = upsertBlock(rest, hostBlockMarkers(b.name), [...hostBlockBody(b), ...kept], insertionPoint);
  return { text: edit.text, kept, replaced, line: host.line };
}
