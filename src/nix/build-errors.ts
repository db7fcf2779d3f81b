// What a failed offloaded build's output means, and what Nix's protocol errors say the
// builder's shell printed. The strings are Nix's (src/libstore/legacy-ssh-store.cc,
// src/libutil/serialise.hh, src/libstore/daemon.cc, src/libstore/build/*).

/**
 * Nix's protocol errors quote what it read instead of its handshake. "protocol mismatch
 * ..., got 'TEXT'" holds the text; "serialised integer N is too large for type ..." holds
 * eight bytes of it as a little-endian number.
 */
export function decodeProtocolError(message: string): string | null {
  const got = /protocol mismatch[^\n]*?got '([^']*)'/.exec(message);
  // Nix quotes the whole buffer it read: the text, then its own handshake bytes (and,
  // when the message wraps, its indentation). Keep the printable text before those.
  if (got) return got[1]!.split(/[^\x20-\x7e\n\t]/)[0]!.trimEnd();
  const m = /serialised integer (\d+) is too large/.exec(message);
  if (m) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(m[1]!));
    return b.toString('latin1').replace(/\0+$/, '');
  }
  return null;
}

/**
 * Known lines of a failed offloaded build. Wording by Nix version, from Nix's source:
 * trust: "you are not privileged to build derivations" (2.3), "... input-addressed
 * derivations" (2.4+), "lacks a valid signature" (to 2.14), "lacks a signature by a
 * trusted key" (2.15+); no usable machine: "unable to start any build; ..." (2.3-2.20),
 * "Unable to start any build; ..." (2.21+), "a '...' with features {...} is required"
 * (to 2.29), "Cannot build '...'. Reason: required system or feature not available"
 * (2.30-2.33), "Reason: platform mismatch" / "missing system features" / "local builds are
 * disabled" (2.34+).
 */
const BUILD_FAILURES: [RegExp, string, string][] = [
  // First, since it explains the failures after it. daemon.cc (2.4+: "client-specified";
  // 2.3: "user-specified"): --builders or a user's builders, dropped for an untrusted user.
  [
    /ignoring the (client|user)-specified setting 'builders', because it is a restricted setting/,
    "the nix-daemon ignores builders given by a user it does not trust (a user's nix.conf, NIX_CONFIG or --builders), so the build never saw those builders",
    'put the builders in /etc/nix/machines (nixremote init does), or add the user to trusted-users in /etc/nix/nix.conf and restart the nix-daemon',
  ],
  [
    /you are not privileged to build (input-addressed )?derivations|lacks a (valid signature|signature by a trusted key)|is not a trusted user/,
    "the builder's Nix does not trust the ssh user, so it will not build or import for it",
    "add the ssh user to trusted-users in the builder's nix.conf (NixOS: nix.settings.trusted-users) and restart its nix-daemon",
  ],
  [
    /protocol mismatch|serialised integer .* is too large/,
    "the builder's shell prints text before Nix's protocol starts",
    'make the shell startup files on the builder print nothing for non-interactive shells',
  ],
  [
    /Host key verification failed/,
    "root's ssh does not accept the builder's host key",
    'pin the host key: nixremote doctor --fix, or nixremote init',
  ],
  [
    /Permission denied \(publickey/,
    'the builder refused the key',
    "add the key to the builder user's authorized_keys (nixremote init)",
  ],
  [
    /nix-store: command not found|nix-daemon: command not found|No such file or directory.*nix-(store|daemon)/,
    "nix-store is not on the builder's non-interactive PATH",
    'add ?remote-program=/path/to/nix-store to the store URI, or fix PATH on the builder',
  ],
  [
    /remote machines may not have all required system features/i,
    "no builder offers this derivation's system and features, or the builder's pinned host key does not match what ssh looks up (HostKeyAlias)",
    'run nixremote doctor without --no-build: it checks both',
  ],
  [
    /required system or feature not available|platform mismatch|missing system features|a '.*' with features \{.*\} is required/,
    'no configured builder offers the system and features this derivation needs',
    "check the systems and features on the builder's machine line",
  ],
  [
    /unable to start any build|local builds are disabled|Failed to find a machine for remote build/i,
    'no builder was usable and local builds are off (max-jobs = 0)',
    'fix the builder, or allow local builds',
  ],
  [
    /cannot connect to '.*'|cannot build on '.*'/,
    'the build hook could not use the builder',
    'see the lines above it for the reason',
  ],
  [
    /Connection refused|Connection timed out|No route to host/,
    'the builder cannot be reached',
    'start sshd on the builder, or fix the address',
  ],
];

export function explainBuild(output: string): { cause: string; fix: string } | null {
  for (const [re, cause, fix] of BUILD_FAILURES) {
    if (re.test(output)) {
      const said = decodeProtocolError(output);
      return { cause: said !== null ? `${cause}: it printed ${JSON.stringify(said)}` : cause, fix };
    }
  }
  return null;
}
