// Step 6. Getting the key onto the builder, and a session to look at the builder with
// before anything changes: the key itself if it already gets in, else the password (by
// ssh2), else the user's own ssh access, else nothing until the key is there.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Exec } from '../../io/exec.js';
import { openSession, type Session, type Target } from '../../io/ssh2-session.js';
import { keyLine, type HostKey } from '../../ssh/host-key.js';
import { StepFailed, type RunStep } from '../../plan/plan.js';
import { APPEND_KEY_SCRIPT, SET_KEY_SCRIPT, asShCommand } from '../../remote/scripts.js';
import type { BuilderAnswers } from './builder.js';
import type { WizardCtx } from './context.js';
import type { KeyState } from './key.js';

export type CopyMode = 'password' | 'ssh' | 'manual' | 'skip';

export interface Access {
  target: Target;
  /** An open ssh2 session (key or password), or null. */
  session: Session | null;
  mode: CopyMode | 'already';
  /** The password it logged in with, kept in memory for sudo there (--builder-sudo); never written. */
  password?: string;
}

export async function getAccess(
  c: WizardCtx,
  b: BuilderAnswers,
  keyPath: string,
  key: KeyState,
  hostKey: HostKey,
): Promise<Access> {
  const { out, answers, flags } = c;
  const target: Target = { host: b.host, port: b.port, user: b.user };
  // --copy-key password logs in with the password even when the key gets in: a key whose
  // line has a forced command cannot run the scripts that would rewrite that line. So does
  // --builder-sudo, which needs a shell there and the password for sudo.
  if (key.exists && flags.copyKey !== 'password' && !flags.builderSudo) {
    let forced = false;
    try {
      const session = await openSession(target, { privateKey: fs.readFileSync(keyPath, 'utf8') }, hostKey);
      // A key that can only speak Nix (a forced command) shows the builder nothing: with the
      // password at hand, init logs in with it instead, to see the builder and set the key's line.
      forced = !/NIXREMOTE:shell/.test((await session.run('echo NIXREMOTE:shell')).stdout);
      if (!forced || !(flags.passwordStdin || (await answers.canAsk()))) {
        out.ok(`The key already gets in as ${b.user}@${b.host}: no copy needed`);
        if (flags.copyKey) answers.note('--copy-key', flags.copyKey);
        return { target, session, mode: 'already' };
      }
      session.close();
      out.ok(`The key gets in, but can only speak Nix there: logging in with the password to look at ${b.name}`);
    } catch (e) {
      if ((e as { kind?: string }).kind !== 'auth') throw e;
    }
    if (forced) return passwordAccess(c, b, target, hostKey, 'password');
  }
  const mode = await answers.choose<CopyMode>({
    flag: '--copy-key',
    value: flags.copyKey,
    message: `How should the key get onto ${b.user}@${b.host}?`,
    default: 'password',
    choices: [
      { name: 'Log in with the password once and add it (ssh2)', value: 'password' },
      { name: 'Use my existing ssh access (system ssh)', value: 'ssh' },
      { name: 'Show me the line; I add it myself', value: 'manual' },
      { name: 'Skip: it is already there some other way', value: 'skip' },
    ],
  });
  if (mode !== 'password') return { target, session: null, mode };
  return passwordAccess(c, b, target, hostKey, mode);
}

async function passwordAccess(
  c: WizardCtx,
  b: BuilderAnswers,
  target: Target,
  hostKey: HostKey,
  mode: CopyMode,
): Promise<Access> {
  const { out, answers, flags } = c;
  for (let tries = 1; ; tries++) {
    const password = await answers.password({
      flag: '--password-stdin',
      fromStdin: () => (flags.passwordStdin ? c.readStdin() : null),
      message: `Password for ${b.user}@${b.host} (used once, never stored):`,
    });
    out.step(`Logging in to ${b.user}@${b.host} with the password`);
    try {
      return { target, session: await openSession(target, { password }, hostKey), mode, password };
    } catch (e) {
      // A mistyped password is asked again on a terminal; piped in, it is final. Three
      // tries, as sshd allows per connection, and each try costs the builder one failed
      // login (sshd 9.8+ penalises an address for a run of them).
      if ((e as { kind?: string }).kind !== 'auth' || flags.passwordStdin || tries >= 3 || !(await answers.canAsk()))
        throw e;
      out.fail(`${(e as Error).message}; try again`);
    }
  }
}

