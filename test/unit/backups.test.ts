// Backups beside changed files: unique sortable names, pruning to the newest few without
// touching look-alikes, and `nixremote backups` / `nixremote restore`, on a temporary directory.
import { describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  backupPathFor,
  KEEP_BACKUPS,
  listBackups,
  parseBackupPath,
  pruneBackups,
  writeAtomic,
} from '../../src/io/files.js';
import { backupsCommand, defaultBackupFiles, restoreCommand, type BackupsIo } from '../../src/commands/backups.js';
import { UsageError } from '../../src/validate.js';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-backups-'));

/** Everything in a directory with its content, to show nothing changed. */
function snapshot(d: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const f of fs.readdirSync(d).sort()) r[f] = fs.readFileSync(path.join(d, f), 'utf8');
  return r;
}

/** An output stream that keeps what is written; never a terminal. */
function capture(): { io: BackupsIo; text: () => string } {
  const chunks: string[] = [];
  const stream = {
    isTTY: false,
    write: (s: string) => {
      chunks.push(String(s));
      return true;
    },
  } as unknown as NodeJS.WriteStream;
  return { io: { stream, interactive: false, lockPath: path.join(tmp(), 'lock') }, text: () => chunks.join('') };
}

describe('backup names', () => {
  test('new names carry milliseconds and parse back to the same time', () => {
    const d = new Date(Date.UTC(2026, 10, 26, 6, 30, 0, 123));
    const b = backupPathFor('/etc/nix/nix.conf', d);
    assert.equal(b, '/etc/nix/nix.conf.nixremote-20261126T063000123Z.bak');
    assert.deepEqual(parseBackupPath(b), { file: '/etc/nix/nix.conf', time: d.getTime(), n: 0 });
    assert.equal(backupPathFor('/x/f', d, 2), '/x/f.nixremote-20261126T063000123Z-2.bak');
    assert.deepEqual(parseBackupPath('/x/f.nixremote-20261126T063000Z.bak'), {
      file: '/x/f',
      time: Date.UTC(2026, 10, 26, 6, 30, 0),
      n: 0,
    });
  });
  test('names that are not backups are refused', () => {
    for (const b of [
      '/x/f.nixremote-notastamp.bak',
      '/x/f.nixremote-20261326T063000Z.bak',
      '/x/f.nixremote-20261126T063000Z.bak.orig',
      '/x/f.nixremote-20261126T0630Z.bak',
      '/x/.nixremote-20261126T063000Z.bak',
      '/x/f.nixremote-20261126T063000Z-0.bak',
    ]) {
      assert.equal(parseBackupPath(b), null, b);
    }
  });
});

