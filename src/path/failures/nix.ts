// What Nix prints when a step on the daemon's path fails: nix-store and nix-daemon on the
// builder, the store's SQLite database and filesystem, and the build hook. The strings are
// Nix's own (src/libstore/sqlite.cc, daemon.cc, remote-store.cc, legacy-ssh-store.cc,
// build/derivation-goal.cc, build-remote.cc; src/libutil/file-system.cc), with the versions
// each wording holds for.
import type { Entry, Names } from '../entry.js';

const onBuilder = (n: { name: string }) => `on ${n.name}`;
const gcFix = (n: { name: string }) =>
  `free space ${onBuilder(n)}: nix-collect-garbage -d there (or nix-store --gc), and set min-free/max-free in its nix.conf so that Nix collects garbage by itself before the disk fills`;

/** Before the ssh entries: Nix's messages quote ssh's, and are the more specific. */
export const NIX_FAILURES: Entry[] = [
  // First, since it explains the failures after it. daemon.cc (2.4+: "client-specified";
  // 2.3: "user-specified"): --builders or a user's builders, dropped for an untrusted user.
  {
    id: 'nix.builders-ignored',
    from: 'nix',
    pattern: /ignoring the (client|user)-specified setting 'builders', because it is a restricted setting/,
    versions: "Nix 2.3 ('user-specified'), 2.4-2.35 ('client-specified') (daemon.cc)",
    cause: () =>
      "the nix-daemon ignores builders given by a user it does not trust (a user's nix.conf, NIX_CONFIG or --builders), so the build never saw those builders",
    fix: () =>
      'put the builders in /etc/nix/machines (nixremote init does), or add the user to trusted-users in /etc/nix/nix.conf and restart the nix-daemon',
  },
  {
    // A build run here (the proof's input): nix.conf names a group for the build users
    // that does not exist (globals.cc / local-derivation-goal.cc: UserLock).
    id: 'nix.build-users-group',
    from: 'nix',
    pattern: /error: the group '([^']*)' specified in 'build-users-group' does not exist/,
    versions: 'Nix 2.3-2.35 (local-derivation-goal.cc, lock.cc)',
    stages: ['build'],
    cause: (_n, said) =>
      `this machine's nix.conf names a build users group that does not exist, so Nix cannot build here (${said.replace(/^(error|warning): /, '')})`,
    fix: () =>
      'on a multi-user install make the group and its users again (the installer\'s nixbld1..32 in group nixbld); on a single-user one set "build-users-group =" in nix.conf',
  },
  {
    // machines.cc: a line this Nix cannot read makes it reject the whole builders list.
    id: 'nix.bad-machine-line',
    from: 'nix',
    pattern: /bad machine specification: ([^\n]*)/,
    versions: "Nix 2.8-2.35 and Lix (machines.cc: 'bad machine specification: ...')",
    cause: (_n, said) =>
      `this Nix cannot read a machine line, and then uses none of the builders (${said.replace(/^error: /, '')})`,
    fix: () => "nixremote doctor's 'configured builders' check names the line and the field; fix or remove that line",
  },
  {
    id: 'store.db-full',
    from: 'sqlite',
    pattern: /database or disk is full/,
    versions: 'SQLite SQLITE_FULL, as Nix 2.3-2.35 and Lix report it (sqlite.cc: SQLiteError)',
    cause: (n) => `the filesystem that holds the Nix database ${onBuilder(n)} (/nix/var/nix/db) is full`,
    fix: gcFix,
  },
  {
    // SQLite reports a write that the filesystem refused (ENOSPC among them, on tmpfs and
    // others) as an I/O error rather than as "full".
    id: 'store.db-io',
    from: 'sqlite',
    pattern: /disk I\/O error/,
    versions: 'SQLite SQLITE_IOERR, as Nix 2.3-2.35 and Lix report it (sqlite.cc: SQLiteError)',
    cause: (n) =>
      `SQLite could not write the Nix database ${onBuilder(n)} ("disk I/O error"): its filesystem is full, read-only or failing`,
    fix: (n) =>
      `look at free space ${onBuilder(n)} (df -h /nix/store /nix/var/nix); if it is full, ${gcFix(n).replace(/^free space on \S+: /, '')}; if not, check that disk (dmesg)`,
  },
  {
    id: 'store.db-readonly',
    from: 'sqlite',
    pattern: /attempt to write a readonly database/,
    versions: 'SQLite SQLITE_READONLY, as Nix reports it',
    cause: (n) =>
      `the Nix database ${onBuilder(n)} is read-only to the ssh user: a multi-user store reached without its daemon`,
    fix: () => "start the builder's nix-daemon, or reach it over ssh-ng://",
  },
  {
    id: 'fs.full',
    from: 'fs',
    pattern: /No space left on device|build failure may have been caused by lack of free disk space/,
    versions:
      'ENOSPC, as Nix 2.3-2.35 wraps it ("writing to file: No space left on device"); 2.19+ adds "build failure may have been caused by lack of free disk space"',
    cause: () =>
      'a filesystem where Nix writes is full: the store, /nix/var/nix or the build directory (/tmp, or build-dir from Nix 2.30)',
    fix: (n) =>
      `free space where it is full (df -h /nix/store /tmp /nix/var/nix ${onBuilder(n)}, and here): nix-collect-garbage -d; set min-free/max-free in nix.conf to keep it free`,
  },
  {
    id: 'fs.read-only',
    from: 'fs',
    pattern: /Read-only file system/,
    versions: 'EROFS, as Nix wraps it',
    cause: () => 'Nix tried to write to a filesystem mounted read-only',
    fix: (_n, said) => `remount it read-write, or point Nix elsewhere (it said: ${said})`,
  },
  {
    id: 'fs.quota',
    from: 'fs',
    pattern: /Disk quota exceeded/,
    versions: 'EDQUOT, as Nix wraps it',
    cause: () => "the ssh user's disk quota is used up where Nix writes",
    fix: () => "raise the builder user's quota, or free space in its files",
  },
  {
    id: 'nix.untrusted',
    from: 'nix',
    pattern:
      /you are not privileged to build (input-addressed )?derivations|lacks a (valid signature|signature by a trusted key)|is not a trusted user/,
    versions:
      "'not privileged to build derivations' 2.3, '... input-addressed derivations' 2.4-2.35 and Lix; 'lacks a valid signature' 2.3-2.11, 'lacks a signature by a trusted key' 2.12-2.35 and Lix (local-store.cc, daemon.cc)",
    // Signed access (ssh-ng, this machine signing what it builds): a path refused for its
    // signature means the builder does not trust this machine's key.
    cause: (n, said) =>
      signedRefused(n, said)
        ? `the builder's nix-daemon does not trust this machine's signing key ${n.signingKeys!.map((k) => k.split(':')[0]).join(', ')}, and not the ssh user either, so it refuses the inputs built here`
        : "the builder's Nix does not trust the ssh user, so it will not build input-addressed derivations or import unsigned paths for it",
    fix: (n, said) =>
      signedRefused(n, said)
        ? `on the builder add "extra-trusted-public-keys = ${n.signingKeys![0]}" to /etc/nix/nix.conf (NixOS: nix.settings.extra-trusted-public-keys) and restart its nix-daemon`
        : `add ${n.user ?? 'the ssh user'} to trusted-users in the builder's nix.conf (NixOS: nix.settings.trusted-users) and restart its nix-daemon; or, over ssh-ng, let it trust this machine's signing key instead (nixremote init --access signed)`,
  },
  {
    // The daemon's side of a refusal by allowed-users: only its own log says it (daemon.cc,
    // thrown in the accept loop before the handshake). The client sees the next entry.
    id: 'nix.not-allowed',
    from: 'nix',
    pattern: /is not allowed to connect to the Nix daemon/,
    versions: 'Nix 2.3-2.35 and Lix (daemon.cc)',
    cause: (n) => `the builder's nix-daemon refuses ${n.user ?? 'the ssh user'}: allowed-users leaves it out`,
    fix: (n) =>
      `add ${n.user ?? 'the ssh user'} (or a @group of it) to allowed-users in the builder's nix.conf (NixOS: nix.settings.allowed-users) and restart its nix-daemon`,
  },
  {
    // The daemon accepted the connection and closed it before its handshake: RST or EOF,
    // worded by version ("reading from file: Connection reset by peer" 2.3-2.33, "unexpected
    // end-of-file" to 2.19.2, "Nix daemon disconnected unexpectedly" 2.19.3+ and Lix to
    // 2.93, "stream ended unexpectedly" Lix 2.94+; remote-store.cc wraps them all).
    id: 'nix.daemon-closed',
    from: 'nix',
    pattern:
      /cannot open connection to remote store '(daemon|unix:[^']*)': (error: )?((reading from|writing to) file: (Connection reset by peer|Broken pipe)|(read|write) of \d+ bytes: (Connection reset by peer|Broken pipe)|unexpected end-of-file|Nix daemon disconnected unexpectedly|stream ended unexpectedly)|splicing data from daemon socket to stdout: Connection reset by peer/,
    versions:
      "Nix 2.3-2.35, Lix 2.90-2.95 (remote-store.cc); 'read of N bytes' from 2.34; 'splicing data from daemon socket' is nix-daemon --stdio's (ssh-ng) side (recorded: test/fixtures/recorded/*/untrusted-allowed-users-root.txt)",
    cause: (n) =>
      `the nix-daemon accepted the connection and closed it at once: it refuses ${n.user ?? 'the user'} (allowed-users, or a user in build-users-group; its log says "is not allowed to connect to the Nix daemon"), or it crashed`,
    fix: (n) =>
      `add ${n.user ?? 'the user'} to allowed-users in that machine's nix.conf (NixOS: nix.settings.allowed-users), restart its nix-daemon, and read its log (journalctl -u nix-daemon)`,
  },

  {
    id: 'nix.daemon-refused',
    from: 'nix',
    pattern: /cannot connect to (socket|daemon) at '([^']*)': Connection refused/,
    versions:
      "Nix 2.3 ('cannot connect to daemon at'), 2.4-2.35 and Lix ('cannot connect to socket at') (remote-store.cc, unix-domain-socket.cc)",
    cause: (_n, said) =>
      `a nix-daemon is not running where its socket is: the socket file is there, but nothing answers (${said})`,
    fix: (n) =>
      `start the nix-daemon where it said so, ${onBuilder(n)} unless this machine's nix-build said it first: systemctl start nix-daemon (macOS: launchctl kickstart -k system/org.nixos.nix-daemon)`,
  },
  {
    id: 'nix.daemon-missing',
    from: 'nix',
    pattern: /cannot connect to (socket|daemon) at '([^']*)': No such file or directory/,
    versions: "Nix 2.3 ('cannot connect to daemon at'), 2.4-2.35 and Lix ('cannot connect to socket at')",
    cause: (_n, said) => `no nix-daemon serves the store there: its socket does not exist (${said})`,
    fix: (n) =>
      `start the nix-daemon ${onBuilder(n)} (systemctl enable --now nix-daemon), or, for a single-user store, make it writable by the ssh user`,
  },
  {
    id: 'nix.too-old',
    from: 'nix',
    // Lix's remote-store.cc: daemon protocol 1.35 (Nix 2.18) at least from 2.94 ("The remote
    // Nix daemon version is too old"); 1.21 (Nix 2.3) at 2.93 ("the Nix daemon version is too old").
    pattern: /(?:remote|the) Nix daemon version is too old/i,
    versions:
      "Lix 2.94+ against a builder older than Nix 2.18 over ssh-ng ('The remote Nix daemon version is too old'); Lix 2.93 against one older than Nix 2.3 ('the Nix daemon version is too old') (lix/libstore/remote-store.cc)",
    cause: (_n, said) =>
      /remote/i.test(said)
        ? "this Nix (Lix 2.94 or later) no longer speaks ssh-ng:// to a builder's Nix older than 2.18"
        : "this Nix (Lix 2.93) no longer speaks ssh-ng:// to a builder's Nix older than 2.3",
    fix: () => 'use ssh:// for this builder, or update Nix on the builder',
  },
  {
    id: 'nix.serve-too-old',
    from: 'nix',
    // Lix's legacy-ssh-store.cc from 2.94: serve protocol 2.4 (Nix 2.0) at least.
    pattern: /remote '([^']*)' is too old \(protocol version ([0-9a-f]+)\)/,
    versions: 'Lix 2.94+ over ssh:// against nix-store --serve older than Nix 2.0 (lix/libstore/legacy-ssh-store.cc)',
    cause: (_n, said) =>
      `the builder's nix-store --serve speaks protocol ${/protocol version ([0-9a-f]+)/.exec(said)?.[1] ?? '?'}, older than Nix 2.0's, which Lix 2.94 and later no longer speak`,
    fix: () => 'update Nix on the builder',
  },
  {
    id: 'nix.protocol-noise',
    from: 'nix',
    pattern: /protocol mismatch from '[^']*', got '|serialised integer .* is too large/,
    versions:
      "'serialised integer ... is too large' 2.3; 'protocol mismatch from ..., got ...' 2.4-2.35 (legacy-ssh-store.cc)",
    cause: () =>
      "the builder's shell prints text before Nix's protocol starts, and Nix reads that text as its protocol",
    fix: () => 'make the shell startup files on the builder print nothing for non-interactive shells',
  },

  {
    // The builder's own max-jobs = 0: Nix 2.8 says "build of '...' on 'ssh://NAME' failed:
    // error: unable to start any build; ..." (the remote's error inside the hook's).
    id: 'nix.remote-max-jobs',
    from: 'nix',
    pattern:
      /on '(ssh|ssh-ng):\/\/[^']*' failed:[\s\S]{0,80}?nable to start any build|on '(ssh|ssh-ng):\/\/[^']*' failed:[\s\S]{0,200}?local builds are disabled/i,
    versions:
      "Nix 2.3-2.20 and Lix 'unable', 2.21+ 'Unable' (on two lines 2.21-2.29), 2.34+ 'local builds are disabled' (build-remote.cc, worker.cc)",
    cause: (n) =>
      `the builder's own Nix has max-jobs = 0, so it refuses the build this machine sends it (on ${n.name})`,
    fix: () =>
      "set max-jobs to auto or a number in the builder's nix.conf (NixOS: nix.settings.max-jobs) and restart its nix-daemon",
  },
];

