// Helpers for tests with many builders at once (dozens): network faults made in this
// process (a silent port, a slow link) and a client setup written by hand, so that a
// fleet does not cost one `nixremote init` per builder. See ../shared/TESTING.md.
import { execa } from 'execa';
export { mapLimit } from '../../src/util/map-limit.js';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { BUILDER_USER, type Builder, type Client } from './harness.js';

/** Wait until performance.now() >= due; a timer may fire a little early, so check again. */
async function sleepUntil(due: number): Promise<void> {
  for (let left = due - performance.now(); left > 0; left = due - performance.now()) {
    await new Promise((r) => setTimeout(r, Math.ceil(left)));
  }
}

/** Close a server and resolve even if it was never listening or is already closed. */
function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function listen(server: net.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

/**
 * A port that accepts TCP and never speaks: what a client sees when a host's firewall or a
 * hung sshd lets the handshake through but no SSH banner ever comes.
 */
export class Tarpit {
  /** Every connection it has taken since it started, or since the count was reset. */
  accepted = 0;

  private constructor(
    private readonly server: net.Server,
    private readonly sockets: Set<net.Socket>,
    readonly port: number,
  ) {}

  /** On a free port, or on `port` (a builder's, once its sshd is stopped: the machine gone quiet). */
  static async start(port = 0): Promise<Tarpit> {
    const sockets = new Set<net.Socket>();
    let t: Tarpit | null = null;
    const server = net.createServer((sock) => {
      if (t) t.accepted++;
      sockets.add(sock);
      // A client that gives up may reset the connection; that must not crash the test process.
      sock.on('error', () => {});
      sock.on('close', () => sockets.delete(sock));
    });
    t = new Tarpit(server, sockets, await listen(server, port));
    return t;
  }

  /** How many connections are being held open right now. */
  get connections(): number {
    return this.sockets.size;
  }

  async stop(): Promise<void> {
    const closing = closeServer(this.server);
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await closing;
  }
}

/**
 * A slow link in front of a builder's port: every chunk reaches the other side delayMs
 * after it arrived, in each direction (this kernel has no netem). A full SSH round trip
 * through it therefore costs at least 2 * delayMs.
 */
export class DelayProxy {
  private constructor(
    private readonly server: net.Server,
    private readonly sockets: Set<net.Socket>,
    readonly port: number,
  ) {}

  static async start(targetPort: number, delayMs = 200): Promise<DelayProxy> {
    const sockets = new Set<net.Socket>();
    // allowHalfOpen on both sides: an 'end' from one side is passed on (late, like the data
    // before it) as an end to the other, which may still answer.
    const server = net.createServer({ allowHalfOpen: true }, (client) => {
      const upstream = net.connect({ port: targetPort, host: '127.0.0.1', allowHalfOpen: true });
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      }
      pipeDelayed(client, upstream, delayMs);
      pipeDelayed(upstream, client, delayMs);
    });
    return new DelayProxy(server, sockets, await listen(server));
  }

  async stop(): Promise<void> {
    const closing = closeServer(this.server);
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await closing;
  }
}

/**
 * One direction of a DelayProxy. Each chunk is due delayMs after it arrived and is written
 * by one promise chain, so chunks leave in the order they came even if a write is held up;
 * the chain sleeps only until each chunk's own due time, so delays do not add up.
 */
function pipeDelayed(src: net.Socket, dst: net.Socket, delayMs: number): void {
  let chain = Promise.resolve();
  let waitingForDrain = false;
  const later = (step: () => void) => {
    const due = performance.now() + delayMs;
    chain = chain.then(async () => {
      await sleepUntil(due);
      if (!dst.destroyed) step();
    });
  };
  src.on('data', (chunk: Buffer) =>
    later(() => {
      // Backpressure: stop reading the fast side while the other side is full.
      if (!dst.write(chunk) && !waitingForDrain) {
        waitingForDrain = true;
        src.pause();
        dst.once('drain', () => {
          waitingForDrain = false;
          src.resume();
        });
      }
    }),
  );
  src.on('end', () => later(() => dst.end()));
  // A reset or a refused upstream: nothing more can be delivered either way, so drop the
  // peer at once rather than leave it hanging (and never let the error escape).
  src.on('error', () => dst.destroy());
  src.on('close', (hadError: boolean) => {
    if (hadError) dst.destroy();
  });
}

/** Nix's name for this machine's system, from `uname -m`. */
export function nixSystem(): string {
  const m = os.machine();
  if (m === 'x86_64' || m === 'amd64') return 'x86_64-linux';
  if (m === 'aarch64' || m === 'arm64') return 'aarch64-linux';
  return `${m}-linux`;
}

export interface FleetMember {
  /** The ssh Host alias, also used as HostKeyAlias and in the machines file. */
  name: string;
  port: number;
  /** "type base64" of the host key, or null for something without one (a Tarpit). */
  hostKeyPub: string | null;
}