describe('pruning', () => {
  test('six writes leave the newest three backups, holding the three most recent previous contents', () => {
    const d = tmp();
    const f = path.join(d, 'config');
    fs.writeFileSync(f, 'v0\n', { mode: 0o600 });
    const made: string[] = [];
    for (let i = 1; i <= 6; i++) made.push(writeAtomic(f, `v${i}\n`, { mode: 0o644 })!);
    assert.equal(new Set(made).size, 6, 'every write made a backup with its own name, even in the same millisecond');
    assert.equal(fs.readFileSync(f, 'utf8'), 'v6\n');
    const left = listBackups(f);
    assert.equal(left.length, KEEP_BACKUPS);
    assert.deepEqual(left, made.slice(3), 'the last three made are the ones kept, oldest first');
    assert.deepEqual(
      left.map((b) => fs.readFileSync(b, 'utf8')),
      ['v3\n', 'v4\n', 'v5\n'],
    );
    assert.equal(fs.statSync(left[0]!).mode & 0o777, 0o600, 'a backup has the mode of the file it copies');
    assert.deepEqual(
      fs
        .readdirSync(d)
        .filter((n) => n.endsWith('.bak'))
        .sort(),
      left.map((b) => path.basename(b)).sort(),
      'no other backup is left',
    );
  });

  test('writes in the same millisecond get a counter and never overwrite a backup', () => {
    const d = tmp();
    const f = path.join(d, 'config');
    fs.writeFileSync(f, 'v0\n');
    mock.timers.enable({ apis: ['Date'], now: Date.UTC(2026, 10, 26, 6, 30, 0, 123) });
    try {
      const made = [1, 2, 3].map((i) => path.basename(writeAtomic(f, `v${i}\n`, { mode: 0o644 })!));
      assert.deepEqual(made, [
        'config.nixremote-20261126T063000123Z.bak',
        'config.nixremote-20261126T063000123Z-1.bak',
        'config.nixremote-20261126T063000123Z-2.bak',
      ]);
      assert.deepEqual(
        listBackups(f).map((b) => fs.readFileSync(b, 'utf8')),
        ['v0\n', 'v1\n', 'v2\n'],
      );
    } finally {
      mock.timers.reset();
    }
  });

  test('an old-format name sorts before a new-format one made later, although it sorts after it as a string', () => {
    const d = tmp();
    const f = path.join(d, 'nix.conf');
    const older = `${f}.nixremote-20261126T063005Z.bak`; // 06:30:05.000
    const newer = `${f}.nixremote-20261126T063005500Z.bak`; // 06:30:05.500
    const newest = `${f}.nixremote-20261126T063005500Z-1.bak`; // same millisecond, second one
    const oldest = `${f}.nixremote-20261126T063004999Z.bak`;
    assert.ok(older > newer, 'the string order is the wrong one');
    for (const b of [newest, older, newer, oldest]) fs.writeFileSync(b, path.basename(b));
    assert.deepEqual(listBackups(f), [oldest, older, newer, newest]);
    assert.deepEqual(pruneBackups(f, 2), [oldest, older]);
    assert.deepEqual(listBackups(f), [newer, newest]);
  });

  test('look-alikes that are not backups of this file are never deleted', () => {
    const d = tmp();
    const f = path.join(d, 'config');
    fs.writeFileSync(f, 'x');
    const others = [
      'config.nixremote-notastamp.bak',
      'config2.nixremote-20200101T000000Z.bak',
      'xconfig.nixremote-20200101T000000Z.bak',
      'config.nixremote-20200101T000000Z.bak.keep',
      'config.nixremote-20200101T000000Z.bak.nixremote-20200101T000000Z.bak',
      'config.nixremote-20201301T000000Z.bak',
      'config.orig',
    ];
    for (const o of others) fs.writeFileSync(path.join(d, o), o);
    fs.mkdirSync(path.join(d, 'config.nixremote-20200101T000001Z.bak')); // a directory, not ours
    fs.symlinkSync(f, path.join(d, 'config.nixremote-20200101T000002Z.bak')); // a link, not ours
    for (let i = 0; i < 5; i++) writeAtomic(f, `w${i}`, { mode: 0o644 });
    assert.equal(listBackups(f).length, 3);
    assert.deepEqual(pruneBackups(f, 0).length, 3);
    assert.deepEqual(listBackups(f), []);
    for (const o of others) assert.equal(fs.readFileSync(path.join(d, o), 'utf8'), o, `${o} is untouched`);
    assert.ok(fs.statSync(path.join(d, 'config.nixremote-20200101T000001Z.bak')).isDirectory());
    assert.ok(fs.lstatSync(path.join(d, 'config.nixremote-20200101T000002Z.bak')).isSymbolicLink());
  });

  test('a write with backup: false (the rollback) neither makes nor prunes backups', () => {
    const d = tmp();
    const f = path.join(d, 'm');
    fs.writeFileSync(f, 'a');
    for (const s of ['20200101T000000Z', '20200101T000001Z', '20200101T000002Z', '20200101T000003Z'])
      fs.writeFileSync(`${f}.nixremote-${s}.bak`, s);
    assert.equal(writeAtomic(f, 'b', { mode: 0o644, backup: false }), null);
    assert.equal(listBackups(f).length, 4);
  });
});

