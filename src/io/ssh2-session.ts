// One ssh2 connection to a builder: fetch its host key, authenticate by password
// (the `password` or the `keyboard-interactive` method: servers with PAM often offer only
// the latter) or by key, and run commands. The only place that imports ssh2.
import * as net from 'node:net';
import { createRequire } from 'node:module';
import type { Client as Ssh2Client } from 'ssh2';
import { fingerprint, hostKeyFromBlob, type HostKey } from '../ssh/host-key.js';

// ssh2 (and its native module) is loaded when a connection is made, not with every command
// that might make one: doctor, status and why load it only for what they use it for.
let ssh2Client: typeof Ssh2Client | null = null;
const newClient = (): Ssh2Client => {
  // The CommonJS bundle (bin/nixremote) has require; the ES modules of the tests make one.
  const load = typeof require === 'function' ? require : createRequire(import.meta.url);
  ssh2Client ??= (load('ssh2') as { Client: typeof Ssh2Client }).Client;
  return new ssh2Client();
};

export interface Target {
  host: string;
  port: number;
  user: string;
}

export type Auth = { password: string } | { privateKey: string };

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface Session {
  run(command: string, stdin?: string): Promise<RunResult>;
  close(): void;
}

export class SshError extends Error {
  constructor(
    message: string,
    readonly kind: 'connect' | 'auth' | 'hostkey' | 'protocol' | 'dropped',
  ) {
    super(message);
  }
}

// Offer modern host key types first, ed25519 foremost, as OpenSSH does.
const HOST_KEY_ORDER = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
];

