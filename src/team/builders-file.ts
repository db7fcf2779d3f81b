// A team's builders in one file (nixremote.toml), for `nixremote apply` and `export`:
//
//   [options]                      # all optional
//   key = "/root/.ssh/nix_remote"  # the private key (made when missing)
//   connect-timeout = 10           # seconds, in each Host block
//   target = "nix-conf"            # nix-conf, determinate, macos, nixos, nix-darwin
//   module = "/etc/nixos/nixremote.nix"
//
//   [builders.fast]                # the name: ssh alias and builder name
//   host = "192.168.1.20"          # required
//   port = 22
//   user = "nixbuild"              # required
//   host-key = "ssh-ed25519 AAAA…" # or host-key-fingerprint = "SHA256:…": one is required
//   protocol = "ssh"               # or "ssh-ng"
//   access = "trusted"             # or "signed"
//   restrict-to-nix = false
//   systems = ["x86_64-linux"]     # these four: found on the builder when left out
//   features = ["big-parallel"]
//   mandatory-features = []
//   jobs = 8
//   speed-factor = 1
//
// Everything is checked before anything is touched, each error at FILE:LINE:COLUMN with the
// field and what it may be; the values go through init's own checks under the same names.
import { parse, TomlError } from 'smol-toml';
import { fingerprint, parseKeyLine } from '../ssh/host-key.js';
import {
  UsageError,
  validateHost,
  validateKeyPath,
  validateName,
  validatePort,
  validatePositiveInt,
  validateUser,
} from '../validate.js';

export interface TeamOptions {
  key?: string;
  connectTimeout?: number;
  target?: string;
  module?: string;
}

export interface TeamBuilder {
  name: string;
  host: string;
  port: number;
  user: string;
  /** The pin: the key itself or its SHA256 fingerprint. */
  hostKey: string | null;
  hostKeyFingerprint: string;
  protocol: 'ssh' | 'ssh-ng';
  access: 'trusted' | 'signed';
  restrictToNix: boolean | null;
  systems: string[] | null;
  features: string[] | null;
  mandatoryFeatures: string[] | null;
  jobs: number | null;
  speedFactor: number | null;
}

export interface TeamFile {
  options: TeamOptions;
  builders: TeamBuilder[];
}

