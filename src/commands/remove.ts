// `nixremote remove NAME`: take away what nixremote wrote for one builder, as a plan with
// diffs, confirmed like init's, applied atomically with backups and rolled back on failure.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { exec } from '../io/exec.js';
import { readText } from '../io/files.js';
import { lockBuildUserFiles, lockPathFor } from '../io/lock.js';
import { makeOutput, type Output } from '../io/output.js';
import { detectInstall } from '../init/install.js';
import { applyPlan, renderPlan, StepFailed, type Step } from '../plan/plan.js';
import { planReporter } from '../plan/reporter.js';
import { readRegistry, type BuilderEntry } from '../builders/registry.js';
import { realRegistryCtx } from '../builders/context.js';
import { leftInPlace, removable, removalWrites, takesEffect } from '../builders/removal.js';
import { asShCommand, REMOVE_KEY_SCRIPT, sudoTrustCommand } from '../remote/scripts.js';
import { openSession } from '../io/ssh2-session.js';
import { findKnownHost } from '../ssh/known-hosts.js';
import type { HostKey } from '../ssh/host-key.js';
import { signingKey } from '../nix/signing.js';
import { sshAsNix } from '../ssh/system-ssh.js';
import { diagnose } from '../path/catalogue.js';
import { UsageError } from '../validate.js';

export interface RemoveFlags {
  onBuilder?: boolean;
  dryRun?: boolean;
  yes?: boolean;
  module?: string;
  /** Log in to the builder with the password from stdin: a key that can only speak Nix cannot take itself out. */
  passwordStdin?: boolean;
  /** Also take this machine's signing key out of the builder's nix.conf, through sudo. */
  builderSudo?: boolean;
}

export async function removeCommand(name: string, flags: RemoveFlags): Promise<number> {
  const out = makeOutput();
  const install = detectInstall();
  if (install.multiUser && install.user.uid !== 0) {
    throw new UsageError(
      "on a multi-user install the builders live in root's ssh config and /etc/nix; re-run with sudo",
    );
  }
  const home = install.user.home;
  const release = flags.dryRun ? () => {} : await lockBuildUserFiles(lockPathFor(home), out);
  try {
    const reg = readRegistry(realRegistryCtx(install, flags.module));
    const b = removable(reg, name);
    if ((flags.builderSudo || flags.passwordStdin) && !flags.onBuilder)
      throw new UsageError('--builder-sudo and --password-stdin are for --on-builder: they log in to the builder');
    const steps: Step[] = [];
    if (flags.onBuilder && (flags.passwordStdin || flags.builderSudo))
      steps.push(removeOnBuilderByPassword(b, out, await builderPassword(b, flags), Boolean(flags.builderSudo), home));
    else if (flags.onBuilder) steps.push(removeKeyOnBuilder(b, out));
    steps.push(
      ...removalWrites(b, {
        read: readText,
        knownHosts: path.join(home, '.ssh', 'known_hosts'),
        owner: { uid: install.user.uid, gid: install.user.gid },
      }),
    );
    steps.push(takesEffect(b, readText));

    out.info(
      out.bold(
        flags.dryRun ? `Plan to remove ${b.name} (dry run: nothing will be changed):` : `Plan to remove ${b.name}:`,
      ),
    );
    out.info(renderPlan(steps));
    out.info('');
    const notes = leftInPlace(reg, b);
    if (!flags.onBuilder)
      notes.push(
        `this machine's key stays in ${b.user ?? 'the ssh user'}'s authorized_keys on ${b.name} (--on-builder removes it)`,
      );
    for (const n of notes) out.info(`  ${n}`);
    out.info('');
    if (flags.dryRun) {
      out.ok('Dry run: nothing was changed, locally or on the builder.');
      return 0;
    }
    if (!flags.yes) {
      if (!(process.stdin.isTTY && process.stdout.isTTY))
        throw new UsageError('removing needs a confirmation and there is no terminal to ask on: pass --yes');
      const { confirm } = await import('@inquirer/prompts');
      if (!(await confirm({ message: `Remove ${b.name}?`, default: false }))) {
        out.info('Nothing was changed.');
        return 0;
      }
    }
    await applyPlan(steps, {
      reporter: planReporter(out),
      stepDelayMs: Number(process.env.NIXREMOTE_TEST_STEP_DELAY_MS) || undefined,
    });
    out.info('');
    out.ok(out.bold(`${b.name} is removed.`));
    const left = reg.builders.filter((o) => o !== b && o.active).map((o) => o.name);
    out.info(`  builders left: ${left.join(', ') || 'none'}`);
    return 0;
  } finally {
    release();
  }
}

/**
 * This machine's key line off the builder's authorized_keys, over ssh as Nix reaches it.
 * A builder that cannot be reached is said, not fatal: the local part goes on.
 */