/**
 * After ssh's entries: the connection ended, or the other end spoke another protocol. ssh's
 * own reason, when it printed one, comes in the same output and is the news.
 */
export const NIX_SYMPTOMS: Entry[] = [
  {
    // Nix 2.4+ says this bare when the magic number that came back is another protocol's
    // (legacy-ssh-store.cc, remote-store.cc); Lix also for a shell's text, which it does not quote.
    id: 'nix.protocol-other',
    from: 'nix',
    pattern: /protocol mismatch\s*$|'nix-store --serve' protocol mismatch from '[^']*'\s*$/m,
    versions:
      "Nix 2.3-2.35 'protocol mismatch'; Lix 2.90-2.95 \"'nix-store --serve' protocol mismatch from '...'\" (no 'got')",
    cause: () =>
      "the program at the other end speaks another protocol than the store URI's: a forced command for the other scheme (nix-daemon --stdio answers ssh://, nix-store --serve answers ssh-ng://), a remote-program of the other kind, or, with Lix, which does not quote what it read, a shell that prints text",
    fix: (n) => `nixremote doctor ${n.name} tells which: it reads the shell and asks both protocols`,
  },
  {
    // ssh-ng: what ssh ran on the builder ended before the daemon protocol's handshake.
    id: 'nix.ssh-ng-closed',
    from: 'nix',
    pattern:
      /cannot open connection to remote store 'ssh-ng:\/\/[^']*': (error: )?(unexpected end-of-file|Nix daemon disconnected unexpectedly|stream ended unexpectedly)/,
    versions: 'Nix 2.4-2.35, Lix 2.90-2.95 (remote-store.cc)',
    cause: () =>
      "what ssh ran on the builder ended before the daemon protocol began: its login shell runs no commands (/bin/false), a forced command that is not nix-daemon --stdio answers, or nix-daemon there exited (it refuses the user, or the builder's own daemon is down)",
    fix: (n) =>
      `nixremote doctor ${n.name} tells which: it reads the login, the key's forced command and the builder's daemon`,
  },
  {
    id: 'nix.daemon-disconnected',
    from: 'nix',
    pattern: /Nix daemon disconnected unexpectedly|stream ended unexpectedly/,
    versions: 'Nix 2.19.3-2.35, Lix 2.90-2.93; Lix 2.94+ "stream ended unexpectedly" (remote-store.cc)',
    cause: () =>
      'the nix-daemon at the other end closed the connection in the middle of the protocol: it crashed, was stopped, or refused this user',
    fix: (n) =>
      `read the builder's nix-daemon log (journalctl -u nix-daemon ${onBuilder(n)}); nixremote doctor ${n.name} checks its daemon, allowed-users and trust`,
  },
  {
    // The builder's side closed: the program at the other end is not the one this
    // protocol needs, or it exited.
    id: 'nix.eof',
    from: 'nix',
    pattern: /unexpected end-of-file/,
    versions: 'Nix 2.3-2.35 and Lix (serialise.cc)',
    cause: (n) =>
      `the program at the other end of the ssh connection exited before Nix's protocol was done: a forced command (command= on the key, ForceCommand) that is not the one ${n.protocol === 'ssh-ng' ? 'ssh-ng:// needs (nix-daemon --stdio)' : 'ssh:// needs (nix-store --serve --write)'}, a remote-program that is not Nix, or one that crashed`,
    fix: (n) =>
      `look at the key's line in ~${n.user ?? ''}/.ssh/authorized_keys and at ForceCommand in sshd_config on the builder; nixremote doctor ${n.name} says which command answers`,
  },
];

