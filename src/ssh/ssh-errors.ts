// What OpenSSH's error lines mean. The strings are OpenSSH's own (ssh.c, sshconnect.c,
// authfile.c; worded so since 7.x).

export interface SshFailure {
  kind: 'auth' | 'hostkey-unknown' | 'hostkey-changed' | 'refused' | 'timeout' | 'unreachable' | 'dns' | 'dropped' | 'key-perms' | 'too-many-keys' | 'other';
  cause: string;
}

export function classifySshError(stderr: string): SshFailure {
  const s = stderr;
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED/.test(s)) return { kind: 'hostkey-changed', cause: 'the builder shows a different host key than the one pinned for it' };
  if (/Host key verification failed|No .* host key is known for/.test(s)) return { kind: 'hostkey-unknown', cause: "the builder's host key is not known to this user's ssh, which cannot ask in batch mode" };
  if (/UNPROTECTED PRIVATE KEY FILE|bad permissions/.test(s)) return { kind: 'key-perms', cause: 'ssh ignores the private key because other users can read it' };
  if (/Too many authentication failures/.test(s)) return { kind: 'too-many-keys', cause: 'ssh offered too many keys before the right one (set IdentitiesOnly yes)' };
  if (/Permission denied \(/.test(s)) return { kind: 'auth', cause: 'the builder refused the key: it is not in the ssh user\'s authorized_keys, or sshd refuses that user' };
  if (/Connection refused/.test(s)) return { kind: 'refused', cause: 'nothing listens on that port: sshd is not running, or the port is wrong' };
  if (/timed out during banner exchange/.test(s)) {
    return { kind: 'timeout', cause: 'the port accepted the connection, but no SSH server spoke on it within ConnectTimeout (a hung sshd, a tarpit, or not sshd)' };
  }
  if (/timed out/i.test(s)) return { kind: 'timeout', cause: 'no answer: the host is down, or a firewall drops the packets' };
  if (/No route to host|Network is unreachable/.test(s)) return { kind: 'unreachable', cause: 'there is no network route to the builder' };
  if (/Could not resolve hostname|Name or service not known/.test(s)) return { kind: 'dns', cause: 'the host name does not resolve' };
  if (/kex_exchange_identification|Connection closed by|Connection reset by/.test(s)) {
    return { kind: 'dropped', cause: 'sshd closed the connection before login: too many connections at once (MaxStartups), or a ban (fail2ban, sshguard)' };
  }
  return { kind: 'other', cause: lastLine(s) || 'ssh failed without saying why' };
}

const lastLine = (s: string) => s.trim().split('\n').filter(Boolean).pop() ?? '';