function removeKeyOnBuilder(b: BuilderEntry, out: Output): Step {
  return {
    kind: 'remote',
    title: `Remove this machine's key from ~${b.user ?? ''}/.ssh/authorized_keys on ${b.name}`,
    detail: b.keyPath
      ? `the line holding ${b.keyPath}.pub, under flock; nothing else there changes`
      : 'no key is named for this builder',
    run: async () => {
      const pub = b.keyPath ? publicKeyOf(b.keyPath) : null;
      if (!pub) {
        out.warn(
          `cannot tell which key to remove on ${b.name} (${b.keyPath ? `no ${b.keyPath}.pub` : 'no key named'}); remove it there by hand`,
        );
        return;
      }
      const r = await sshAsNix(exec, b.name, [asShCommand(REMOVE_KEY_SCRIPT)], 30_000, pub + '\n');
      const said = /NIXREMOTE:(removed=\d+|absent)/.exec(r.stdout)?.[1];
      if (r.exitCode === 0 && said)
        return said === 'absent'
          ? `the key was not in authorized_keys on ${b.name}`
          : `removed the key's line from authorized_keys on ${b.name}`;
      const why = diagnose(r, 'login', { name: b.name, user: b.user }, `ssh ${b.name}`, `ssh -v ${b.name} true`).cause;
      out.warn(
        `could not reach ${b.name} to remove the key (${why}); the local part goes on. On the builder, remove the line holding this key from ~${b.user ?? ''}/.ssh/authorized_keys: ${pub.split(/\s+/).slice(0, 2).join(' ')}`,
      );
    },
  };
}

function publicKeyOf(keyPath: string): string | null {
  try {
    return fs.readFileSync(`${keyPath}.pub`, 'utf8').trim().split('\n')[0] ?? null;
  } catch {
    return null;
  }
}

async function builderPassword(b: BuilderEntry, flags: RemoveFlags): Promise<string> {
  if (flags.passwordStdin) {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    const pw = Buffer.concat(chunks).toString('utf8').split('\n')[0] ?? '';
    if (!pw) throw new UsageError('--password-stdin: no password on standard input');
    return pw;
  }
  if (!(process.stdin.isTTY && process.stdout.isTTY))
    throw new UsageError(
      `--builder-sudo needs ${b.user ?? 'the ssh user'}'s password on ${b.name}: pipe it to --password-stdin`,
    );
  const { password } = await import('@inquirer/prompts');
  return password({ message: `Password for ${b.user ?? ''}@${b.name} (used once, never stored):` });
}

/** The builder's host key as init pinned it: on the machine line, or in known_hosts. */
function pinnedKey(b: BuilderEntry): HostKey | null {
  if (b.hostKey) return b.hostKey;
  if (b.pin?.where !== 'known_hosts') return null;
  return findKnownHost(readText(b.pin.file) ?? '', [b.pin.as])?.key ?? null;
}

/**
 * What init put on the builder, taken out over a password login (ssh2, the pinned host key):
 * this machine's key line (which a key restricted to Nix cannot take out itself), and with
 * --builder-sudo this machine's signing key from the builder's nix.conf, as root.
 */
function removeOnBuilderByPassword(b: BuilderEntry, out: Output, password: string, sudo: boolean, home: string): Step {
  const signing = signingKey(b.keyPath ?? path.join(home, '.ssh', 'nix_remote'));
  return {
    kind: 'remote',
    title: `On ${b.name}, by password: remove this machine's key from authorized_keys${sudo ? `, and (sudo) its signing key from the builder's nix.conf` : ''}`,
    detail: sudo
      ? `the key's line under flock; the nixremote block of extra-trusted-public-keys loses ${signing.name} (a backup beside it), and its nix-daemon is restarted where systemd or launchd runs it`
      : "the key's line under flock; nothing else there changes",
    run: async () => {
      const pub = b.keyPath ? publicKeyOf(b.keyPath) : null;
      const key = pinnedKey(b);
      if (!key) throw new StepFailed('remote', `no pinned host key for ${b.name}: cannot log in to it safely`);
      const session = await openSession(
        { host: b.hostName ?? b.name, port: b.port ?? 22, user: b.user ?? 'root' },
        { password },
        key,
      );
      try {
        const done: string[] = [];
        if (pub) {
          const r = await session.run(asShCommand(REMOVE_KEY_SCRIPT), `${pub}\n`);
          if (r.exitCode !== 0)
            throw new StepFailed('remote', `removing the key on ${b.name} failed: ${r.stderr.trim()}`);
          done.push(
            /NIXREMOTE:absent/.test(r.stdout) ? 'the key was not in authorized_keys' : "removed the key's line",
          );
        }
        const signed = readText(signing.public)?.trim();
        if (sudo && signed) {
          const r = await session.run(sudoTrustCommand(signed, 'remove'), `${password}\n`);
          const file = /^NIXREMOTE:(removed|absent)=(.*)$/m.exec(r.stdout);
          if (r.exitCode !== 0 || !file)
            throw new StepFailed(
              'remote',
              `sudo on ${b.name} failed (exit ${r.exitCode}): ${r.stderr.trim() || 'it printed nothing'}`,
            );
          done.push(
            file[1] === 'absent' ? `${signing.name} was not in ${file[2]}` : `took ${signing.name} out of ${file[2]}`,
          );
          if (!/NIXREMOTE:restarted=/.test(r.stdout))
            out.warn(`restart ${b.name}'s nix-daemon yourself so it reads ${file[2]}`);
        }
        return done.join('; ');
      } finally {
        session.close();
      }
    },
  };
}
