// The ssh key the build user's ssh (and so Nix) uses for the builder. It must have no
// passphrase: the daemon has no terminal to ask on and no agent to ask.
import * as fs from 'node:fs';
import type { Exec } from '../io/exec.js';
import { parseKeyLine, type HostKey } from '../ssh/host-key.js';
import { UsageError } from '../validate.js';

export type KeyState = { exists: false } | { exists: true; publicLine: string; key: HostKey };

export async function inspectKey(exec: Exec, keyPath: string, buildUid: number): Promise<KeyState> {
  let st: fs.Stats;
  try {
    st = fs.statSync(keyPath);
  } catch {
    if (fs.existsSync(`${keyPath}.pub`)) {
      throw new UsageError(`--key: ${keyPath}.pub exists but ${keyPath} does not; pass another --key or remove the stray .pub`);
    }
    return { exists: false };
  }
  if (!st.isFile()) throw new UsageError(`--key: ${keyPath} is not a file`);
  if (st.uid !== buildUid) {
    throw new UsageError(`--key: ${keyPath} is owned by uid ${st.uid}, not the build user (uid ${buildUid}); ssh would refuse it`);
  }
  if ((st.mode & 0o077) !== 0) {
    // ssh: "Permissions 0644 for '...' are too open. ... This private key will be ignored."
    throw new UsageError(`--key: ${keyPath} has mode ${(st.mode & 0o777).toString(8)}, and ssh ignores a private key others can read; run: chmod 600 ${keyPath}`);
  }
  // -P '' tries the empty passphrase; a key with a passphrase fails here.
  const r = await exec('ssh-keygen', ['-y', '-P', '', '-f', keyPath]);
  if (r.exitCode !== 0) {
    if (/passphrase/i.test(r.stderr)) {
      throw new UsageError(
        `--key: ${keyPath} has a passphrase, and the nix-daemon has no terminal or agent to unlock it; ` +
          'pass another --key (nixremote makes a new one without a passphrase if the file does not exist)',
      );
    }
    throw new UsageError(`--key: ssh-keygen cannot read ${keyPath}: ${r.stderr.trim()}`);
  }
  const key = parseKeyLine(r.stdout.trim());
  if (!key) throw new UsageError(`--key: ${keyPath} is not an ssh private key`);
  return { exists: true, publicLine: r.stdout.trim(), key };
}

export function keygenArgs(keyPath: string, comment: string): string[] {
  return ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', keyPath];
}
