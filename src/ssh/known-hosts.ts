// known_hosts as text: "hostpatterns keytype base64 [comment]". nixremote pins one key
// per builder under its alias, on a line that names only that alias.
import { createHmac } from 'node:crypto';
import { detectEol, joinLines, splitLines } from '../text/lines.js';
import { keyLine, parseKeyLine, type HostKey } from './host-key.js';

export interface KnownEntry {
  line: number;
  hosts: string[];
  key: HostKey;
}

export function knownEntries(text: string, alias: string): KnownEntry[] {
  const out: KnownEntry[] = [];
  splitLines(text).forEach((l, i) => {
    const t = l.text.trim();
    if (t === '' || t.startsWith('#') || t.startsWith('@')) return;
    const sp = t.search(/\s/);
    if (sp < 0) return;
    const hosts = t.slice(0, sp).split(',');
    if (!hosts.includes(alias)) return;
    const key = parseKeyLine(t.slice(sp));
    if (key) out.push({ line: i + 1, hosts, key });
  });
  return out;
}

const sameKey = (a: HostKey, b: HostKey) => a.type === b.type && a.base64 === b.base64;

/** Keys known for the alias that are not `key`: pinning would replace them. */
export function conflictingKeys(text: string, alias: string, key: HostKey): KnownEntry[] {
  return knownEntries(text, alias).filter((e) => !sameKey(e.key, key));
}

/**
 * Leave exactly one line for the alias with `key`: lines that name only the alias and
 * hold another key are dropped; a line already holding the key is kept as it is.
 */
export function pinHostKey(text: string, alias: string, key: HostKey): { text: string; changed: boolean } {
  const entries = knownEntries(text, alias);
  const drop = new Set(entries.filter((e) => e.hosts.length === 1 && !sameKey(e.key, key)).map((e) => e.line));
  const has = entries.some((e) => sameKey(e.key, key));
  if (drop.size === 0 && has) return { text, changed: false };
  const eol = detectEol(text);
  const lines = splitLines(text).filter((_, i) => !drop.has(i + 1));
  if (!has) {
    if (lines.length > 0 && lines[lines.length - 1]!.eol === '')
      lines[lines.length - 1] = { ...lines[lines.length - 1]!, eol };
    lines.push({ text: `${alias} ${keyLine(key)}`, eol });
  }
  const out = joinLines(lines);
  return { text: out, changed: out !== text };
}

/**
 * Where a key for one of `names` is known: plain host lists and hashed ones ("|1|salt|hash",
 * HMAC-SHA1 of the name keyed by the salt, as ssh-keygen -H writes them). Revoked and
 * @cert-authority lines do not pin a host key, so they are not counted.
 */
export function findKnownHost(text: string, names: string[]): { line: number; name: string; key: HostKey } | null {
  const lines = splitLines(text);
  for (let i = 0; i < lines.length; i++) {
    const t = lines[i]!.text.trim();
    if (t === '' || t.startsWith('#') || t.startsWith('@')) continue;
    const sp = t.search(/\s/);
    if (sp < 0) continue;
    const key = parseKeyLine(t.slice(sp));
    if (!key) continue;
    const hosts = t.slice(0, sp).split(',');
    for (const name of names) {
      if (hosts.some((h) => (h.startsWith('|1|') ? hashedMatches(h, name) : h === name)))
        return { line: i + 1, name, key };
    }
  }
  return null;
}

function hashedMatches(entry: string, name: string): boolean {
  const [, , salt, hash] = entry.split('|');
  if (!salt || !hash) return false;
  return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
}

/** known_hosts without the lines that pin a key for `alias` alone (what nixremote wrote). */
export function unpinHostKey(text: string, alias: string): { text: string; changed: boolean } {
  const drop = new Set(
    knownEntries(text, alias)
      .filter((e) => e.hosts.length === 1)
      .map((e) => e.line),
  );
  if (drop.size === 0) return { text, changed: false };
  const kept = splitLines(text).filter((_, i) => !drop.has(i + 1));
  const out = joinLines(kept);
  return { text: out, changed: out !== text };
}