const TARGETS = ['nix-conf', 'determinate', 'macos', 'nixos', 'nix-darwin'];
const OPTION_KEYS = ['key', 'connect-timeout', 'target', 'module'];
const BUILDER_KEYS = [
  'host',
  'port',
  'user',
  'host-key',
  'host-key-fingerprint',
  'protocol',
  'access',
  'restrict-to-nix',
  'systems',
  'features',
  'mandatory-features',
  'jobs',
  'speed-factor',
];

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Where a table's header, or a key in it, is: 1-based line and column. */
function locate(lines: string[], table: string, key?: string): { line: number; column: number } {
  const parts = table.split('.');
  const head = new RegExp(`^\\s*\\[\\s*${parts.map((p) => `(?:${esc(p)}|"${esc(p)}")`).join('\\s*\\.\\s*')}\\s*\\]`);
  const at = lines.findIndex((l) => head.test(l));
  if (key === undefined || at < 0) return { line: at + 1 || 1, column: 1 };
  for (let i = at + 1; i < lines.length && !/^\s*\[/.test(lines[i]!); i++) {
    const m = new RegExp(`^(\\s*"?${esc(key)}"?\\s*=\\s*)`).exec(lines[i]!);
    if (m) return { line: i + 1, column: m[1]!.length + 1 };
  }
  return { line: at + 1, column: 1 };
}

export function parseTeamFile(text: string, file: string): TeamFile {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text, { integersAsBigInt: true }) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof TomlError)
      throw new UsageError(
        `${file}:${e.line}:${e.column}: not TOML: ${e.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '')}`,
      );
    throw e;
  }
  const lines = text.split('\n');
  const where = (table: string, key?: string) => {
    const p = locate(lines, table, key);
    return `${file}:${p.line}:${p.column}`;
  };
  const bad = (table: string, key: string | undefined, msg: string): never => {
    throw new UsageError(`${where(table, key)}: ${key ? `${table}.${key}` : table}: ${msg}`);
  };
  const table = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
  for (const k of Object.keys(doc))
    if (k !== 'options' && k !== 'builders')
      bad(k, undefined, 'unknown; the file has [options] and [builders.NAME] tables');

  const o = (doc.options ?? {}) as Record<string, unknown>;
  if (!table(o)) bad('options', undefined, 'must be a table');
  for (const k of Object.keys(o))
    if (!OPTION_KEYS.includes(k)) bad('options', k, `unknown; allowed: ${OPTION_KEYS.join(', ')}`);
  const str = (t: string, r: Record<string, unknown>, k: string): string | undefined => {
    if (!(k in r)) return undefined;
    if (typeof r[k] !== 'string') bad(t, k, 'must be a string');
    return r[k] as string;
  };
  const int = (t: string, r: Record<string, unknown>, k: string, what: string): number | undefined => {
    if (!(k in r)) return undefined;
    if (typeof r[k] !== 'bigint') bad(t, k, `must be ${what}`);
    return Number(r[k]);
  };
  const options: TeamOptions = {};
  const key = str('options', o, 'key');
  if (key !== undefined) options.key = validateKeyPath(key, `${where('options', 'key')}: options.key`);
  const timeout = int('options', o, 'connect-timeout', 'a whole number of seconds');
  if (timeout !== undefined)
    options.connectTimeout = validatePositiveInt(
      timeout,
      `${where('options', 'connect-timeout')}: options.connect-timeout`,
    );
  const target = str('options', o, 'target');
  if (target !== undefined) {
    if (!TARGETS.includes(target)) bad('options', 'target', `'${target}' is not one of ${TARGETS.join(', ')}`);
    options.target = target;
  }
  const module = str('options', o, 'module');
  if (module !== undefined) {
    if (!module.startsWith('/')) bad('options', 'module', 'must be an absolute path');
    options.module = module;
  }

  const bs = doc.builders;
  if (bs === undefined) bad('builders', undefined, 'no [builders.NAME] table: the file names no builder');
  if (!table(bs)) bad('builders', undefined, 'must be tables [builders.NAME], one per builder');
  const builders: TeamBuilder[] = [];
  for (const [name, v] of Object.entries(bs as Record<string, unknown>)) {
    const t = `builders.${name}`;
    validateName(name, `${where(t)}: [${t}]`);
    if (!table(v)) bad(t, undefined, 'must be a table of host, user, host-key, ...');
    const r = v as Record<string, unknown>;
    for (const k of Object.keys(r))
      if (!BUILDER_KEYS.includes(k)) bad(t, k, `unknown; allowed: ${BUILDER_KEYS.join(', ')}`);
    const flag = (k: string) => `${where(t, k)}: ${t}.${k}`;
    const need = (k: string) => str(t, r, k) ?? bad(t, undefined, `${k} is missing`);
    const host = validateHost(need('host'), flag('host'));
    const user = validateUser(need('user'), flag('user'));
    const port = validatePort(int(t, r, 'port', 'a port number (1-65535)') ?? 22, flag('port'));
    const choice = <T extends string>(k: string, allowed: T[], dflt: T): T => {
      const x = str(t, r, k) ?? dflt;
      if (!allowed.includes(x as T)) bad(t, k, `'${x}' is not one of ${allowed.join(', ')}`);
      return x as T;
    };
    const protocol = choice('protocol', ['ssh', 'ssh-ng'], 'ssh');
    const access = choice('access', ['trusted', 'signed'], 'trusted');
    if (access === 'signed' && protocol === 'ssh') bad(t, 'access', 'signed goes with protocol = "ssh-ng"');
    // The pin: nothing is trusted on first use.
    const keyText = str(t, r, 'host-key');
    const fp = str(t, r, 'host-key-fingerprint');
    if (keyText === undefined && fp === undefined)
      bad(t, undefined, 'host-key or host-key-fingerprint is missing: apply trusts no host key on first use');
    let hostKeyFingerprint = fp ?? '';
    if (keyText !== undefined) {
      const k = parseKeyLine(keyText);
      if (!k) bad(t, 'host-key', 'is not a public key line ("ssh-ed25519 AAAA...")');
      hostKeyFingerprint = fingerprint(k!);
      if (fp !== undefined && fp !== hostKeyFingerprint)
        bad(t, 'host-key-fingerprint', `${fp} is not the fingerprint of host-key (${hostKeyFingerprint})`);
    } else if (!/^SHA256:[A-Za-z0-9+/]{43}=?$/.test(hostKeyFingerprint))
      bad(
        t,
        'host-key-fingerprint',
        `'${hostKeyFingerprint}' is not a SHA256 fingerprint ("SHA256:" and 43 characters)`,
      );
    const list = (k: string): string[] | null => {
      if (!(k in r)) return null;
      const x = r[k];
      if (!Array.isArray(x) || !x.every((s) => typeof s === 'string' && /^[A-Za-z0-9._+-]+$/.test(s)))
        bad(t, k, 'must be a list of names ("x86_64-linux", "big-parallel")');
      return x as string[];
    };
    const restrict = r['restrict-to-nix'];
    if (restrict !== undefined && typeof restrict !== 'boolean') bad(t, 'restrict-to-nix', 'must be true or false');
    const jobs = int(t, r, 'jobs', 'a whole number of 1 or more');
    if (jobs !== undefined) validatePositiveInt(jobs, flag('jobs'));
    let speedFactor: number | null = null;
    if ('speed-factor' in r) {
      const s = r['speed-factor'];
      if ((typeof s !== 'bigint' && typeof s !== 'number') || Number(s) <= 0)
        bad(t, 'speed-factor', 'must be a number above 0');
      speedFactor = Number(s);
    }
    builders.push({
      name,
      host,
      port,
      user,
      hostKey: keyText ?? null,
      hostKeyFingerprint,
      protocol,
      access,
      restrictToNix: (restrict as boolean | undefined) ?? null,
      systems: list('systems'),
      features: list('features'),
      mandatoryFeatures: list('mandatory-features'),
      jobs: jobs ?? null,
      speedFactor,
    });
  }
  if (!builders.length) bad('builders', undefined, 'names no builder');
  // In the file's order (a JavaScript object puts names like "1" first): the order they are set up in.
  const at = (b: TeamBuilder) => locate(lines, `builders.${b.name}`).line;
  builders.sort((x, y) => at(x) - at(y));
  return { options, builders };
}

