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

  test('the live machines file: the down lines in disabled blocks, the rest as the configuration wrote them, and no ";" in its comments', async () => {
    const { liveMachines } = await import('../../src/builders/keeping.js');
    const { parseMachines, machineRules, disabledMachines } = await import('../../src/nix/machines-file.js');
    const source = 'ssh://me@own x86_64-linux - 1 1\nssh://b@fast x86_64-linux - 8 8\nssh://b@mid x86_64-linux - 2 2\n';
    const ours = new Set(['fast', 'mid']);
    const down = new Map([[2, { name: 'fast', why: 'nothing answers on its port; ssh waited 3 s' }]]);
    const one = liveMachines(source, '/etc/nix/machines', down, null, ours, '2026-12-02T01:00:00Z');
    assert.deepEqual(one.said, ['disabled fast: nothing answers on its port; ssh waited 3 s']);
    // Nix 2.8 splits at ';' before it strips comments: the file must parse there as it does now.
    for (const v of [
      [2, 8, 0],
      [2, 34, 0],
    ] as [number, number, number][]) {
      const r = parseMachines(one.text, 'live', () => null, 1, 1, machineRules(v));
      assert.deepEqual(r.errors, [], v.join('.'));
      assert.deepEqual(
        r.machines.map((m) => m.uri),
        ['ssh://me@own', 'ssh://b@mid'],
      );
    }
    assert.equal(disabledMachines(one.text, 'live')[0]!.disabled.why, 'nothing answers on its port, ssh waited 3 s');
    // Still down at the next round: the same text (its when kept), nothing said.
    const two = liveMachines(source, '/etc/nix/machines', down, one.text, ours, '2026-12-02T01:01:00Z');
    assert.equal(two.text, one.text);
    assert.deepEqual(two.said, []);
    // Back: the configuration's lines as they are, and said once.
    const back = liveMachines(source, '/etc/nix/machines', new Map(), one.text, ours);
    assert.equal(back.text.split('\n').slice(2).join('\n'), source);
    assert.deepEqual(back.said, ['enabled fast: it answers again']);
  });
});
