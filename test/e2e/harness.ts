// Real builders and a hermetic client on one machine, as ../shared/TESTING.md describes:
// each builder is an sshd in its own mount namespace with its own /nix, /etc/nix and home
// for the builder user; the CLI under test runs as root in a mount namespace whose /root
// and /etc/nix are temporary directories. Nothing touches the machine's own ssh or Nix
// settings. Everything listens on 127.0.0.1 only.
import { execa, type Options } from 'execa';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CLI = path.join(REPO, 'bin/nixremote');
export const BUILDER_USER = 'nixremote-e2e';
export const BUILDER_PASSWORD = 'e2e-Secret-pw-7731';

const NIX_CONF = 'sandbox = false\nsubstituters =\n';

export function sh(cmd: string, opts: Options = {}) {
  return execa('sh', ['-c', cmd], { reject: false, ...opts });
}

/**
 * The mount points of the builders' and clients' binds (a multi-user client binds its own
 * daemon-socket directory). Debian's nix-bin, freshly installed, makes none of them, and
 * `mount --bind` then fails ("mount point does not exist"). Made when missing, never
 * removed: another namespace may use them.
 */
export function ensureMountPoints(): void {
  for (const d of ['/nix', '/etc/nix', '/nix/var/nix/daemon-socket']) fs.mkdirSync(d, { recursive: true });
}

let userReady = false;
export async function ensureBuilderUser(): Promise<void> {
  if (userReady) return;
  const id = await sh(`id -u ${BUILDER_USER}`);
  if (id.exitCode !== 0) {
    const r = await sh(`useradd -m -s /bin/bash ${BUILDER_USER}`);
    if (r.exitCode !== 0 && !/already exists/.test(String(r.stderr))) throw new Error(`useradd: ${r.stderr}`);
  }
  // useradd leaves the account locked ('!' in /etc/shadow), and sshd then refuses even keys.
  const r = await execa('chpasswd', [], { input: `${BUILDER_USER}:${BUILDER_PASSWORD}\n`, reject: false });
  if (r.exitCode !== 0) throw new Error(`chpasswd: ${r.stderr}`);
  fs.mkdirSync(`/home/${BUILDER_USER}`, { recursive: true });
  fs.mkdirSync('/run/sshd', { recursive: true });
  ensureMountPoints();
  userReady = true;
}

// Ports handed out by this process: between freePort closing its probe and sshd binding,
// the kernel may hand the same free port to a builder being made beside it.
const handedOut = new Set<number>();

/** Where scripts/make-trees.sh keeps the Debian trees of other Nix and OpenSSH versions. */
export const TREES = process.env.NIXREMOTE_TREES || '/srv/nixremote-trees';

/** A tree made by scripts/make-trees.sh ('trixie', 'sid'), or null when it is not there. */
export function treeRoot(name: string): string | null {
  const root = path.join(TREES, name);
  return fs.existsSync(path.join(root, '.ready')) ? root : null;
}

/** The first line of a tree's .ready: its Nix, OpenSSH and Node versions. */
export function treeVersions(name: string): string {
  return fs.readFileSync(path.join(TREES, name, '.ready'), 'utf8').split('\n')[0]!;
}

const treeUsers = new Set<string>();
/** The builder user inside a tree, with the uid it has here, so a bound home keeps its owner. */
async function ensureTreeUser(root: string): Promise<void> {
  if (treeUsers.has(root)) return;
  const { uid } = await ids(BUILDER_USER);
  if ((await execa('chroot', [root, 'id', '-u', BUILDER_USER], { reject: false })).exitCode !== 0) {
    const r = await execa(
      'chroot',
      [root, 'useradd', '-o', '-u', String(uid), '-M', '-d', `/home/${BUILDER_USER}`, '-s', '/bin/bash', BUILDER_USER],
      { reject: false },
    );
    if (r.exitCode !== 0) throw new Error(`useradd in ${root}: ${r.stderr}`);
  }
  const pw = await execa('chroot', [root, 'chpasswd'], {
    input: `${BUILDER_USER}:${BUILDER_PASSWORD}\n`,
    reject: false,
  });
  if (pw.exitCode !== 0) throw new Error(`chpasswd in ${root}: ${pw.stderr}`);
  fs.mkdirSync(path.join(root, 'home', BUILDER_USER), { recursive: true });
  fs.mkdirSync(path.join(root, 'run/sshd'), { recursive: true });
  treeUsers.add(root);
}