const q = (s: string) => JSON.stringify(s);
const qs = (xs: string[]) => `[${xs.map(q).join(', ')}]`;

/** The file `export` writes: the same shape, every field said. */
export function formatTeamFile(f: TeamFile): string {
  const out = ['# nixremote builders: nixremote apply FILE makes a machine match this file.', ''];
  const o = f.options;
  if (o.key || o.connectTimeout || o.target || o.module) {
    out.push('[options]');
    if (o.key) out.push(`key = ${q(o.key)}`);
    if (o.connectTimeout) out.push(`connect-timeout = ${o.connectTimeout}`);
    if (o.target) out.push(`target = ${q(o.target)}`);
    if (o.module) out.push(`module = ${q(o.module)}`);
    out.push('');
  }
  for (const b of f.builders) {
    out.push(`[builders.${/^[A-Za-z0-9_-]+$/.test(b.name) ? b.name : q(b.name)}]`);
    out.push(`host = ${q(b.host)}`, `port = ${b.port}`, `user = ${q(b.user)}`);
    out.push(b.hostKey ? `host-key = ${q(b.hostKey)}` : `host-key-fingerprint = ${q(b.hostKeyFingerprint)}`);
    out.push(`protocol = ${q(b.protocol)}`, `access = ${q(b.access)}`);
    if (b.restrictToNix !== null) out.push(`restrict-to-nix = ${b.restrictToNix}`);
    if (b.systems) out.push(`systems = ${qs(b.systems)}`);
    if (b.features) out.push(`features = ${qs(b.features)}`);
    if (b.mandatoryFeatures) out.push(`mandatory-features = ${qs(b.mandatoryFeatures)}`);
    if (b.jobs !== null) out.push(`jobs = ${b.jobs}`);
    if (b.speedFactor !== null) out.push(`speed-factor = ${b.speedFactor}`);
    out.push('');
  }
  return out.join('\n');
}
