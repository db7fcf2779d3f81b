// The keeper's service files: systemd's checked by systemd-analyze verify where it is
// installed (and shown to reject a broken unit), launchd's held to its expected text in
// test/fixtures/launchd (the keys of launchd.plist(5): Label, ProgramArguments,
// EnvironmentVariables, StartInterval, RunAtLoad, StandardOutPath/StandardErrorPath) and
// linted by plutil where there is one (macOS); and read back for list's header.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO } from './paths.js';
import {
  installedInterval,
  keeperFiles,
  launchdPlist,
  systemdService,
  systemdTimer,
  TIMER,
} from '../../src/builders/keeper-service.js';

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

describe('the keeper service', () => {
  test('systemd: the service and timer pass systemd-analyze verify', {
    skip: has('systemd-analyze') ? false : 'no systemd-analyze here',
  }, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-units-'));
    const k = { node: process.execPath, cli: path.join(REPO, 'bin/nixremote') };
    fs.writeFileSync(path.join(dir, 'nixremote-keep.service'), systemdService(k));
    fs.writeFileSync(path.join(dir, TIMER), systemdTimer(45));
    const r = spawnSync(
      'systemd-analyze',
      ['verify', path.join(dir, 'nixremote-keep.service'), path.join(dir, TIMER)],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'no warnings');
    // And a broken one does not pass: the check can fail.
    fs.writeFileSync(path.join(dir, 'bad.service'), '[Service]\nExecStart=/nonexistent/nixremote keep\n');
    assert.notEqual(spawnSync('systemd-analyze', ['verify', path.join(dir, 'bad.service')]).status, 0);
  });

  test('launchd: the plist is the fixture, and plutil takes it where there is one', () => {
    const k = { node: '/usr/local/bin/node', cli: '/usr/local/lib/node_modules/nixremote/bin/nixremote' };
    const text = launchdPlist(k, 60);
    assert.equal(text, fs.readFileSync(path.join(REPO, 'test/fixtures/launchd/org.nixremote.keep.plist'), 'utf8'));
    if (has('plutil')) {
      const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-plist-')), 'k.plist');
      fs.writeFileSync(f, text);
      assert.equal(spawnSync('plutil', ['-lint', f]).status, 0);
    }
  });

  test('the interval is read back from the files it wrote, and only those', () => {
    const k = { node: '/n', cli: '/c' };
    for (const platform of ['linux', 'darwin']) {
      const files = new Map(keeperFiles(platform, k, 90).map((f) => [f.path, f.text]));
      assert.equal(
        installedInterval((p) => files.get(p) ?? null, platform),
        90,
      );
      assert.equal(
        installedInterval(() => null, platform),
        null,
      );
    }
    assert.equal(
      installedInterval(() => '[Timer]\nOnUnitActiveSec=5\n', 'linux'),
      null,
      "a timer of the user's own",
    );
  });
});
