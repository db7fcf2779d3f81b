// What OpenSSH's client says when it fails, and what sshd sends back. The strings are
// OpenSSH's own (ssh.c, sshconnect.c, sshconnect2.c, kex.c, authfile.c, readconf.c,
// clientloop.c), worded so from 7.x through 10.x.
import type { Entry } from '../entry.js';

/** What to do about sshd turning this address away (PerSourcePenalties and the like). */
export const PENALTY_FIX =
  "wait a minute, then try again. If it comes back, the builder's sshd log says why (journalctl -u sshd, or sshd -E: 'srclimit_penalise' for " +
  'PerSourcePenalties, MaxStartups); fix the logins that fail from here (nixremote doctor shows which), or list this address in ' +
  'PerSourcePenaltyExemptList in its sshd_config';

const OPENSSH = 'OpenSSH 7.x-10.x';

export const SSH_FAILURES: Entry[] = [
  {
    id: 'ssh.hostkey-changed',
    from: 'ssh',
    pattern: /REMOTE HOST IDENTIFICATION HAS CHANGED/,
    versions: `${OPENSSH} (sshconnect.c)`,
    cause: () =>
      'the builder shows a different host key than the one pinned for it: it was reinstalled, or this is another machine',
    fix: () =>
      'check the new key on the builder (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then: nixremote doctor --fix',
  },
  {
    id: 'ssh.hostkey-unknown',
    from: 'ssh',
    pattern: /Host key verification failed|No \S+ host key is known for/,
    versions: `${OPENSSH} (sshconnect.c)`,
    cause: () => "the builder's host key is not known to the build user's ssh, which cannot ask in batch mode",
    fix: () => 'pin the host key: nixremote doctor --fix, or nixremote init',
  },
  {
    id: 'ssh.key-perms',
    from: 'ssh',
    pattern: /UNPROTECTED PRIVATE KEY FILE|bad permissions/,
    versions: `${OPENSSH} (authfile.c)`,
    cause: () => 'ssh ignores the private key because other users can read it',
    fix: (n) => `chmod 600 ${n.key ?? 'the key'}`,
  },
  {
    id: 'ssh.key-missing',
    from: 'ssh',
    pattern: /no such identity: .*No such file or directory|Identity file .* not accessible/,
    versions: `${OPENSSH} (ssh.c, sshconnect2.c)`,
    cause: () => 'the key file that the ssh config or machine line names does not exist',
    fix: (n) => `make it (nixremote init), or fix IdentityFile in the Host block for ${n.name}`,
  },
  {
    id: 'ssh.key-format',
    from: 'ssh',
    pattern: /Load key "[^"]*": (invalid format|error in libcrypto)/,
    versions: `${OPENSSH} (sshconnect2.c)`,
    cause: () => 'ssh cannot read the private key file: it is not a key, or it is damaged',
    fix: () => 'make a new key (nixremote init --key PATH)',
  },
  {
    id: 'ssh.config-perms',
    from: 'ssh',
    pattern: /Bad owner or permissions on /,
    versions: `${OPENSSH} (readconf.c)`,
    cause: () => 'ssh refuses a config file that another user could have written',
    fix: (_n, said) => `chown it to the build user and chmod 600 it (${said})`,
  },
  {
    id: 'ssh.too-many-keys',
    from: 'sshd',
    pattern: /Too many authentication failures/,
    versions: `${OPENSSH} (sshd auth2.c, MaxAuthTries)`,
    cause: () =>
      'ssh offered more keys than sshd allows (MaxAuthTries, 6 by default) before the right one: an agent or the default keys went first',
    fix: (n) => `add "IdentitiesOnly yes" to the Host block for ${n.name}, so only its key is offered`,
  },
  {
    // sshd says no more than this to the client for every refusal at authentication; its
    // log says which (auth.c: "not allowed because shell ... does not exist", auth2-pubkeyfile.c:
    // "Authentication refused: bad ownership or modes").
    id: 'ssh.auth',
    from: 'sshd',
    pattern: /Permission denied \(/,
    versions: `${OPENSSH} (sshconnect2.c)`,
    cause: () =>
      "the builder refused the key. sshd tells the client no more than that; its reasons: the key is not in the ssh user's authorized_keys; " +
      'StrictModes ignores authorized_keys because the home, ~/.ssh or authorized_keys is writable by group or others; the account is locked, ' +
      'not in AllowUsers, or its login shell does not exist',
    fix: (n) =>
      `add the public key to ~${n.user ?? ''}/.ssh/authorized_keys on the builder (nixremote init --copy-key password); ` +
      `if it is there, chmod go-w ~${n.user ?? ''} ~${n.user ?? ''}/.ssh ~${n.user ?? ''}/.ssh/authorized_keys there, and read the builder's sshd log ` +
      '(journalctl -u sshd: "bad ownership or modes", "not allowed because") for which',
  },
  // A ProxyJump/ProxyCommand hop: the jump host could not reach the builder, or ssh reports
  // the far end as "UNKNOWN port 65535" because it never had a socket of its own.
  {
    id: 'ssh.proxy',
    from: 'ssh',
    pattern: /channel \d+: open failed|stdio forwarding failed|UNKNOWN port 65535|ProxyCommand|proxy dialer/,
    versions: `${OPENSSH} (channels.c, sshconnect.c)`,
    // Through a proxy, the hop's own first complaint is the news.
    cause: (_n, said, text) =>
      `the connection through the ProxyJump/ProxyCommand host failed: that host could not reach the builder, or refused to forward; ssh said: ${
        text
          .split('\n')
          .map((l) => l.trim())
          .find((l) => l && !/kex_exchange_identification|UNKNOWN port 65535/.test(l)) ?? said
      }`,
    fix: (n) =>
      `check the jump host and that it can reach the builder (ssh -v ${n.name}); the lines before this one say which hop failed`,
  },
  {
    // Nix before 2.31 hands "host:port" from the store URI to ssh as the host name.
    id: 'ssh.port-in-hostname',
    from: 'ssh',
    pattern: /Could not resolve hostname \S+:\d+:/,
    versions: `${OPENSSH} (ssh.c); Nix before 2.31 (ssh.cc passes the URI's authority as the host)`,
    cause: () =>
      'the store URI holds a port (ssh://host:PORT), which Nix before 2.31 passes to ssh as part of the host name',
    fix: (n) =>
      `take the port out of the store URI and put "Port PORT" in a Host block for ${n.name} (nixremote init writes one)`,
  },
  {
    id: 'ssh.refused',
    from: 'ssh',
    pattern: /Connection refused/,
    versions: `${OPENSSH} (sshconnect.c)`,
    cause: () => 'nothing listens on that port: sshd is not running, or the port is wrong',
    fix: (n) => `start sshd on the builder (systemctl start sshd), or fix Port in the Host block for ${n.name}`,
  },
  {
    id: 'ssh.banner-timeout',
    from: 'ssh',
    pattern: /timed out during banner exchange/,
    versions: `${OPENSSH} (sshconnect.c, since 8.x)`,
    cause: () =>
      'the port accepted the connection, but no SSH server spoke on it within ConnectTimeout (a hung sshd, a tarpit, or not sshd)',
    fix: (n) => `check that sshd answers there (ssh -v ${n.name}), or fix Port in the Host block`,
  },
  {
    id: 'ssh.alive-timeout',
    from: 'ssh',
    pattern: /Timeout, server .* not responding/,
    versions: `${OPENSSH} (clientloop.c)`,
    cause: () => 'the connection went silent and ssh gave up (ServerAliveInterval x ServerAliveCountMax)',
    fix: () => 'check the network between the machines, and that the builder is not overloaded',
  },
  {
    id: 'ssh.timeout',
    from: 'ssh',
    pattern: /connect to host .* timed out|Connection timed out/i,
    versions: `${OPENSSH} (sshconnect.c)`,
    cause: () => 'no answer: the host is down, or a firewall drops the packets',
    fix: () => 'check that the builder is up and the port is open',
  },
  {
    id: 'ssh.unreachable',
    from: 'ssh',
    pattern: /No route to host|Network is unreachable/,
    versions: `${OPENSSH} (sshconnect.c)`,
    cause: () => 'there is no network route to the builder',
    fix: () => 'check the network or VPN between the machines',
  },
  {
    id: 'ssh.dns',
    from: 'ssh',
    pattern:
      /Could not resolve hostname|Name or service not known|nodename nor servname|Temporary failure in name resolution/,
    versions: `${OPENSSH} (ssh.c)`,
    cause: () => 'the host name does not resolve',
    fix: (n) => `fix DNS or /etc/hosts, or set HostName to an address in the Host block for ${n.name}`,
  },
  {
    id: 'ssh.not-ssh',
    from: 'ssh',
    pattern:
      /banner line contains invalid characters|Bad protocol version identification|Protocol major versions differ/,
    versions: `${OPENSSH} (kex.c)`,
    cause: () => 'something other than sshd answers on that port',
    fix: (n) => `fix Port in the Host block for ${n.name}`,
  },
  {
    id: 'ssh.algorithms',
    from: 'ssh',
    pattern: /Unable to negotiate with .*no matching/,
    versions: `${OPENSSH} (kex.c)`,
    cause: () => 'ssh and sshd share no algorithm (an old sshd, or one set to a narrow list)',
    fix: () => 'update sshd on the builder, or allow the algorithm ssh names, for that host only',
  },
  {
    // RequestTTY force (in a Host * block, say) against a key line with `restrict`/no-pty.
    id: 'ssh.pty-refused',
    from: 'sshd',
    pattern: /PTY allocation request failed/,
    versions: `${OPENSSH} (clientloop.c, session.c)`,
    cause: () =>
      "ssh asks the builder for a terminal (RequestTTY in the ssh config, often under Host *): with the key's restrict sshd refuses it and ssh stops, without restrict the terminal corrupts Nix's protocol and builds hang",
    fix: (n) => `put "RequestTTY no" in the Host block for ${n.name}, above any Host * that sets RequestTTY`,
  },
  {
    id: 'ssh.remote-command',
    from: 'ssh',
    pattern: /Cannot execute command-line and remote command/,
    versions: `${OPENSSH} 7.6+ (ssh.c)`,
    cause: () =>
      'the ssh config sets RemoteCommand for this host (often under Host *), and ssh refuses it together with the command Nix sends',
    fix: (n) => `put "RemoteCommand none" in the Host block for ${n.name}, above any Host * that sets RemoteCommand`,
  },
  // kex_exchange_identification fails when sshd closes before its banner: on OpenSSH 9.8+
  // mostly PerSourcePenalties; also MaxStartups, fail2ban, sshguard.
  {
    id: 'ssh.dropped',
    from: 'sshd',
    // ssh's own words name the far end ("by 127.0.0.1 port 22"); Nix's "Connection reset by
    // peer" (strerror, a daemon socket) is not sshd's doing.
    pattern: /kex_exchange_identification|Connection (closed|reset) by \S+ port \d+/,
    versions: `${OPENSSH} (kex.c); PerSourcePenalties from sshd 9.8`,
    cause: () =>
      'sshd closed the connection before the login: on OpenSSH 9.8 and later most often PerSourcePenalties, which refuses an address for a while (15 s at first, up to 10 minutes) after failed logins from it; also MaxStartups (too many logins at once), fail2ban or sshguard',
    fix: () => PENALTY_FIX,
  },
];