describe('nixremote backups', () => {
  test('--json lists each backup, newest first, with its time and size', async () => {
    const d = tmp();
    const f = path.join(d, 'known_hosts');
    const g = path.join(d, 'none');
    fs.writeFileSync(`${f}.nixremote-20260101T000000Z.bak`, 'old');
    fs.writeFileSync(`${f}.nixremote-20260102T000000123Z.bak`, 'newer!');
    const c = capture();
    assert.equal(await backupsCommand([f, g], { json: true }, c.io), 0);
    assert.deepEqual(JSON.parse(c.text()), {
      backups: [
        { file: f, backup: `${f}.nixremote-20260102T000000123Z.bak`, time: '2026-01-02T00:00:00.123Z', bytes: 6 },
        { file: f, backup: `${f}.nixremote-20260101T000000Z.bak`, time: '2026-01-01T00:00:00.000Z', bytes: 3 },
      ],
    });
  });
  test('the text output gives the restore command for each backup', async () => {
    const d = tmp();
    const f = path.join(d, 'my config');
    fs.writeFileSync(`${f}.nixremote-20260101T000000Z.bak`, 'old');
    const c = capture();
    assert.equal(await backupsCommand([f], {}, c.io), 0);
    assert.match(c.text(), /2026-01-01 00:00:00 UTC/);
    assert.ok(c.text().includes(`nixremote restore '${f}.nixremote-20260101T000000Z.bak'`), c.text());
  });
  // What each target says it writes (src/targets), on fixtures of each kind of machine.
  const fixture = (files: Record<string, string>, platform: string, confDir: string) => ({
    exists: (p: string) => p in files,
    read: (p: string) => files[p] ?? null,
    platform,
    confDir,
  });
  const root = { name: 'root', uid: 0, gid: 0, home: '/var/root' };
  test('the default files: a Determinate Mac, nix.custom.conf and never nix.conf', () => {
    const ctx = fixture({ '/etc/nix/nix.conf': '# DETERMINATE NIX CONFIG\n' }, 'darwin', '/etc/nix');
    assert.deepEqual(defaultBackupFiles({ confDir: '/etc/nix', user: root }, ctx), [
      '/var/root/.ssh/config',
      '/var/root/.ssh/known_hosts',
      '/etc/nix/machines',
      '/etc/nix/nix.custom.conf',
      '/Library/LaunchDaemons/org.nixremote.keep.plist',
    ]);
  });
  test("the default files: nix-darwin, its module, and the keeper's live machines file", () => {
    const ctx = fixture({ '/run/current-system/darwin-version': '25.05' }, 'darwin', '/etc/nix');
    assert.deepEqual(defaultBackupFiles({ confDir: '/etc/nix', user: root }, ctx), [
      '/var/root/.ssh/config',
      '/var/root/.ssh/known_hosts',
      '/etc/nix-darwin/nixremote.nix',
      '/Library/LaunchDaemons/org.nixremote.keep.plist',
      '/var/db/nixremote/machines',
    ]);
  });
  test("the default files: a single-user Linux install, the user's ~/.config/nix", () => {
    const me = { name: 'u', uid: 1000, gid: 1000, home: '/home/u' };
    const ctx = fixture({ '/etc/nixos/nixremote.nix': '# Generated by nixremote' }, 'linux', '/home/u/.config/nix');
    assert.deepEqual(defaultBackupFiles({ confDir: '/home/u/.config/nix', user: me }, ctx), [
      '/home/u/.ssh/config',
      '/home/u/.ssh/known_hosts',
      '/home/u/.config/nix/machines',
      '/home/u/.config/nix/nix.conf',
      '/etc/nixos/nixremote.nix',
      '/etc/systemd/system/nixremote-keep.service',
      '/etc/systemd/system/nixremote-keep.timer',
    ]);
  });
});

