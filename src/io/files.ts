// Local file writes. Every write is atomic: the new content goes to a temporary file in
// the same directory, is flushed to disk, gets the old file's mode and owner, and is
// renamed over the old one, so a reader (or a crash) sees the old file or the new one,
// never a mix. The previous content is kept beside it as a backup.
import * as fs from 'node:fs';
import * as path from 'node:path';

export function readText(p: string): string | null {
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

function stamp(d = new Date()): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

export function backupPathFor(p: string): string {
  return `${p}.nixremote-${stamp()}.bak`;
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
    backup = backupPathFor(p);
    fs.copyFileSync(p, backup);
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
