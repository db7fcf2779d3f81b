// `nixremote remove NAME`: take away what nixremote wrote for one builder, as a plan with
// diffs, confirmed like init's, applied atomically with backups and rolled back on failure.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { exec } from '../io/exec.js';
import { readText } from '../io/files.js';
import { lockBuildUserFiles, lockPathFor } from '../io/lock.js';
import { makeOutput, type Output } from '../io/output.js';
import { detectInstall } from '../init/install.js';
import { applyPlan, renderPlan, type Step } from '../plan/plan.js';
import { planReporter } from '../plan/reporter.js';
import { readRegistry, type BuilderEntry } from '../builders/registry.js';
import { realRegistryCtx } from '../builders/context.js';
import { leftInPlace, removable, removalWrites, takesEffect } from '../builders/removal.js';
import { asShCommand, REMOVE_KEY_SCRIPT } from '../remote/scripts.js';
import { sshAsNix } from '../ssh/system-ssh.js';
import { diagnose } from '../path/catalogue.js';
import { UsageError } from '../validate.js';

export interface RemoveFlags {
  onBuilder?: boolean;
  dryRun?: boolean;
  yes?: boolean;
  module?: string;
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
    const steps: Step[] = [];
    if (flags.onBuilder) steps.push(removeKeyOnBuilder(b, out));
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
