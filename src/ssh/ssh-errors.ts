// What OpenSSH's client says when it fails, and what it means. The strings are OpenSSH's own
// (ssh.c, sshconnect.c, sshconnect2.c, kex.c, authfile.c, readconf.c, clientloop.c), worded so
// from 7.x through 10.x; the first entry that matches wins, so the specific ones come first.
// Each has the cause and the fix in nixremote's words; `ctx` fills in the builder's names.

export type SshFailureKind =
  | 'hostkey-changed'
  | 'hostkey-unknown'
  | 'key-perms'
  | 'key-missing'
  | 'key-format'
  | 'config-perms'
  | 'too-many-keys'
  | 'auth'
  | 'no-shell'
  | 'refused'
  | 'banner-timeout'
  | 'timeout'
  | 'unreachable'
  | 'dns'
  | 'proxy'
  | 'dropped'
  | 'not-ssh'
  | 'algorithms'
  | 'alive-timeout'
  | 'other';

export interface SshFailure {
  kind: SshFailureKind;
  cause: string;
  fix: string;
}

export interface SshErrorContext {
  /** The builder's name (the ssh alias). */
  name: string;
  /** The ssh user on the builder, when known. */
  user?: string | null;
  key?: string | null;
}

/** What to do about sshd turning this address away (PerSourcePenalties and the like). */
export const PENALTY_FIX =
  "wait a minute, then try again. If it comes back, the builder's sshd log says why (journalctl -u sshd, or sshd -E: 'srclimit_penalise' for " +
  'PerSourcePenalties, MaxStartups); fix the logins that fail from here (nixremote doctor shows which), or list this address in ' +
  'PerSourcePenaltyExemptList in its sshd_config';

type Entry = [SshFailureKind, RegExp, string, (c: SshErrorContext) => string];

