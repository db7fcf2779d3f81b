// One nixremote at a time per build user: both edit the same ssh and Nix files, and a
// plan made from files another run is rewriting would clobber its work. The lock is a
// file created exclusively, holding the owner's pid; a lock whose process is gone (the
// owner was killed) is taken over.
import * as fs from 'node:fs';

export class LockBusy extends Error {}

interface Owner {
  pid: number;
  started: string;
  command: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readOwner(p: string): Owner | null {
  try {
    return JSON.parse(fs.readFileSync(p, 'utf8')) as Owner;
  } catch {
    return null;
  }
}

/** Take the lock, waiting up to `waitMs`; returns the function that releases it. */
export async function acquireLock(p: string, waitMs: number, onWait: (o: Owner) => void): Promise<() => void> {
  const me: Owner = {
    pid: process.pid,
    started: new Date().toISOString(),
    command: process.argv.slice(2, 3).join(' '),
  };
  const deadline = Date.now() + waitMs;
  let told = false;
  for (;;) {
    try {
      const fd = fs.openSync(p, 'wx', 0o600);
      fs.writeSync(fd, JSON.stringify(me));
      fs.closeSync(fd);
      const release = () => {
        if (readOwner(p)?.pid === process.pid) fs.rmSync(p, { force: true });
        process.off('exit', release);
      };
      process.on('exit', release);
      return release;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const owner = readOwner(p);
    if (owner && !alive(owner.pid)) {
      // Killed while holding it: nothing else will ever remove it.
      fs.rmSync(p, { force: true });
      continue;
    }
    if (Date.now() >= deadline) {
      const who = owner
        ? `pid ${owner.pid}, nixremote ${owner.command}, since ${owner.started}`
        : 'a process that is still starting';
      throw new LockBusy(
        `another nixremote is changing these files (${who}; lock ${p}); wait for it to finish, then re-run`,
      );
    }
    if (owner && !told) {
      onWait(owner);
      told = true;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The lock every nixremote run that changes files takes: ~/.nixremote.lock of the build user. */
export function lockPathFor(home: string): string {
  return `${home.replace(/\/$/, '')}/.nixremote.lock`;
}

/** Take the build user's lock, saying so while another run holds it (NIXREMOTE_LOCK_WAIT_MS: test knob). */
export function lockBuildUserFiles(lockPath: string, out: { step(msg: string): void }): Promise<() => void> {
  const wait = Number(process.env.NIXREMOTE_LOCK_WAIT_MS ?? 10_000);
  return acquireLock(lockPath, wait, (o) => out.step(`Waiting for another nixremote (pid ${o.pid}) to finish`));
}