/**
 * Binds that make `root` a tree to chroot into with these directories seen at the same
 * paths inside, plus its own /dev and /proc. For a shell in a private mount namespace.
 */
function treeBinds(root: string, samePath: string[]): string[] {
  return [
    ...samePath.map((d) => `mkdir -p ${root}${d} && mount --bind ${d} ${root}${d}`),
    `mount --rbind /dev ${root}/dev`,
    `mount -t proc proc ${root}/proc`,
  ];
}

export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.on('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

async function waitForPort(port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((res) => {
      const c = net.connect(port, '127.0.0.1');
      c.on('connect', () => {
        c.destroy();
        res(true);
      });
      c.on('error', () => res(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

export interface BuilderOptions {
  /** Text put at the top of the builder user's ~/.bashrc (a shell that prints). */
  bashrc?: string;
  /**
   * Replace /usr/bin/nix-store in the builder's namespace with "command not found". The
   * bind follows Debian's link nix-store -> nix, so `nix` is gone from the PATH too.
   */
  hideNixStore?: boolean;
  /** Also put a working nix-store where a multi-user install keeps it, off the PATH. */
  nixStoreInProfile?: boolean;
  /** sshd offers only keyboard-interactive, through PAM (as many distributions do). */
  pamOnly?: boolean;
  /**
   * A root-owned store served by a nix-daemon inside the builder's namespace, whose
   * nix.conf trusts only root: the ssh user may ping the store but not build.
   */
  untrusted?: boolean;
  /** Run sshd and Nix from this Debian tree (scripts/make-trees.sh: 'trixie', 'sid'). */
  tree?: string;
  /**
   * The builder user's login shell, in the builder's namespace only: a builder-only copy of
   * /etc/passwd (the tree's, with a tree) with this shell is bound over it, so sshd, which
   * reads passwd at each login, sees it. The shared user is never changed. E.g.
   * '/usr/sbin/nologin', '/bin/false', '/nonexistent/shell'.
   */
  loginShell?: string;
  /**
   * The builder's store (DIR/nix, seen as /nix) is a tmpfs of this size, mounted in this
   * machine's namespace before sshd starts and unmounted by destroy(). fillStore() fills it.
   */
  storeSizeMiB?: number;
  /**
   * A tmpfs of this size (DIR/builddir) bound over the builder's /tmp, where Nix before 2.30
   * builds, and over /nix/var/nix/builds, its build-dir from 2.30 on. fillBuildDir() fills it.
   */
  buildDirSizeMiB?: number;
  /** Lines appended to the builder's own /etc/nix/nix.conf, e.g. 'max-jobs = 0' or 'allowed-users = root'. */
  nixConf?: string;
  /**
   * A tree builder whose ssh user may sudo (with its password): a sudoers.d of the builder's
   * own bound over the tree's, in its namespace only. The tree must have sudo.
   */
  sudo?: boolean;
}

export class Builder {
  readonly user = BUILDER_USER;
  readonly password = BUILDER_PASSWORD;
  private constructor(
    readonly dir: string,
    readonly port: number,
    /** Faults take effect at the next start(). */
    readonly opts: BuilderOptions,
  ) {}

  static async create(opts: BuilderOptions = {}): Promise<Builder> {
    await ensureBuilderUser();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-builder-'));
    fs.chmodSync(dir, 0o755);
    const port = await freePort();
    const b = new Builder(dir, port, opts);
    const { uid, gid } = await ids(BUILDER_USER);
    for (const d of ['nix', 'home', 'etcnix']) fs.mkdirSync(path.join(dir, d));
    if (opts.storeSizeMiB) await mountTmpfs(path.join(dir, 'nix'), opts.storeSizeMiB, '0755');
    if (opts.buildDirSizeMiB) {
      fs.mkdirSync(path.join(dir, 'builddir'));
      await mountTmpfs(path.join(dir, 'builddir'), opts.buildDirSizeMiB, '1777');
      // Where the builder's directory is bound again once this tmpfs covers /tmp (see start()).
      fs.mkdirSync(path.join(dir, 'builddir', path.basename(dir)));
    }
    if (opts.sudo && !opts.tree) throw new Error('sudo: for a tree builder only');
    if (opts.sudo) {
      fs.mkdirSync(path.join(dir, 'sudoers.d'), { mode: 0o755 });
      fs.writeFileSync(path.join(dir, 'sudoers.d/nixremote-e2e'), `${BUILDER_USER} ALL=(root) ALL\n`, { mode: 0o440 });
    }
    if (opts.tree) {
      const root = treeRoot(opts.tree);
      if (!root) throw new Error(`no ${opts.tree} tree in ${TREES}: run scripts/make-trees.sh`);
      await ensureTreeUser(root);
      // As an installer leaves /nix: newer Nix, as a user who cannot write /nix/var/nix,
      // falls back to a chroot store in ~/.local/share/nix/root and builds then fail.
      for (const d of ['nix/store', 'nix/var/nix']) fs.mkdirSync(path.join(dir, d), { recursive: true });
    }
    // Nix from 2.30 builds in build-dir, default /nix/var/nix/builds: a mount point for the tmpfs.
    if (opts.buildDirSizeMiB) fs.mkdirSync(path.join(dir, 'nix/var/nix/builds'), { recursive: true });
    // A single-user store owned by the builder user, so nix-store works without a daemon.
    if (!opts.untrusted) await sh(`chown -R ${uid}:${gid} ${dir}/nix`);
    fs.chownSync(path.join(dir, 'home'), uid, gid);
    fs.writeFileSync(
      path.join(dir, 'etcnix/nix.conf'),
      (opts.untrusted ? `${NIX_CONF}trusted-users = root\nbuild-users-group =\n` : NIX_CONF) +
        (opts.nixConf ? opts.nixConf.replace(/\n?$/, '\n') : ''),
    );
    if (opts.bashrc) {
      fs.writeFileSync(path.join(dir, 'home/.bashrc'), opts.bashrc + '\n');
      fs.chownSync(path.join(dir, 'home/.bashrc'), uid, gid);
    }
    const r = await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'hostkey')], {
      reject: false,
    });
    if (r.exitCode !== 0) throw new Error(`ssh-keygen: ${r.stderr}`);
    fs.writeFileSync(
      path.join(dir, 'sshd_config'),
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${dir}/hostkey`,
        `PidFile ${dir}/sshd.pid`,
        ...(opts.pamOnly
          ? ['UsePAM yes', 'PasswordAuthentication no', 'KbdInteractiveAuthentication yes']
          : ['UsePAM no', 'PasswordAuthentication yes', 'KbdInteractiveAuthentication no']),
        `AllowUsers ${BUILDER_USER}`,
        '',
      ].join('\n'),
    );
    try {
      await b.start();
    } catch (e) {
      await b.unmountTmpfs();
      throw e;
    }
    return b;
  }

  async start(): Promise<void> {
    const d = this.dir;
    const root = this.opts.tree ? treeRoot(this.opts.tree)! : '';
    const binds = [
      `mount --bind ${d}/nix /nix`,
      `mount --bind ${d}/home /home/${BUILDER_USER}`,
      `mount --bind ${d}/etcnix /etc/nix`,
    ];
    if (this.opts.nixStoreInProfile) {
      // Debian's nix-store is a link to the multi-call `nix`, which looks at its own name.
      // A copy, because hiding /usr/bin/nix-store binds over the link's target, /usr/bin/nix.
      const bin = path.join(d, 'nix/var/nix/profiles/default/bin');
      if (!fs.existsSync(path.join(bin, 'nix-store'))) {
        fs.mkdirSync(bin, { recursive: true });
        fs.copyFileSync('/usr/bin/nix', path.join(bin, 'nix'));
        fs.chmodSync(path.join(bin, 'nix'), 0o755);
        fs.symlinkSync('nix', path.join(bin, 'nix-store'));
        await sh(`chown -R --reference=${d}/home ${d}/nix`);
      }
    }
    if (this.opts.hideNixStore) {
      if (!fs.existsSync(`${d}/no-nix-store`)) {
        fs.writeFileSync(`${d}/no-nix-store`, '#!/bin/sh\necho "bash: nix-store: command not found" >&2\nexit 127\n', {
          mode: 0o755,
        });
      }
      binds.push(`mount --bind ${d}/no-nix-store /usr/bin/nix-store`);
    }
    if (this.opts.loginShell) {
      // sshd reads the shell from passwd at each login: a builder-only copy, the shared user untouched.
      const passwd = fs.readFileSync(`${root}/etc/passwd`, 'utf8');
      const line = new RegExp(`^${BUILDER_USER}:.*$`, 'm');
      if (!line.test(passwd)) throw new Error(`${BUILDER_USER} is not in ${root}/etc/passwd`);
      const shell = this.opts.loginShell;
      fs.writeFileSync(
        `${d}/passwd`,
        passwd.replace(line, (l) => [...l.split(':').slice(0, 6), shell].join(':')),
        { mode: 0o644 },
      );
    }
    // A tmpfs over /tmp hides the builder's directory when that is under /tmp: bound again
    // at its own path inside the tmpfs (made in create()), before the tmpfs covers /tmp.
    const rel = path.relative('/tmp', d);
    const underTmp = !rel.startsWith('..') && !path.isAbsolute(rel);
    const startDaemon = (chroot: string) => `(${chroot}nix-daemon > ${d}/daemon.log 2>&1 & echo $! > ${d}/daemon.pid)`;
    let script: string;
    if (!this.opts.tree) {
      if (this.opts.loginShell) binds.push(`mount --bind ${d}/passwd /etc/passwd`);
      if (this.opts.buildDirSizeMiB) {
        binds.push(`mount --bind ${d}/builddir /nix/var/nix/builds`);
        binds.push(
          underTmp
            ? `mount --bind ${d} ${d}/builddir/${rel} && mount --rbind ${d}/builddir /tmp`
            : `mount --bind ${d}/builddir /tmp`,
        );
      }
      if (this.opts.untrusted) binds.push(startDaemon(''));
      script = `${binds.join(' && ')} && exec /usr/sbin/sshd -f ${d}/sshd_config -E ${d}/sshd.log`;
    } else {
      // The same binds, onto the tree; the builder's directory at its own path inside it.
      // (hideNixStore and nixStoreInProfile are for this machine's Nix only.)
      const inTree = [
        // First, so that the builder's directory is bound inside the tmpfs, at the place made for it.
        ...(this.opts.buildDirSizeMiB ? [`mount --bind ${d}/builddir ${root}/tmp`] : []),
        ...treeBinds(root, [d]),
        `mount --bind ${d}/nix ${root}/nix`,
        `mount --bind ${d}/home ${root}/home/${BUILDER_USER}`,
        `mount --bind ${d}/etcnix ${root}/etc/nix`,
        ...(this.opts.buildDirSizeMiB ? [`mount --bind ${d}/builddir ${root}/nix/var/nix/builds`] : []),
        ...(this.opts.loginShell ? [`mount --bind ${d}/passwd ${root}/etc/passwd`] : []),
        ...(this.opts.sudo ? [`mount --bind ${d}/sudoers.d ${root}/etc/sudoers.d`] : []),
        // The tree's own nix-daemon, chrooted like sshd.
        ...(this.opts.untrusted ? [startDaemon(`chroot ${root} `)] : []),
      ];
      script = `${inTree.join(' && ')} && exec chroot ${root} /usr/sbin/sshd -f ${d}/sshd_config -E ${d}/sshd.log`;
    }
    const sock = `${d}/nix/var/nix/daemon-socket/socket`;
    // A socket left by a daemon that was killed would end the wait below before the new one listens.
    if (this.opts.untrusted) fs.rmSync(sock, { force: true });
    const r = await execa('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { reject: false });
    if (r.exitCode !== 0)
      throw new Error(`sshd did not start: ${r.stderr}\n${fs.readFileSync(`${d}/sshd.log`, 'utf8')}`);
    await waitForPort(this.port);
    if (this.opts.untrusted) {
      for (let i = 0; i < 200 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));
      if (!fs.existsSync(sock))
        throw new Error(`the builder's nix-daemon did not start: ${fs.readFileSync(`${d}/daemon.log`, 'utf8')}`);
    }
  }

  /**
   * Run a shell command inside the builder's namespace (and its tree, with one), as root or,
   * with asUser, as the builder user (setpriv, so the login shell plays no part). sshd must run.
   */
  inside(cmd: string, opts: { asUser?: boolean } = {}) {
    const pidFile = path.join(this.dir, 'sshd.pid');
    if (!fs.existsSync(pidFile)) throw new Error('the builder is not running');
    const pid = fs.readFileSync(pidFile, 'utf8').trim();
    const home = `/home/${BUILDER_USER}`;
    const who = opts.asUser ? ['setpriv', `--reuid=${BUILDER_USER}`, `--regid=${BUILDER_USER}`, '--init-groups'] : [];
    const env = ['env', '-i', 'PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin'];
    if (opts.asUser) env.push(`HOME=${home}`, `USER=${BUILDER_USER}`, `LOGNAME=${BUILDER_USER}`);
    else env.push('HOME=/root', 'USER=root');
    return execa('nsenter', ['-t', pid, '-m', '-r', '-w', ...who, ...env, 'sh', '-c', cmd], { reject: false });
  }

  /**
   * Fill the store's tmpfs (storeSizeMiB) to 0 bytes free with DIR/nix/fill, owned by root.
   * First a path is added to the store, so it holds a working Nix database: a store that
   * worked and then filled up.
   */
  async fillStore(): Promise<void> {
    if (!this.opts.storeSizeMiB) throw new Error('fillStore needs storeSizeMiB');
    const seed = path.join(this.dir, 'seed');
    fs.mkdirSync(seed, { recursive: true, mode: 0o755 });
    fs.writeFileSync(path.join(seed, 'nixremote-seed'), 'a path added before the store filled up\n', { mode: 0o644 });
    // The single-user store is the builder user's; the root-owned one (untrusted) is root's.
    const add = await this.inside(`nix-store --add ${seed}/nixremote-seed`, { asUser: !this.opts.untrusted });
    if (add.exitCode !== 0) throw new Error(`nix-store --add on the builder: ${add.stderr}`);
    if (!fs.existsSync(path.join(this.dir, 'nix/var/nix/db/db.sqlite')))
      throw new Error('the builder has no Nix database after nix-store --add');
    await fillUp(path.join(this.dir, 'nix'));
  }

  unfillStore(): void {
    fs.rmSync(path.join(this.dir, 'nix/fill'), { force: true });
  }

  /** Fill the build directory's tmpfs (buildDirSizeMiB) to 0 bytes free with a file owned by root. */
  async fillBuildDir(): Promise<void> {
    if (!this.opts.buildDirSizeMiB) throw new Error('fillBuildDir needs buildDirSizeMiB');
    await fillUp(path.join(this.dir, 'builddir'));
  }

  unfillBuildDir(): void {
    fs.rmSync(path.join(this.dir, 'builddir/fill'), { force: true });
  }

  /** Kill the builder's nix-daemon (untrusted), as a crash does: its socket file stays. */
  async stopDaemon(): Promise<void> {
    const daemonPid = path.join(this.dir, 'daemon.pid');
    if (!fs.existsSync(daemonPid)) throw new Error('the builder runs no nix-daemon');
    const pid = Number(fs.readFileSync(daemonPid, 'utf8').trim());
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    for (let i = 0; i < 100 && fs.existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 20));
    fs.rmSync(daemonPid, { force: true });
  }

  async stop(): Promise<void> {
    const daemonPid = path.join(this.dir, 'daemon.pid');
    if (fs.existsSync(daemonPid)) {
      try {
        process.kill(Number(fs.readFileSync(daemonPid, 'utf8').trim()), 'SIGTERM');
      } catch {
        // already gone
      }
      fs.rmSync(daemonPid, { force: true });
    }
    const pidFile = path.join(this.dir, 'sshd.pid');
    if (!fs.existsSync(pidFile)) return;
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
    for (let i = 0; i < 100 && fs.existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 20));
    fs.rmSync(pidFile, { force: true });
  }

  /** Kill sshd and every session it serves, as a builder that drops off the network. */
  async kill(): Promise<void> {
    const pid = Number(fs.readFileSync(path.join(this.dir, 'sshd.pid'), 'utf8').trim());
    const parent = new Map<number, number>();
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
        parent.set(Number(d), Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]));
      } catch {
        // gone
      }
    }
    const tree = [pid];
    for (let i = 0; i < tree.length; i++) for (const [p, pp] of parent) if (pp === tree[i]) tree.push(p);
    for (const p of tree) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    fs.rmSync(path.join(this.dir, 'sshd.pid'), { force: true });
  }

  async destroy(): Promise<void> {
    await this.stop();
    await this.unmountTmpfs();
    await sh(`chmod -R u+w ${this.dir}/nix 2>/dev/null; rm -rf ${this.dir}`);
    // The empty mount point made for it inside a tree.
    const root = this.opts.tree ? treeRoot(this.opts.tree) : null;
    if (root) {
      try {
        fs.rmdirSync(`${root}${this.dir}`);
      } catch {
        // already gone, or still a mount point somewhere: left as it is
      }
    }
  }

  /** The tmpfs of storeSizeMiB and buildDirSizeMiB, in this machine's namespace. */
  private async unmountTmpfs(): Promise<void> {
    for (const [size, d] of [
      [this.opts.storeSizeMiB, 'nix'],
      [this.opts.buildDirSizeMiB, 'builddir'],
    ] as const) {
      const m = path.join(this.dir, d);
      if (!size || (await sh(`mountpoint -q ${m}`)).exitCode !== 0) continue;
      // Lazily if a process here still holds it; the builder's namespace, gone with sshd, had a copy.
      if ((await sh(`umount ${m}`)).exitCode !== 0) await sh(`umount -l ${m}`);
    }
  }

  /** Did a build land here? Paths are the same in every store: /nix/store/... */
  storeHas(storePath: string): boolean {
    return fs.existsSync(path.join(this.dir, storePath.replace(/^\/nix\//, 'nix/')));
  }

  authorizedKeys(): string {
    return fs.readFileSync(path.join(this.dir, 'home/.ssh/authorized_keys'), 'utf8');
  }

  /** A new host key, as after a reinstall; takes effect at the next start(). */
  async newHostKey(): Promise<void> {
    fs.rmSync(path.join(this.dir, 'hostkey'), { force: true });
    fs.rmSync(path.join(this.dir, 'hostkey.pub'), { force: true });
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(this.dir, 'hostkey')]);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  setBashrc(text: string): void {
    const f = path.join(this.dir, 'home/.bashrc');
    fs.writeFileSync(f, text + '\n');
    const st = fs.statSync(path.join(this.dir, 'home'));
    fs.chownSync(f, st.uid, st.gid);
  }

  hostKeyFingerprint(): Promise<string> {
    return execa('ssh-keygen', ['-lf', path.join(this.dir, 'hostkey.pub')]).then(
      (r) => String(r.stdout).split(/\s+/)[1]!,
    );
  }
}

/** A tmpfs of `mib` MiB on `dir`, in this machine's namespace. */
async function mountTmpfs(dir: string, mib: number, mode: string): Promise<void> {
  const r = await sh(`mount -t tmpfs -o size=${mib}m,mode=${mode} nixremote-e2e ${dir}`);
  if (r.exitCode !== 0) throw new Error(`mount tmpfs on ${dir}: ${r.stderr}`);
}

/** Write DIR/fill (root's) until the filesystem is full, and check that 0 bytes are left. */
async function fillUp(dir: string): Promise<void> {
  const f = path.join(dir, 'fill');
  const dd = await sh(`dd if=/dev/zero of=${f} bs=1M oflag=append conv=notrunc 2>&1`);
  if (!/No space left on device/.test(String(dd.stdout))) throw new Error(`dd on ${dir} did not fill it: ${dd.stdout}`);
  const avail = Number(String((await sh(`df --output=avail -B1 ${dir} | tail -1`)).stdout).trim());
  if (avail !== 0) throw new Error(`${dir} still has ${avail} bytes free`);
}

async function ids(user: string): Promise<{ uid: number; gid: number }> {
  const u = await execa('id', ['-u', user]);
  const g = await execa('id', ['-g', user]);
  return { uid: Number(u.stdout), gid: Number(g.stdout) };
}

/**
 * A private /root and /etc/nix for the CLI under test. A multi-user client also has its
 * own daemon socket directory, and runs a nix-daemon beside each command (withDaemon).
 */
export class Client {
  readonly root: string;
  readonly etcNix: string;
  readonly socketDir: string | null;

  /** The Debian tree whose node, ssh and Nix this client runs (null: this machine's). */
  readonly tree: string | null;
  private readonly store: string | null;

  constructor(opts: { multiUser?: boolean; tree?: string } = {}) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-client-'));
    this.tree = opts.tree ? treeRoot(opts.tree) : null;
    if (opts.tree && !this.tree) throw new Error(`no ${opts.tree} tree in ${TREES}: run scripts/make-trees.sh`);
    // A client from a tree builds into a store of its own.
    this.store = this.tree ? path.join(dir, 'nix') : null;
    if (this.store) for (const d of ['store', 'var/nix']) fs.mkdirSync(path.join(this.store, d), { recursive: true });
    this.root = path.join(dir, 'root');
    this.etcNix = path.join(dir, 'etcnix');
    this.socketDir = opts.multiUser ? path.join(dir, 'daemon-socket') : null;
    ensureMountPoints();
    fs.mkdirSync(this.root, { mode: 0o700 });
    fs.mkdirSync(this.etcNix);
    // No build users here: Nix builds as root (the proof builds its input here).
    fs.writeFileSync(path.join(this.etcNix, 'nix.conf'), `${NIX_CONF}build-users-group =\n`);
    if (this.socketDir) fs.mkdirSync(this.socketDir);
  }

  /** The shell command that runs `cmd` inside the client's namespace. */
  wrap(cmd: string): string[] {
    const socket = this.socketDir ? ` && mount --bind ${this.socketDir} /nix/var/nix/daemon-socket` : '';
    // A failed bind ends it there: `cmd` may end in '&', which would otherwise take the
    // binds into the background with it and run the rest on this machine's own files.
    if (this.tree) {
      // The tree's own programs, with the project and /tmp at the same paths inside it.
      const t = this.tree;
      const binds = [
        ...treeBinds(t, [REPO, os.tmpdir()]),
        `mount --bind ${this.root} ${t}/root`,
        `mount --bind ${this.etcNix} ${t}/etc/nix`,
        `mount --bind ${this.store} ${t}/nix`,
      ].join(' && ');
      return [
        'unshare',
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        `${binds} || { echo 'the client namespace could not bind its files' >&2; exit 97; }; exec chroot ${t} /bin/sh -c ${q(`unset NODE_EXTRA_CA_CERTS; cd ${REPO} && ${cmd}`)}`,
      ];
    }
    const binds = `mount --bind ${this.root} /root && mount --bind ${this.etcNix} /etc/nix${socket}`;
    return [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      `${binds} || { echo 'the client namespace could not bind its files' >&2; exit 97; }; ${cmd}`,
    ];
  }

  /** `cmd` with a nix-daemon running beside it in the same namespace, stopped after. */
  withDaemon(cmd: string, opts: Options = {}, before = '') {
    return this.run(
      // A socket left by the last daemon would let `cmd` start before this one listens; under
      // a loaded CI machine the daemon may take seconds to bind.
      `${before}${this.socketDir ? 'rm -f /nix/var/nix/daemon-socket/socket; ' : ''}nix-daemon > /dev/null 2>&1 & d=$!; i=0; while [ ! -S /nix/var/nix/daemon-socket/socket ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; ${cmd}; rc=$?; kill $d; exit $rc`,
      opts,
    );
  }

  run(cmd: string, opts: Options = {}) {
    const [file, ...args] = this.wrap(cmd);
    return execa(file!, args, {
      reject: false,
      cwd: REPO,
      timeout: 600_000,
      env: { NO_COLOR: '1', ...(opts.env ?? {}) },
      ...opts,
    });
  }

  /** nixremote with these arguments, as root in the namespace. */
  nixremote(args: string[], opts: Options = {}) {
    return this.run(`exec ${CLI} ${args.map(q).join(' ')}`, opts);
  }

  /** Every file under the private /root and /etc/nix with its hash, mode and owner. */
  snapshot(): Map<string, string> {
    const m = new Map<string, string>();
    const walk = (base: string, rel: string) => {
      for (const e of fs.readdirSync(path.join(base, rel), { withFileTypes: true })) {
        const r = path.join(rel, e.name);
        const full = path.join(base, r);
        const st = fs.lstatSync(full);
        if (e.isDirectory()) {
          m.set(`${base}:${r}/`, `${st.mode.toString(8)} ${st.uid}`);
          walk(base, r);
        } else
          m.set(
            `${base}:${r}`,
            `${createHash('sha256').update(fs.readFileSync(full)).digest('hex')} ${st.mode.toString(8)} ${st.uid}`,
          );
      }
    };
    walk(this.root, '');
    walk(this.etcNix, '');
    return m;
  }

  destroy(): void {
    fs.rmSync(path.dirname(this.root), { recursive: true, force: true });
  }
}