const TABLE: Entry[] = [
  [
    'hostkey-changed',
    /REMOTE HOST IDENTIFICATION HAS CHANGED/,
    'the builder shows a different host key than the one pinned for it: it was reinstalled, or this is another machine',
    () => 'check the new key on the builder (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then: nixremote doctor --fix',
  ],
  [
    'hostkey-unknown',
    /Host key verification failed|No \S+ host key is known for/,
    "the builder's host key is not known to this user's ssh, which cannot ask in batch mode",
    () => 'pin the host key: nixremote doctor --fix',
  ],
  [
    'key-perms',
    /UNPROTECTED PRIVATE KEY FILE|bad permissions/,
    'ssh ignores the private key because other users can read it',
    (c) => `chmod 600 ${c.key ?? 'the key'}`,
  ],
  [
    'key-missing',
    /no such identity: .*No such file or directory|Identity file .* not accessible/,
    'the key file that the ssh config or machine line names does not exist',
    (c) => `make it (nixremote init), or fix IdentityFile in the Host block for ${c.name}`,
  ],
  [
    'key-format',
    /Load key "[^"]*": (invalid format|error in libcrypto)/,
    'ssh cannot read the private key file: it is not a key, or it is damaged',
    () => 'make a new key (nixremote init --key PATH)',
  ],
  [
    'config-perms',
    /Bad owner or permissions on /,
    'ssh refuses a config file that another user could have written',
    () => 'chown it to the build user and chmod 600 it (ssh names the file)',
  ],
  [
    'too-many-keys',
    /Too many authentication failures/,
    'ssh offered more keys than sshd allows (MaxAuthTries, 6 by default) before the right one: an agent or the default keys went first',
    (c) => `add "IdentitiesOnly yes" to the Host block for ${c.name}, so only its key is offered`,
  ],
  [
    'auth',
    /Permission denied \(/,
    "the builder refused the key: it is not in the ssh user's authorized_keys, or sshd refuses that user (AllowUsers, a locked account)",
    (c) =>
      `add the public key to ~${c.user ?? ''}/.ssh/authorized_keys on the builder (nixremote init --copy-key password)`,
  ],
  [
    'no-shell',
    /This account is currently not available|nologin/,
    "the builder user's login shell is nologin, so no command runs",
    (c) => `give ${c.user ?? 'the ssh user'} a shell on the builder (usermod -s /bin/sh)`,
  ],
  // A ProxyJump/ProxyCommand hop: the jump host could not reach the builder, or ssh reports
  // the far end as "UNKNOWN port 65535" because it never had a socket of its own.
  [
    'proxy',
    /channel \d+: open failed|stdio forwarding failed|UNKNOWN port 65535|ProxyCommand|proxy dialer/,
    'the connection through the ProxyJump/ProxyCommand host failed: that host could not reach the builder, or refused to forward',
    (c) =>
      `check the jump host and that it can reach the builder (ssh -v ${c.name}); the lines before this one say which hop failed`,
  ],
  [
    'refused',
    /Connection refused/,
    'nothing listens on that port: sshd is not running, or the port is wrong',
    (c) => `start sshd on the builder (systemctl start sshd), or fix Port in the Host block for ${c.name}`,
  ],
  [
    'banner-timeout',
    /timed out during banner exchange/,
    'the port accepted the connection, but no SSH server spoke on it within ConnectTimeout (a hung sshd, a tarpit, or not sshd)',
    (c) => `check that sshd answers there (ssh -v ${c.name}), or fix Port in the Host block`,
  ],
  [
    'alive-timeout',
    /Timeout, server .* not responding/,
    'the connection went silent and ssh gave up (ServerAliveInterval x ServerAliveCountMax)',
    () => 'check the network between the machines, and that the builder is not overloaded',
  ],
  [
    'timeout',
    /timed out/i,
    'no answer: the host is down, or a firewall drops the packets',
    () => 'check that the builder is up and the port is open',
  ],
  [
    'unreachable',
    /No route to host|Network is unreachable/,
    'there is no network route to the builder',
    () => 'check the network or VPN between the machines',
  ],
  [
    'dns',
    /Could not resolve hostname|Name or service not known|nodename nor servname|Temporary failure in name resolution/,
    'the host name does not resolve',
    (c) => `fix DNS or /etc/hosts, or set HostName to an address in the Host block for ${c.name}`,
  ],
  [
    'not-ssh',
    /banner line contains invalid characters|Bad protocol version identification|Protocol major versions differ/,
    'something other than sshd answers on that port',
    (c) => `fix Port in the Host block for ${c.name}`,
  ],
  [
    'algorithms',
    /Unable to negotiate with .*no matching/,
    'ssh and sshd share no algorithm (an old sshd, or one set to a narrow list)',
    () => 'update sshd on the builder, or allow the algorithm ssh names, for that host only',
  ],
  // kex_exchange_identification fails when sshd closes before its banner: on OpenSSH 9.8+
  // mostly PerSourcePenalties; also MaxStartups, fail2ban, sshguard.
  [
    'dropped',
    /kex_exchange_identification|Connection closed by|Connection reset by/,
    'sshd closed the connection before the login: on OpenSSH 9.8 and later most often PerSourcePenalties, which refuses an address for a while (15 s at first, up to 10 minutes) after failed logins from it; also MaxStartups (too many logins at once), fail2ban or sshguard',
    () => PENALTY_FIX,
  ],
];

export function classifySshError(stderr: string, ctx: SshErrorContext = { name: 'the builder' }): SshFailure {
  for (const [kind, re, cause, fix] of TABLE) {
    if (!re.test(stderr)) continue;
    // Through a proxy, the hop's own first complaint is the news.
    const hop =
      kind === 'proxy'
        ? stderr
            .split('\n')
            .map((l) => l.trim())
            .find((l) => l && !/kex_exchange_identification|UNKNOWN port 65535/.test(l))
        : undefined;
    return { kind, cause: hop ? `${cause}; the hop said: ${hop}` : cause, fix: fix(ctx) };
  }
  const said = lastLine(stderr);
  return said
    ? { kind: 'other', cause: `ssh said: ${said}`, fix: `run ssh -v ${ctx.name} true as the build user to see more` }
    : {
        kind: 'other',
        cause: 'ssh failed without printing why (a ProxyCommand or a shell that exits at once can do that)',
        fix: `run ssh -v ${ctx.name} true as the build user to see more`,
      };
}

const lastLine = (s: string) =>
  s
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .pop() ?? '';