/**
 * The client side of a fleet, written by hand in the client's private /root and /etc/nix,
 * as `nixremote init` would leave it for each builder: one key, one Host block per builder,
 * pinned host keys and a machines file that Nix reads through `builders = @...`.
 *
 * opts.keyPath is the key's path as seen inside the client's namespace (under /root,
 * default /root/.ssh/fleet_key); an existing key there is reused, so a second call (for a
 * changed fleet) rewrites the files but keeps the key the builders already trust.
 */
export async function fleetClientSetup(
  c: Client,
  builders: FleetMember[],
  opts: { keyPath?: string } = {},
): Promise<{ keyPath: string; publicKey: string }> {
  const keyPath = opts.keyPath ?? '/root/.ssh/fleet_key';
  if (!keyPath.startsWith('/root/')) throw new Error(`fleetClientSetup: keyPath must be under /root: ${keyPath}`);
  for (const b of builders) {
    // The name goes into ssh_config and the machines file unquoted.
    if (!/^[A-Za-z0-9._-]+$/.test(b.name)) {
      throw new Error(`fleetClientSetup: bad builder name ${JSON.stringify(b.name)}`);
    }
  }
  const keyOnHost = path.join(c.root, keyPath.slice('/root/'.length));
  const sshDir = path.join(c.root, '.ssh');
  fs.mkdirSync(sshDir, { recursive: true });
  fs.chmodSync(sshDir, 0o700);
  fs.mkdirSync(path.dirname(keyOnHost), { recursive: true });
  if (!fs.existsSync(keyOnHost)) {
    const args = ['-q', '-t', 'ed25519', '-N', '', '-C', 'nixremote-e2e-fleet', '-f', keyOnHost];
    const r = await execa('ssh-keygen', args, { reject: false });
    if (r.exitCode !== 0) throw new Error(`ssh-keygen: ${r.stderr}`);
  }
  // ssh refuses a private key that others can read.
  fs.chmodSync(keyOnHost, 0o600);
  const publicKey = fs.readFileSync(`${keyOnHost}.pub`, 'utf8').trim();

  const config = builders.map((b) =>
    [
      `Host ${b.name}`,
      '  HostName 127.0.0.1',
      `  Port ${b.port}`,
      `  User ${BUILDER_USER}`,
      `  IdentityFile ${keyPath}`,
      '  IdentitiesOnly yes',
      // Every builder is 127.0.0.1: without an alias, their host keys would collide.
      `  HostKeyAlias ${b.name}`,
      '  ConnectTimeout 10',
      '',
    ].join('\n'),
  );
  writeFileMode(path.join(sshDir, 'config'), config.join('\n'), 0o600);

  const known = builders.filter((b) => b.hostKeyPub !== null).map((b) => `${b.name} ${typeAndBase64(b.hostKeyPub!)}\n`);
  writeFileMode(path.join(sshDir, 'known_hosts'), known.join(''), 0o600);

  const system = nixSystem();
  const machines = builders.map((b) => `ssh://${b.name} ${system} ${keyPath} 1 1 - - -\n`);
  writeFileMode(path.join(c.etcNix, 'machines'), machines.join(''), 0o644);

  const confPath = path.join(c.etcNix, 'nix.conf');
  const conf = fs.existsSync(confPath) ? fs.readFileSync(confPath, 'utf8') : '';
  const line = 'builders = @/etc/nix/machines';
  // Idempotent, so fleetClientSetup can be called again for a changed fleet.
  if (!conf.split('\n').includes(line)) {
    fs.writeFileSync(confPath, `${conf}${conf === '' || conf.endsWith('\n') ? '' : '\n'}${line}\n`);
  }
  return { keyPath, publicKey };
}

/** Let the builder accept `publicKey` (replacing any keys it had), as sshd's StrictModes wants. */
export function authorize(b: Builder, publicKey: string): void {
  const home = path.join(b.dir, 'home');
  const { uid, gid } = fs.statSync(home);
  const sshDir = path.join(home, '.ssh');
  fs.mkdirSync(sshDir, { recursive: true });
  fs.chmodSync(sshDir, 0o700);
  fs.chownSync(sshDir, uid, gid);
  const file = path.join(sshDir, 'authorized_keys');
  writeFileMode(file, publicKey.trim() + '\n', 0o600);
  fs.chownSync(file, uid, gid);
}

/** The builder's host public key as "type base64" (no comment), as known_hosts wants it. */
export function hostKeyPub(b: Builder): string {
  return typeAndBase64(fs.readFileSync(path.join(b.dir, 'hostkey.pub'), 'utf8'));
}

function typeAndBase64(pub: string): string {
  const [type, b64] = pub.trim().split(/\s+/);
  if (!type || !b64) throw new Error(`not an OpenSSH public key: ${JSON.stringify(pub)}`);
  return `${type} ${b64}`;
}

/** writeFileSync's mode applies only to a new file (and through the umask); this always sets it. */
function writeFileMode(file: string, text: string, mode: number): void {
  fs.writeFileSync(file, text, { mode });
  fs.chmodSync(file, mode);
}