function describe(err: Error & { code?: string; level?: string }, t: Target): SshError {
  const where = `${t.host}:${t.port}`;
  if (err.level === 'client-authentication')
    return new SshError(
      `${t.user}@${where} refused the login (wrong password or key, or the account is locked)`,
      'auth',
    );
  if (err.code === 'ECONNRESET')
    return new SshError(`${where} reset the connection before the SSH banner: ${DROPPED_CAUSE}`, 'dropped');
  if (err.code === 'ECONNREFUSED')
    return new SshError(
      `connection to ${where} refused: nothing listens there (is sshd running, is the port right?)`,
      'connect',
    );
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') return new SshError(`cannot resolve ${t.host}`, 'connect');
  if (err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH')
    return new SshError(`${where} is unreachable`, 'connect');
  if (err.level === 'client-timeout' || err.code === 'ETIMEDOUT')
    return new SshError(`connection to ${where} timed out`, 'connect');
  if (err.level === 'protocol' || /handshake|identification|protocol/i.test(err.message)) {
    return new SshError(`${where} did not answer as an SSH server (${err.message})`, 'protocol');
  }
  return new SshError(`ssh to ${where} failed: ${err.message}`, 'connect');
}

/**
 * Why a server closed before its host key, from the bytes it sent: none at all is sshd
 * turning this address away (OpenSSH 9.8+ PerSourcePenalties after failed logins,
 * MaxStartups, fail2ban); lines that are not an SSH banner are another program.
 */
export function closedBeforeHostKey(where: string, received: Buffer): SshError {
  const text = received.toString('latin1');
  // What sshd 9.8+ writes before it closes a connection it will not serve (sshd.c,
  // drop_connection): the penalty box, or too many unauthenticated connections at once.
  if (/^Not allowed at this time/m.test(text))
    return new SshError(`${where} refused this address ("Not allowed at this time"): ${PENALTY_CAUSE}`, 'dropped');
  if (/^Exceeded MaxStartups/m.test(text))
    return new SshError(
      `${where} refused the connection ("Exceeded MaxStartups"): too many logins to it are under way at once`,
      'dropped',
    );
  if (received.length === 0)
    return new SshError(
      `${where} accepted the connection and closed it before the SSH banner: ${DROPPED_CAUSE}`,
      'dropped',
    );
  if (!/^SSH-/m.test(text))
    return new SshError(
      `${where} did not answer as an SSH server (it said ${JSON.stringify(text.split(/\r?\n/)[0]!.slice(0, 60))})`,
      'protocol',
    );
  return new SshError(`${where} closed the connection before showing a host key`, 'protocol');
}

export const PENALTY_CAUSE =
  "sshd's PerSourcePenalties (OpenSSH 9.8 and later) has this address in its penalty box after failed logins (or connections that never log in) from it; " +
  'it refuses it for a while, 15 s at first and up to 10 minutes while failures go on';

export const DROPPED_CAUSE =
  'sshd there turned this address away. On OpenSSH 9.8 and later that is most often PerSourcePenalties: after failed logins ' +
  '(or connections that never log in) from one address, sshd refuses it for a while, 15 s at first and up to 10 minutes while failures go on; ' +
  'MaxStartups (too many logins at once) and fail2ban or sshguard do the same';

/** Connect only far enough to learn the server's host key. */
export function fetchHostKey(t: Omit<Target, 'user'>, timeoutMs = 10_000): Promise<HostKey> {
  return new Promise((resolve, reject) => {
    const c = newClient();
    let key: HostKey | null = null;
    // What the server sent, to tell a refusal from a program that is not sshd.
    const sock = net.connect({ host: t.host, port: t.port });
    let received = Buffer.alloc(0);
    const done = (e?: Error) => {
      c.end();
      sock.destroy();
      if (key) resolve(key);
      else reject(e ?? closedBeforeHostKey(`${t.host}:${t.port}`, received));
    };
    c.on('error', (e) =>
      done(
        /before handshake/i.test(e.message)
          ? closedBeforeHostKey(`${t.host}:${t.port}`, received)
          : describe(e, { ...t, user: '' }),
      ),
    );
    c.on('close', () => done());
    c.connect({
      sock,
      username: 'nixremote-hostkey-probe',
      readyTimeout: timeoutMs,
      algorithms: { serverHostKey: HOST_KEY_ORDER as never },
      hostVerifier: (blob: Buffer) => {
        try {
          key = hostKeyFromBlob(blob);
        } catch {
          key = null;
        }
        // Refuse to go on: we only wanted the key.
        return false;
      },
    });
    sock.on('data', (d: Buffer) => {
      if (received.length < 256) received = Buffer.concat([received, d]);
    });
  });
}

/** Open an authenticated session, refusing any host key but `expected`. */
export function openSession(t: Target, auth: Auth, expected: HostKey, timeoutMs = 15_000): Promise<Session> {
  return new Promise((resolve, reject) => {
    const c = newClient();
    let settled = false;
    let hostKeyWrong: string | null = null;
    c.on('error', (e) => {
      if (settled) return;
      settled = true;
      reject(hostKeyWrong ? new SshError(hostKeyWrong, 'hostkey') : describe(e, t));
    });
    c.on('ready', () => {
      settled = true;
      resolve(wrap(c));
    });
    const password = 'password' in auth ? auth.password : undefined;
    c.on('keyboard-interactive', (_name, _instr, _lang, prompts, finish) => {
      // Answer every hidden prompt with the password (PAM's "Password:"), nothing else.
      finish(prompts.map((p) => (p.echo ? '' : (password ?? ''))));
    });
    c.connect({
      host: t.host,
      port: t.port,
      username: t.user,
      readyTimeout: timeoutMs,
      keepaliveInterval: 10_000,
      algorithms: { serverHostKey: [expected.type, ...HOST_KEY_ORDER.filter((k) => k !== expected.type)] as never },
      hostVerifier: (blob: Buffer) => {
        const got = hostKeyFromBlob(blob);
        if (got.base64 === expected.base64) return true;
        hostKeyWrong = `the host key of ${t.host}:${t.port} is ${fingerprint(got)}, not the pinned ${fingerprint(expected)}`;
        return false;
      },
      ...(password !== undefined
        ? { password, tryKeyboard: true }
        : { privateKey: (auth as { privateKey: string }).privateKey }),
    });
  });
}

function wrap(c: Ssh2Client): Session {
  // A builder that drops the connection must fail the command, not leave it waiting.
  let closed = false;
  const pending = new Set<(e: Error) => void>();
  const onGone = () => {
    closed = true;
    for (const reject of pending) reject(new SshError('the builder closed the connection', 'connect'));
    pending.clear();
  };
  c.on('close', onGone);
  c.on('error', onGone);
  return {
    run(command, stdin) {
      return new Promise((resolve, reject) => {
        if (closed) return reject(new SshError('the builder closed the connection', 'connect'));
        pending.add(reject);
        c.exec(command, (err, stream) => {
          if (err) {
            pending.delete(reject);
            return reject(new SshError(`could not run a command: ${err.message}`, 'protocol'));
          }
          const out: Buffer[] = [];
          const errOut: Buffer[] = [];
          let code = -1;
          stream.on('data', (d: Buffer) => out.push(d));
          stream.stderr.on('data', (d: Buffer) => errOut.push(d));
          stream.on('exit', (c: number | null) => {
            code = c ?? 255;
          });
          stream.on('close', () => {
            pending.delete(reject);
            resolve({
              exitCode: code,
              stdout: Buffer.concat(out).toString('utf8'),
              stderr: Buffer.concat(errOut).toString('utf8'),
            });
          });
          if (stdin !== undefined) stream.end(stdin);
          else stream.end();
        });
      });
    },
    close() {
      c.end();
    },
  };
}
