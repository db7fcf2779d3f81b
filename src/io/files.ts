// Local file writes. Every write is atomic: the new content goes to a temporary file in
// the same directory, is flushed to disk, gets the old file's mode and owner, and is
// renamed over the old one, so a reader (or a crash) sees the old file or the new one,
// never a mix. The previous content is kept beside it as a backup, FILE.nixremote-<stamp>.bak,
// and only the newest KEEP_BACKUPS of those are kept, so repeated runs don't pile them up.
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Contents to read instead of the disk's, while `apply` plans one builder after another:
 * each plans against the files as the ones before it will leave them. Never set while a
 * plan is applied (applyPlan compares with the disk).
 */
let overlay: Map<string, string | null> | null = null;

export function setReadOverlay(o: Map<string, string | null> | null): void {
  overlay = o;
}

export function readText(p: string): string | null {
  if (overlay?.has(p)) return overlay.get(p)!;
  try {
    return fs.readFileSync(p, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

export function exists(p: string): boolean {
  return fs.existsSync(p);
}

export interface WriteOptions {
  /** Mode for a new file; an existing file keeps its own. */
  mode: number;
  /** Mode for directories that have to be created. */
  dirMode?: number;
  uid?: number;
  gid?: number;
  /** Keep the previous content beside the file (default true). */
  backup?: boolean;
}

/** How many backups of each file writeAtomic leaves; older ones are deleted. */
export const KEEP_BACKUPS = 3;

// UTC to the millisecond, 20261126T063000123Z: two writes in the same second still get
// different names, and the name says when the content was replaced.
function stamp(d: Date): string {
  return d.toISOString().replace(/[-:.]/g, '');
}

/** The backup name for `p` at `d`; `n` > 0 is the counter for a name already taken. */
export function backupPathFor(p: string, d = new Date(), n = 0): string {
  return `${p}.nixremote-${stamp(d)}${n > 0 ? `-${n}` : ''}.bak`;
}

// Before milliseconds were added the stamp was 20261126T063000Z; those names still count.
const BACKUP_SUFFIX = /^nixremote-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})?Z(?:-([1-9]\d*))?\.bak$/;

export interface BackupName {
  /** The file it is a backup of. */
  file: string;
  /** When it was made (ms since the epoch), from the stamp in its name. */
  time: number;
  /** 0, or the counter of a name made in the same millisecond as another. */
  n: number;
}

/**
 * What a backup path says: the file it belongs to and when it was made; null when the
 * name is not exactly FILE.nixremote-<stamp>[-N].bak with a real date in it.
 */
export function parseBackupPath(b: string): BackupName | null {
  const base = path.basename(b);
  const at = base.lastIndexOf('.nixremote-');
  if (at <= 0) return null;
  const m = BACKUP_SUFFIX.exec(base.slice(at + 1));
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  const ms = m[7] === undefined ? 0 : Number(m[7]);
  const time = Date.UTC(y, mo - 1, d, h, mi, s, ms);
  // Date.UTC rolls 20261331 over into the next year; a stamp nixremote wrote never does.
  const back = new Date(time);
  if (
    Number.isNaN(time) ||
    back.getUTCFullYear() !== y ||
    back.getUTCMonth() !== mo - 1 ||
    back.getUTCDate() !== d ||
    back.getUTCHours() !== h ||
    back.getUTCMinutes() !== mi ||
    back.getUTCSeconds() !== s
  )
    return null;
  return { file: path.join(path.dirname(b), base.slice(0, at)), time, n: m[8] === undefined ? 0 : Number(m[8]) };
}

/**
 * This file's backups, full paths, oldest first. Ordered by the time in the stamp, not by
 * the name: '...T063000Z' (old format) sorts after '...T063000999Z' as a string. Only
 * regular files named `${basename}.nixremote-<stamp>[-N].bak` in the same directory count.
 */
export function listBackups(p: string): string[] {
  const dir = path.dirname(p);
  const prefix = `${path.basename(p)}.nixremote-`;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw e;
  }
  const found: { path: string; b: BackupName }[] = [];
  for (const e of entries) {
    if (!e.isFile() || !e.name.startsWith(prefix)) continue;
    const full = path.join(dir, e.name);
    const b = parseBackupPath(full);
    // `config.nixremote-...bak` also starts with the prefix of a file named `config.nixremote`.
    if (b && b.file === path.join(dir, path.basename(p))) found.push({ path: full, b });
  }
  found.sort((x, y) => x.b.time - y.b.time || x.b.n - y.b.n || (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  return found.map((f) => f.path);
}

/** Delete all but the newest `keep` backups of `p`; returns the paths deleted. */
export function pruneBackups(p: string, keep = KEEP_BACKUPS): string[] {
  const all = listBackups(p);
  const old = all.slice(0, Math.max(0, all.length - Math.max(0, keep)));
  const deleted: string[] = [];
  for (const b of old) {
    try {
      fs.unlinkSync(b);
      deleted.push(b);
    } catch (e) {
      // Another nixremote pruning the same file got there first.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return deleted;
}

/** Copy `p` to a backup name nobody has taken; the exclusive copy never replaces a backup. */
function makeBackup(p: string): string {
  const now = new Date();
  for (let n = 0; ; n++) {
    const b = backupPathFor(p, now, n);
    try {
      fs.copyFileSync(p, b, fs.constants.COPYFILE_EXCL);
      return b;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}

/** Write `content` to `p` atomically; returns the backup path when there was a file before. */
export function writeAtomic(p: string, content: string, opts: WriteOptions): string | null {
  const dir = path.dirname(p);
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir, { recursive: true, mode: opts.dirMode ?? 0o755 });
    if (opts.uid !== undefined) fs.chownSync(dir, opts.uid, opts.gid ?? -1);
  }
  let st: fs.Stats | null = null;
  try {
    st = fs.statSync(p);
  } catch {
    st = null;
  }
  let backup: string | null = null;
  if (st && opts.backup !== false) {
    backup = makeBackup(p);
    fs.chmodSync(backup, st.mode & 0o7777);
  }
  const tmp = path.join(dir, `.${path.basename(p)}.nixremote-${process.pid}.tmp`);
  const fd = fs.openSync(tmp, 'w', st ? st.mode & 0o7777 : opts.mode);
  try {
    fs.writeSync(fd, content);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.chmodSync(tmp, st ? st.mode & 0o7777 : opts.mode);
    const uid = st ? st.uid : opts.uid;
    const gid = st ? st.gid : opts.gid;
    if (uid !== undefined && process.getuid?.() === 0) fs.chownSync(tmp, uid, gid ?? -1);
    fs.renameSync(tmp, p);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  syncDir(dir);
  if (backup) {
    try {
      pruneBackups(p);
    } catch {
      // The new content is in place and the newest backup exists; an old backup that
      // could not be deleted is only clutter, not a reason to report the write as failed.
    }
  }
  return backup;
}

/** Put a file back as it was before an apply: old content, or gone if it was new. */
export function restore(p: string, before: string | null, mode: number): void {
  if (before === null) fs.rmSync(p, { force: true });
  else writeAtomic(p, before, { mode, backup: false });
}

function syncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  }
}
