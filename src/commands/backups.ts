// `nixremote backups` and `nixremote restore`: every file nixremote changes keeps its
// previous content beside it (FILE.nixremote-<stamp>.bak, the newest few; see
// src/io/files.ts). `backups` lists them with the command that puts one back; `restore`
// shows the diff, asks, and writes it back through writeAtomic, so the content it replaces
// becomes a backup in turn and a restore can itself be undone.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { shellQuote } from '../io/exec.js';
import { listBackups, parseBackupPath, readText } from '../io/files.js';
import { applyPlan, editFile, renderPlan, type WriteStep } from '../plan/plan.js';
import { lockBuildUserFiles, lockPathFor } from '../io/lock.js';
import { makeOutput } from '../io/output.js';
import { UsageError } from '../validate.js';
import { detectInstall, type Install } from '../init/install.js';
import { detectTarget, nixremoteFiles, realTargetCtx, type TargetCtx } from '../targets/index.js';

/** What the commands talk to; tests replace it, the CLI uses the defaults. */
export interface BackupsIo {
  /** Where the human-readable output goes (default: stdout). */
  stream?: NodeJS.WriteStream;
  /** Whether a question can be asked (default: stdin and stdout are terminals). */
  interactive?: boolean;
  confirm?: (message: string) => Promise<boolean>;
  /** The lock `init` takes, so a restore never interleaves with an apply. */
  lockPath?: string;
}

export interface BackupEntry {
  file: string;
  backup: string;
  /** ISO 8601, UTC, from the stamp in the name. */
  time: string;
  bytes: number;
}

/**
 * The files nixremote edits for the user running it, when no FILE is named: what this
 * machine's target says it writes (src/targets), in the config directory this user's Nix
 * reads (a single-user install's ~/.config/nix), with the build user's ssh files.
 */
export function defaultBackupFiles(
  install: Pick<Install, 'confDir' | 'user'> = detectInstall(),
  ctx: TargetCtx = realTargetCtx(install.confDir),
): string[] {
  // OpenSSH takes home from the passwd entry, not $HOME; so does init (detectInstall).
  return nixremoteFiles(detectTarget(ctx).target, ctx, install.user.home);
}

/** Backups of each file, newest first; files in the order given. */
export function collectBackups(files: string[], onError: (file: string, e: Error) => void = () => {}): BackupEntry[] {
  const out: BackupEntry[] = [];
  for (const f of files) {
    let found: string[];
    try {
      found = listBackups(f);
    } catch (e) {
      onError(f, e as Error);
      continue;
    }
    for (const b of found.reverse()) {
      const name = parseBackupPath(b)!;
      let bytes: number;
      try {
        bytes = fs.statSync(b).size;
      } catch {
        continue; // pruned by another run since the directory was read
      }
      out.push({ file: f, backup: b, time: new Date(name.time).toISOString(), bytes });
    }
  }
  return out;
}

const restoreCmd = (b: string) => `nixremote restore ${shellQuote(b)}`;
const shownTime = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$/, ' UTC');

export async function backupsCommand(files: string[], flags: { json?: boolean }, io: BackupsIo = {}): Promise<number> {
  const list = (files.length ? files : defaultBackupFiles()).map((f) => path.resolve(f));
  const stream = io.stream ?? process.stdout;
  // With --json stdout holds the document and nothing else; warnings go to stderr.
  const out = makeOutput(flags.json ? process.stderr : stream);
  const entries = collectBackups(list, (f, e) => {
    const code = (e as NodeJS.ErrnoException).code;
    out.warn(
      `cannot list the backups of ${f}: ${code === 'EACCES' ? `no permission to read ${path.dirname(f)} (try sudo)` : e.message}`,
    );
  });
  if (flags.json) {
    stream.write(JSON.stringify({ backups: entries }, null, 2) + '\n');
    return 0;
  }
  if (!entries.length) {
    out.info(`No nixremote backups of ${list.join(', ')}.`);
    return 0;
  }
  for (const f of list) {
    const mine = entries.filter((e) => e.file === f);
    if (!mine.length) continue;
    out.info(out.bold(f));
    for (const e of mine) {
      out.info(`  ${shownTime(e.time)}  ${String(e.bytes).padStart(7)} bytes  ${e.backup}`);
      out.info(`    ${out.dim('restore:')} ${restoreCmd(e.backup)}`);
    }
  }
  const none = list.filter((f) => !entries.some((e) => e.file === f));
  if (none.length) out.info(out.dim(`No backups of ${none.join(', ')}.`));
  return 0;
}

export async function restoreCommand(
  backup: string,
  flags: { yes?: boolean; dryRun?: boolean },
  io: BackupsIo = {},
): Promise<number> {
  const b = path.resolve(backup);
  const name = parseBackupPath(b);
  if (!name)
    throw new UsageError(
      `${backup} is not a nixremote backup: expected FILE.nixremote-<stamp>.bak (see nixremote backups)`,
    );
  let st: fs.Stats;
  try {
    st = fs.lstatSync(b);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new UsageError(`${backup}: no such backup (see nixremote backups ${shellQuote(name.file)})`);
    throw e;
  }
  // nixremote's backups are regular files; following a link would restore whatever it points at.
  if (!st.isFile()) throw new UsageError(`${backup} is not a regular file, so not a backup nixremote made`);
  const file = name.file;
  const content = fs.readFileSync(b, 'utf8');
  const current = readText(file);
  const out = makeOutput(io.stream ?? process.stdout);
  if (current === content) {
    out.ok(`${file} already holds the content of ${b}; nothing to do`);
    return 0;
  }

  // A plan like every other change: its diff, the lock, a write that refuses an edit made
  // since the diff was shown, the replaced content kept as a backup. An existing file keeps
  // its own mode and owner (writeAtomic); a file that is gone comes back with its backup's.
  const step: WriteStep = {
    ...editFile(
      current === null ? `Restore ${file} (it does not exist now) from ${b}` : `Restore ${file} from ${b}`,
      file,
      current,
      content,
      { mode: st.mode & 0o7777 },
    ),
    uid: st.uid,
    gid: st.gid,
  };
  out.raw(`${renderPlan([step]).trimEnd()}\n`);
  if (flags.dryRun) {
    out.info('Dry run: nothing was changed.');
    return 0;
  }
  if (!flags.yes) {
    const interactive = io.interactive ?? Boolean(process.stdin.isTTY && process.stdout.isTTY);
    if (!interactive)
      throw new UsageError(`restoring ${file} needs a confirmation and there is no terminal to ask on; pass --yes`);
    const confirm =
      io.confirm ??
      (async (message: string) => {
        const { confirm } = await import('@inquirer/prompts');
        return confirm({ message, default: false });
      });
    if (!(await confirm(`Replace ${file} with this backup?`))) {
      out.info('Not restored; nothing was changed.');
      return 0;
    }
  }

  const release = await lockBuildUserFiles(io.lockPath ?? lockPathFor(os.userInfo().homedir), out);
  let saved: string | null = null;
  try {
    await applyPlan([step], {
      reporter: {
        start: () => {},
        done: (_s, _r, backup) => {
          saved = backup ?? null;
        },
      },
    });
  } finally {
    release();
  }
  out.ok(`restored ${file} from ${b}`);
  if (saved) out.info(`Its previous content is kept in ${saved}; to undo: ${restoreCmd(saved)}`);
  // Making that backup can prune the oldest ones, the one restored from included: its
  // content is the file's now, so nothing is lost.
  if (!fs.existsSync(b))
    out.info(out.dim(`${b} was the oldest backup and has been pruned; its content is now in ${file}.`));
  return 0;
}