/** The step that puts the public key into the builder's authorized_keys, if any. */
export function copyKeyStep(
  c: WizardCtx,
  b: BuilderAnswers,
  a: Access,
  keyPath: string,
  key: KeyState,
  hostKey: HostKey,
  /** The forced command (--restrict-to-nix), and whether one answers for the key already. */
  forced: { command: string | null; already: boolean } = { command: null, already: false },
): RunStep | null {
  const restrict = c.flags.restrict;
  if (!restrict) c.answers.note('--no-restrict', true);
  const publicLine = () => (key.exists ? key.publicLine : fs.readFileSync(`${keyPath}.pub`, 'utf8').trim());
  // Nix needs no terminal, forwarding or X11 on the builder; with a forced command the key
  // runs only Nix's own program. authorized_keys options are comma-separated, no blanks.
  const options = [...(restrict ? ['restrict'] : []), ...(forced.command ? [`command="${forced.command}"`] : [])];
  const authLine = () => `${options.length ? `${options.join(',')} ` : ''}${publicLine()}`;
  // A forced command is set exactly (replacing the key's line where it stands); a plain key is appended once.
  const script = forced.command ? SET_KEY_SCRIPT : APPEND_KEY_SCRIPT;
  const how = forced.command
    ? `the key's line set to run only ${forced.command} (replaced where it stands, or appended)`
    : 'appends only if the key is not there';
  const through =
    a.mode === 'password' || a.mode === 'ssh'
      ? a.mode
      : // The key's own session can set its line, unless a forced command answers it already.
        a.mode === 'already' && forced.command && a.session && !forced.already
        ? 'already'
        : null;
  if (through) {
    return {
      kind: 'remote',
      title: `${through === 'already' ? 'Restrict' : 'Add'} the key ${through === 'already' ? 'on' : 'to'} ${b.user}@${b.host}:~/.ssh/authorized_keys${options.length ? ` (${options.map((o) => o.replace(/=.*/, '')).join(', ')})` : ''}`,
      detail: `creates ~/.ssh (0700) and authorized_keys (0600) if missing; ${how} (${a.mode === 'ssh' ? 'system ssh' : a.mode === 'already' ? 'ssh2, the key' : 'ssh2, password'})`,
      run: async () => {
        const input = authLine() + '\n';
        const r = a.session
          ? await a.session.run(asShCommand(script), input)
          : await sshWithPinnedKey(c.exec, a.target, b.name, hostKey, [asShCommand(script)], input);
        if (r.exitCode !== 0 || !/NIXREMOTE:(added|present|replaced)/.test(r.stdout))
          throw new StepFailed(
            'copy',
            `adding the key on ${b.host} failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`,
          );
        return /NIXREMOTE:present/.test(r.stdout) ? 'already there' : /replaced/.test(r.stdout) ? 'replaced' : 'added';
      },
    };
  }
  if (a.mode !== 'manual') return null;
  return {
    kind: 'remote',
    title: `You add the key on ${b.user}@${b.host}`,
    detail: `the line is printed after the key exists; add it to ~${b.user}/.ssh/authorized_keys on the builder`,
    run: async () => {
      c.out.info(`\nAdd this line to ~/.ssh/authorized_keys of ${b.user} on ${b.host}:\n\n${authLine()}\n`);
      const keyGetsIn = async () => {
        try {
          (await openSession(a.target, { privateKey: fs.readFileSync(keyPath, 'utf8') }, hostKey)).close();
          return true;
        } catch {
          return false;
        }
      };
      if (c.answers.yes) {
        if (await keyGetsIn()) return 'the key gets in';
        throw new StepFailed(
          'copy',
          `the key does not get in yet; add the line above on ${b.host}, then re-run the same command`,
        );
      }
      for (;;) {
        await c.pause('Press Enter once the line is added');
        if (await keyGetsIn()) return 'the key gets in';
        c.out.warn('the key does not get in yet');
      }
    },
  };
}

/** The system's ssh with the user's own access, but only to a host showing the pinned key. */
export async function sshWithPinnedKey(
  exec: Exec,
  t: Target,
  name: string,
  hostKey: HostKey,
  command: string[],
  input?: string,
) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-'));
  try {
    const kh = path.join(dir, 'known_hosts');
    fs.writeFileSync(kh, `${name} ${keyLine(hostKey)}\n`);
    return await exec(
      'ssh',
      [
        '-o',
        `HostKeyAlias=${name}`,
        '-o',
        `UserKnownHostsFile=${kh}`,
        '-o',
        'StrictHostKeyChecking=yes',
        '-p',
        String(t.port),
        '-l',
        t.user,
        '--',
        t.host,
        ...command,
      ],
      { input, timeoutMs: 120_000 },
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
