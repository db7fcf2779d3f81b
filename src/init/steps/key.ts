// Step 3. The ssh key the build user's ssh (and so Nix) uses for the builder. It must have
// no passphrase: the daemon has no terminal to ask on and no agent to ask.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { shellQuote, type Exec } from '../../io/exec.js';
import { StepFailed, type RunStep } from '../../plan/plan.js';
import { parseKeyLine, type HostKey } from '../../ssh/host-key.js';
import { UsageError, validateKeyPath } from '../../validate.js';
import type { WizardCtx } from './context.js';

export type KeyState = { exists: false } | { exists: true; publicLine: string; key: HostKey };

export async function inspectKey(exec: Exec, keyPath: string, buildUid: number): Promise<KeyState> {
  let st: fs.Stats;
  try {
    st = fs.statSync(keyPath);
  } catch {
    if (fs.existsSync(`${keyPath}.pub`)) {
      throw new UsageError(
        `--key: ${keyPath}.pub exists but ${keyPath} does not; pass another --key or remove the stray .pub`,
      );
    }
    return { exists: false };
  }
  if (!st.isFile()) throw new UsageError(`--key: ${keyPath} is not a file`);
  if (st.uid !== buildUid) {
    throw new UsageError(
      `--key: ${keyPath} is owned by uid ${st.uid}, not the build user (uid ${buildUid}); ssh would refuse it`,
    );
  }
  if ((st.mode & 0o077) !== 0) {
    // ssh: "Permissions 0644 for '...' are too open. ... This private key will be ignored."
    throw new UsageError(
      `--key: ${keyPath} has mode ${(st.mode & 0o777).toString(8)}, and ssh ignores a private key others can read; run: chmod 600 ${keyPath}`,
    );
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

export async function askKey(c: WizardCtx): Promise<{ keyPath: string; key: KeyState }> {
  const keyPath = await c.answers.text({
    flag: '--key',
    value: c.flags.key,
    message: 'SSH key for the builder (made if missing):',
    default: path.join(c.sshDir, 'nix_remote'),
    parse: (v, f) => validateKeyPath(v.replace(/^~(?=\/)/, c.home), f),
  });
  const key = await inspectKey(c.exec, keyPath, c.install.user.uid);
  c.out.step(
    key.exists
      ? `Key ${keyPath} exists and has no passphrase: reusing it`
      : `Key ${keyPath} will be made (ed25519, no passphrase)`,
  );
  return { keyPath, key };
}

export function keygenStep(exec: Exec, keyPath: string): RunStep {
  const comment = `nixremote@${os.hostname()}`;
  return {
    kind: 'keygen',
    title: `Make the key ${keyPath}`,
    detail: `ssh-keygen ${keygenArgs(keyPath, comment).map(shellQuote).join(' ')}`,
    run: async () => {
      // ssh-keygen writes in place; make the pair beside the target and rename it in,
      // public half first, so the key is there whole or not at all.
      const dir = path.dirname(keyPath);
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const tmp = fs.mkdtempSync(path.join(dir, '.nixremote-key-'));
      try {
        const r = await exec('ssh-keygen', keygenArgs(path.join(tmp, 'key'), comment));
        if (r.exitCode !== 0) throw new StepFailed('keygen', `ssh-keygen failed: ${r.stderr.trim()}`);
        fs.chmodSync(path.join(tmp, 'key'), 0o600);
        fs.renameSync(path.join(tmp, 'key.pub'), `${keyPath}.pub`);
        fs.renameSync(path.join(tmp, 'key'), keyPath);
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    },
  };
}