/** Last: the build hook's own verdicts, which the ones above explain when they are there. */
export const HOOK_FAILURES: Entry[] = [
  {
    // The legacy ssh store's handshake met EOF: nix-store --serve on the other end exited
    // (legacy-ssh-store.cc). Last, since ssh's own reasons arrive in the same message.
    id: 'hook.serve-closed',
    from: 'hook',
    pattern: /cannot connect to '[^']*'/,
    versions: 'Nix 2.3-2.35 and Lix (legacy-ssh-store.cc)',
    cause: () =>
      "what ssh ran on the builder ended before Nix's protocol began, without saying why: its login shell runs no commands (/bin/false), or a forced command that is not nix-store --serve answers",
    fix: (n) => `nixremote doctor ${n.name} tells which: it reads the login and the key's forced command`,
  },
  {
    id: 'hook.no-machine-features',
    from: 'hook',
    pattern: /remote machines may not have all required system features/i,
    versions: 'Nix 2.4-2.29 (derivation-goal.cc)',
    cause: () =>
      "no builder offers this derivation's system and features, or the builder's pinned host key does not match what ssh looks up (HostKeyAlias)",
    fix: () => 'run nixremote doctor without --no-build: it checks both',
  },
  {
    id: 'hook.no-match',
    from: 'hook',
    pattern:
      /required system or feature not available|platform mismatch|missing system features|a '.*' with features \{.*\} is required/,
    versions:
      "Nix 2.3-2.29 'a ... with features {...} is required', 2.30-2.33 'required system or feature not available', 2.34+ 'platform mismatch' / 'missing system features'",
    cause: () => 'no configured builder offers the system and features this derivation needs',
    fix: () => "check the systems and features on the builder's machine line",
  },
  {
    id: 'hook.no-builder',
    from: 'hook',
    pattern: /unable to start any build|local builds are disabled|Failed to find a machine for remote build/i,
    versions:
      "Nix 2.3-2.20 and Lix 'unable to start any build', 2.21+ 'Unable ...', 2.34+ 'local builds are disabled'; 'Failed to find a machine for remote build!' 2.4+ (build-remote.cc)",
    cause: () => 'no builder took the build, and local builds are off (max-jobs = 0 here)',
    fix: () => 'fix the builder (nixremote doctor says what is wrong with it), or allow local builds',
  },
];

function signedRefused(n: Names, said: string): boolean {
  return n.protocol === 'ssh-ng' && Boolean(n.signingKeys?.length) && /lacks a (valid )?signature/.test(said);
}
