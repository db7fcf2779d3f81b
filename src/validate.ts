// Input checks, made before anything is touched. Everything here ends up in ssh_config,
// on ssh's command line or in the machines file, so the rules are what those accept:
// a leading '-' would be read by ssh as an option (-oProxyCommand=...), whitespace splits
// ssh_config and machines-file fields, '#' starts a comment in both, '%' is an ssh_config
// token, quotes and newlines break every one of them.
export class UsageError extends Error {
  readonly exitCode = 2;
}

const FORBIDDEN = /[\s'"`#%\\;$]/;

function common(what: string, flag: string, v: string): void {
  if (v === '') throw new UsageError(`${flag}: ${what} is empty`);
  if (v.startsWith('-'))
    throw new UsageError(`${flag}: ${what} '${v}' starts with '-', which ssh would read as an option`);
  const bad = FORBIDDEN.exec(v);
  if (bad) {
    const shown = JSON.stringify(bad[0]);
    throw new UsageError(
      `${flag}: ${what} ${JSON.stringify(v)} contains ${shown}; use letters, digits, '.', '-' and '_'`,
    );
  }
}

export function validateHost(v: string, flag = '--host'): string {
  common('the host', flag, v);
  // A DNS name, an IPv4 address or a bare IPv6 address.
  if (!/^[A-Za-z0-9._:-]+$/.test(v)) throw new UsageError(`${flag}: '${v}' is not a host name or IP address`);
  return v;
}

export function validateUser(v: string, flag = '--user'): string {
  common('the user', flag, v);
  if (!/^[A-Za-z0-9._][A-Za-z0-9._-]*$/.test(v)) throw new UsageError(`${flag}: '${v}' is not a valid user name`);
  return v;
}

export function validateName(v: string, flag = '--name'): string {
  common('the name', flag, v);
  // ssh lower-cases the host name it is given before matching Host lines, so an alias with
  // capitals would never match its own block.
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(v)) {
    throw new UsageError(
      `${flag}: '${v}' must be lower-case letters, digits, '.', '-' and '_' (ssh lower-cases host names before matching Host blocks)`,
    );
  }
  return v;
}

export function validatePort(v: string | number, flag = '--port'): number {
  const s = String(v).trim();
  if (!/^\d+$/.test(s)) throw new UsageError(`${flag}: '${v}' is not a port number (1-65535)`);
  const n = Number(s);
  if (n < 1 || n > 65535) throw new UsageError(`${flag}: ${n} is out of range (1-65535)`);
  return n;
}

export function validateKeyPath(v: string, flag = '--key'): string {
  if (!v.startsWith('/')) throw new UsageError(`${flag}: '${v}' must be an absolute path`);
  // Spaces are fine: ssh_config gets the path in double quotes, and the machines file (which
  // has no quoting) leaves the key to the Host block. Quotes, newlines and tabs cannot be
  // written into ssh_config, '%' is an ssh_config token, '#' and ';' end a machines entry.
  if (/[\t\n\r'"`#%;\\]/.test(v)) {
    throw new UsageError(
      `${flag}: '${v}' contains a quote, a tab or newline, '#', ';', '%' or '\\', which ssh_config or the machines file cannot hold`,
    );
  }
  if (v.startsWith('/nix/store/')) {
    throw new UsageError(
      `${flag}: '${v}' is in /nix/store, which every user can read; keep private keys outside the store`,
    );
  }
  return v;
}

export function validatePositiveInt(v: string | number, flag: string): number {
  const s = String(v).trim();
  if (!/^\d+$/.test(s) || Number(s) < 1) throw new UsageError(`${flag}: '${v}' is not a whole number of 1 or more`);
  return Number(s);
}

/** A comma-separated list of systems or features. */
export function validateList(v: string | string[], flag: string, allowEmpty: boolean): string[] {
  const items = (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter((s) => s !== '' && s !== '-');
  for (const i of items) {
    if (!/^[A-Za-z0-9_][A-Za-z0-9._+-]*$/.test(i)) throw new UsageError(`${flag}: '${i}' is not a valid entry`);
  }
  if (!allowEmpty && items.length === 0) throw new UsageError(`${flag}: give at least one`);
  return [...new Set(items)];
}

export function validateFingerprint(v: string, flag = '--host-key-fingerprint'): string {
  if (!/^SHA256:[A-Za-z0-9+/]{43}$/.test(v)) {
    throw new UsageError(
      `${flag}: '${v}' is not a SHA256 fingerprint as ssh-keygen -lf prints it (SHA256: and 43 base64 characters)`,
    );
  }
  return v;
}