export const q = (s: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** `nixremote init` for a test builder on 127.0.0.1, unattended: the arguments every test starts from. */
export const initCommand = (b: { port: number; user: string }, name: string): string[] => [
  'init',
  '--host',
  '127.0.0.1',
  '--port',
  String(b.port),
  '--user',
  b.user,
  '--name',
  name,
  '--yes',
];

export const PROBE_EXPR = (nonce: string) =>
  `derivation { name = "e2e-probe"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo ok > $out" ]; nonce = "${nonce}"; }`;

/** A fresh builder and client for one test, torn down whatever happens. */
export async function withRig(opts: BuilderOptions, fn: (b: Builder, c: Client) => Promise<void>): Promise<void> {
  const b = await Builder.create(opts);
  const c = new Client();
  try {
    await fn(b, c);
  } finally {
    c.destroy();
    await b.destroy();
  }
}

/** A program in a real terminal (tmux): read the screen, type into it, wait for its exit code. */
export class Terminal {
  private static n = 0;
  readonly session = `nixremote-e2e-${process.pid}-${Terminal.n++}`;
  private readonly exitFile: string;

  private constructor(dir: string) {
    this.exitFile = path.join(dir, `exit-${this.session}`);
  }

  /** Run `cmd` (a shell command) for the client, in its namespace, in a terminal. */
  static async start(c: Client, cmd: string): Promise<Terminal> {
    const t = new Terminal(path.dirname(c.root));
    const wrapped = c.wrap(`${cmd}; echo $? > ${t.exitFile}; sleep 600`).map(q).join(' ');
    const r = await execa(
      'tmux',
      ['new-session', '-d', '-s', t.session, '-x', '200', '-y', '50', `env NO_COLOR=1 ${wrapped}`],
      { reject: false },
    );
    if (r.exitCode !== 0) throw new Error(`tmux: ${r.stderr}`);
    return t;
  }

  async screen(): Promise<string> {
    return String(
      (await execa('tmux', ['capture-pane', '-p', '-J', '-S', '-200', '-t', this.session], { reject: false })).stdout,
    );
  }

  /** Only what is on the screen now, without the scrollback. */
  async visible(): Promise<string> {
    return String((await execa('tmux', ['capture-pane', '-p', '-J', '-t', this.session], { reject: false })).stdout);
  }

  async waitFor(re: RegExp, ms = 60_000): Promise<string> {
    const end = Date.now() + ms;
    let s = '';
    while (Date.now() < end) {
      s = await this.screen();
      if (re.test(s)) return s;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${re}; the screen shows:\n${s}`);
  }

  /** Wait for a question, then type the answer and Enter. */
  async answer(prompt: RegExp, text: string): Promise<void> {
    await this.waitFor(prompt);
    await this.type(text);
  }

  /** Type `text` (literally), then Enter. */
  async type(text: string): Promise<void> {
    if (text) await execa('tmux', ['send-keys', '-t', this.session, '-l', text]);
    await execa('tmux', ['send-keys', '-t', this.session, 'Enter']);
  }

  async keys(...keys: string[]): Promise<void> {
    await execa('tmux', ['send-keys', '-t', this.session, ...keys]);
  }

  async exitCode(ms = 180_000): Promise<number> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (fs.existsSync(this.exitFile)) {
        const t = fs.readFileSync(this.exitFile, 'utf8').trim();
        if (t) return Number(t);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no exit code within ${ms} ms; the screen shows:\n${await this.screen()}`);
  }

  async close(): Promise<void> {
    await execa('tmux', ['kill-session', '-t', this.session], { reject: false });
  }
}

/** The files init and apply write for the build user, as text (null: absent); the key aside. */
export function writtenFiles(c: Client): Record<string, string | null> {
  const read = (p: string) => (fs.existsSync(p) ? fs.readFileSync(p, 'utf8') : null);
  return {
    known_hosts: read(path.join(c.root, '.ssh/known_hosts')),
    config: read(path.join(c.root, '.ssh/config')),
    machines: read(path.join(c.etcNix, 'machines')),
    'nix.conf': read(path.join(c.etcNix, 'nix.conf')),
  };
}

/** Waits until what a running command printed so far matches `re`; false after `ms`. */
export async function waitForOutput(chunks: string[], re: RegExp, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (re.test(chunks.join(''))) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}