describe('nixremote restore', () => {
  test('--yes puts the backup back and keeps the replaced content as a backup', async () => {
    const d = tmp();
    const f = path.join(d, 'nix.conf');
    fs.writeFileSync(f, 'one\n', { mode: 0o640 });
    const first = writeAtomic(f, 'two\n', { mode: 0o644 })!;
    const c = capture();
    assert.equal(await restoreCommand(first, { yes: true }, c.io), 0);
    assert.equal(fs.readFileSync(f, 'utf8'), 'one\n');
    assert.equal(fs.statSync(f).mode & 0o777, 0o640, 'the file keeps its mode');
    const all = listBackups(f);
    assert.equal(all.length, 2);
    assert.equal(all[0], first);
    assert.equal(fs.readFileSync(all[1]!, 'utf8'), 'two\n', 'the replaced content is the newest backup');
    assert.match(c.text(), /-two\n {5}\+one\n/, 'the diff goes from the current content to the backup');
    assert.ok(c.text().includes(`nixremote restore ${all[1]}`), 'it says how to undo');
  });
  test('a file that is gone comes back with the mode of its backup', async () => {
    const d = tmp();
    const f = path.join(d, 'machines');
    const b = `${f}.nixremote-20260101T000000Z.bak`;
    fs.writeFileSync(b, 'ssh-ng://x\n', { mode: 0o600 });
    fs.chmodSync(b, 0o600);
    await restoreCommand(b, { yes: true }, capture().io);
    assert.equal(fs.readFileSync(f, 'utf8'), 'ssh-ng://x\n');
    assert.equal(fs.statSync(f).mode & 0o777, 0o600);
  });
  test('a path that is not an existing backup is a usage error and changes nothing', async () => {
    const d = tmp();
    const f = path.join(d, 'config');
    fs.writeFileSync(f, 'now\n');
    fs.writeFileSync(path.join(d, 'config.nixremote-notastamp.bak'), 'x\n');
    fs.writeFileSync(path.join(d, 'config.bak'), 'y\n');
    const before = snapshot(d);
    for (const p of [
      f,
      path.join(d, 'config.bak'),
      path.join(d, 'config.nixremote-notastamp.bak'),
      path.join(d, 'config.nixremote-20260101T000000Z.bak'),
    ]) {
      await assert.rejects(
        restoreCommand(p, { yes: true }, capture().io),
        (e: unknown) => e instanceof UsageError && e.exitCode === 2 && (e as Error).message.includes(p),
        p,
      );
    }
    assert.deepEqual(snapshot(d), before);
  });
  test('--dry-run shows the diff and changes nothing', async () => {
    const d = tmp();
    const f = path.join(d, 'config');
    fs.writeFileSync(f, 'old\n');
    writeAtomic(f, 'new\n', { mode: 0o644 });
    const before = snapshot(d);
    const c = capture();
    assert.equal(await restoreCommand(listBackups(f)[0]!, { dryRun: true }, c.io), 0);
    assert.match(c.text(), /-new\n {5}\+old\n/);
    assert.deepEqual(snapshot(d), before);
  });
  test('without a terminal and without --yes it refuses and changes nothing; a "no" changes nothing', async () => {
    const d = tmp();
    const f = path.join(d, 'config');
    fs.writeFileSync(f, 'old\n');
    const b = writeAtomic(f, 'new\n', { mode: 0o644 })!;
    const before = snapshot(d);
    await assert.rejects(
      restoreCommand(b, {}, capture().io),
      (e: unknown) => e instanceof UsageError && /pass --yes/.test((e as Error).message),
    );
    const asked: string[] = [];
    const io = {
      ...capture().io,
      interactive: true,
      confirm: async (m: string) => {
        asked.push(m);
        return false;
      },
    };
    assert.equal(await restoreCommand(b, {}, io), 0);
    assert.equal(asked.length, 1);
    assert.deepEqual(snapshot(d), before);
  });
  test('an edit made while it asked is never written over: the plan refuses, the edit stays', async () => {
    const d = tmp();
    const f = path.join(d, 'config');
    fs.writeFileSync(f, 'old\n');
    const b = writeAtomic(f, 'new\n', { mode: 0o644 })!;
    const io = {
      ...capture().io,
      interactive: true,
      confirm: async () => {
        fs.writeFileSync(f, 'edited meanwhile\n');
        return true;
      },
    };
    await assert.rejects(
      restoreCommand(b, {}, io),
      /changed while nixremote was running; nothing of it was overwritten/,
    );
    assert.equal(fs.readFileSync(f, 'utf8'), 'edited meanwhile\n');
  });
});
