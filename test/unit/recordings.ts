// The recordings of real faults (test/fixtures/recorded, see its README): each file's
// blocks, and the catalogue entries each fault's failing steps must be named by.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO } from './paths.js';

export const RECORDED = path.join(REPO, 'test/fixtures/recorded');

export interface Block {
  command: string;
  exit: number;
  stdout: string;
  stderr: string;
}

/** Every recording, as [version directory, file name, fault]. */
export function recordings(): [string, string, string][] {
  if (!fs.existsSync(RECORDED)) return [];
  return fs
    .readdirSync(RECORDED)
    .filter((d) => d.startsWith('nix-'))
    .flatMap((dir) =>
      fs
        .readdirSync(path.join(RECORDED, dir))
        .map((f): [string, string, string] => [dir, f, f.replace(/(\.client-nix-[\d.]+)?\.txt$/, '')]),
    );
}

/** The commands of one recording with what each printed. */
export function blocks(dir: string, file: string): Block[] {
  const text = fs.readFileSync(path.join(RECORDED, dir, file), 'utf8');
  return text
    .split(/^\$ /m)
    .slice(1)
    .map((b) => ({
      command: b.split('\n')[0]!,
      exit: Number(/^# exit (\d+)/m.exec(b)?.[1]),
      stdout: /## stdout\n([\s\S]*?)## stderr\n/.exec(b)?.[1] ?? '',
      stderr: (b.split('## stderr\n')[1] ?? '').replace(/\n# [\s\S]*$/, ''),
    }));
}

/** The entries each recorded fault's failing steps must be named by; a step not listed fails its test. */
export const RECORDED_CAUSES: Record<string, string[]> = {
  'bashrc-stderr': [],
  'build-dir-full': ['fs.full'],
  'client-port-in-uri': ['ssh.port-in-hostname'],
  'client-requesttty-force-restrict': ['ssh.pty-refused'],
  // Without restrict the build hangs until the recorder's timeout: nothing to name but that.
  'client-requesttty-force': ['not-recognised'],
  'forced-command-nix-daemon-stdio': ['nix.eof', 'nix.protocol-other'],
  'forced-command-nix-store-serve': ['nix.eof', 'nix.protocol-other'],
  'login-shell-false': ['shell.false', 'hook.serve-closed', 'nix.ssh-ng-closed'],
  'login-shell-missing': ['ssh.auth'],
  'login-shell-nologin': ['shell.nologin'],
  'max-jobs-0': ['nix.remote-max-jobs'],
  'store-full': ['store.db-io', 'fs.full'],
  'strictmodes-ssh-dir-0777': ['ssh.auth'],
  // Run back to back on OpenSSH 10, the failed logins bring PerSourcePenalties in.
  'strictmodes-ssh-dir-0777.no-restarts': ['ssh.auth', 'ssh.dropped'],
  'untrusted-allowed-users-root': ['nix.daemon-closed', 'nix.ssh-ng-closed'],
  'untrusted-daemon-stopped': ['nix.daemon-refused', 'nix.ssh-ng-closed'],
  untrusted: ['nix.untrusted'],
};

/** Where a fault's builds are named more narrowly than its logins (the login's own entries left out). */
export const RECORDED_BUILD_CAUSES: Record<string, string[]> = {
  'forced-command-nix-daemon-stdio': ['nix.protocol-other'],
  'forced-command-nix-store-serve': ['nix.protocol-other'],
  'login-shell-false': ['hook.serve-closed', 'nix.ssh-ng-closed'],
};
