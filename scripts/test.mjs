#!/usr/bin/env node
// Runs the unit tests, then the end-to-end tests against real builders (sshd, ssh, Nix on
// 127.0.0.1). The end-to-end part needs root, unshare, sshd, ssh, nix-build, tmux, zsh and fish; as
// root on Debian/Ubuntu it installs what is missing with apt-get, and makes the trixie and
// sid trees of the version matrix with debootstrap (once; kept). Where that cannot be
// done it says why in one line and skips that part, except under CI=true, where a
// skipped suite is a failure.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const which = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const want = process.argv[2]; // 'unit', 'e2e' or nothing for both
const files = (dir) =>
  existsSync(dir)
    ? readdirSync(dir, { recursive: true })
        .filter((f) => String(f).endsWith('.test.js'))
        .map((f) => join(dir, String(f)))
        .sort()
    : [];

function e2eBlocker() {
  if (process.platform !== 'linux') return 'the end-to-end tests need Linux (mount namespaces)';
  if (process.getuid?.() !== 0) return 'the end-to-end tests need root (namespaces, sshd, a builder user)';
  const needed = {
    unshare: 'util-linux',
    sshd: 'openssh-server',
    ssh: 'openssh-client',
    'nix-build': 'nix-bin',
    tmux: 'tmux',
    chpasswd: 'passwd',
    debootstrap: 'debootstrap',
    zsh: 'zsh',
    fish: 'fish',
  };
  const have = (c) => (c === 'sshd' ? existsSync('/usr/sbin/sshd') : which(c));
  let missing = Object.keys(needed).filter((c) => !have(c));
  if (missing.length && which('apt-get')) {
    const pkgs = [...new Set(missing.map((c) => needed[c]))];
    console.log(`installing for the end-to-end tests: ${pkgs.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env });
    missing = Object.keys(needed).filter((c) => !have(c));
  }
  if (missing.length) return `missing ${missing.join(', ')} (no apt-get to install them)`;
  // The version matrix: Debian trees with other Nix and OpenSSH versions, made once and
  // kept (scripts/make-trees.sh says what it finds ready).
  const trees = spawnSync('bash', [join('scripts', 'make-trees.sh')], { stdio: 'inherit' });
  if (trees.status !== 0) return 'the Debian trees of the version matrix could not be made (scripts/make-trees.sh)';
  return null;
}

const suites = [];
if (want !== 'e2e') suites.push(...files('dist/test/unit'));
if (want !== 'unit') {
  const why = e2eBlocker();
  if (why) {
    console.log(`skipping the end-to-end tests: ${why}`);
    if (process.env.CI === 'true') {
      console.log('CI=true: a skipped end-to-end suite counts as a failure');
      process.exit(1);
    }
  } else suites.push(...files('dist/test/e2e'));
}
if (suites.length === 0) {
  console.log('no test files found; run `npm run build` first');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...suites], { stdio: 'inherit' });
process.exit(r.status ?? 1);
