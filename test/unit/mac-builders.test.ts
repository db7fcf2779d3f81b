// A Mac's own Linux builders on fixture trees (test/fixtures/mac, see its README): nix-darwin's
// linux-builder running, not running, and with /etc/ssh/ssh_config no longer including
// ssh_config.d; Determinate's native Linux builder on, without its experimental feature, and
// turned off. list shows them, doctor checks them with a fix for each finding, why routes a
// Linux derivation to the native builder. None of it is ever edited.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO } from './paths.js';
import { readRegistry } from '../../src/builders/registry.js';
import { macJson } from '../../src/commands/list.js';
import { localState } from '../../src/doctor/checks/local.js';
import { macBuildersCheck } from '../../src/doctor/checks/mac-builders.js';
import type { DoctorCtx, FileInfo } from '../../src/doctor/context.js';
import type { Install } from '../../src/init/install.js';
import { decide, type LocalSide, type WhyDrv } from '../../src/why/model.js';
import { parseShowConfig } from '../../src/why/gather.js';

const MAC = path.join(REPO, 'test/fixtures/mac');

/** Every file of a fixture tree, by its path on the Mac, with its mode; `edit` changes some. */
function tree(name: string, edit: Record<string, string | null> = {}): Map<string, { text: string; mode: number }> {
  const root = path.join(MAC, name);
  const out = new Map<string, { text: string; mode: number }>();
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else
        out.set(`/${r}`, {
          text: fs.readFileSync(path.join(root, r), 'utf8'),
          mode: fs.statSync(path.join(root, r)).mode,
        });
    }
  };
  walk('');
  // The key as nixpkgs' create-builder installs it: root, mode 0600.
  if (out.has('/etc/nix/builder_ed25519')) out.get('/etc/nix/builder_ed25519')!.mode = 0o100600;
  for (const [p, t] of Object.entries(edit)) {
    if (t === null) out.delete(p);
    else out.set(p, { text: t, mode: out.get(p)?.mode ?? 0o100644 });
  }
  return out;
}

const root: Install = {
  multiUser: true,
  reason: 'the daemon socket exists',
  user: { name: 'root', uid: 0, gid: 0, home: '/var/root' },
  confDir: '/etc/nix',
  daemon: null,
  target: 'nix-darwin',
  settingsFile: null,
};

function ctxOf(files: Map<string, { text: string; mode: number }>, vmUp: boolean): DoctorCtx {
  return {
    exec: async () => ({ command: '', stdout: '', stderr: '', exitCode: 1, timedOut: false }),
    read: (p) => files.get(p)?.text ?? null,
    stat: (p): FileInfo | null => {
      const f = files.get(p);
      return f ? { uid: 0, mode: f.mode, isFile: true } : null;
    },
    resolve: async () => ['127.0.0.1'],
    tcp: async (_h, port) =>
      vmUp && port === 31022 ? { ok: true, ms: 1 } : { ok: false, ms: 1, error: 'ECONNREFUSED' },
    hostKey: async () => {
      throw new Error('not here');
    },
    daemon: () => 'unseen',
    mtimeMs: () => 1000,
    env: {},
    install: root,
    build: false,
    drv: null,
    platform: 'darwin',
  } as DoctorCtx;
}

const check = (files: Map<string, { text: string; mode: number }>, vmUp = true) =>
  macBuildersCheck.run(localState(ctxOf(files, vmUp)));

const registry = (files: Map<string, { text: string; mode: number }>) =>
  readRegistry({
    read: (p) => files.get(p)?.text ?? null,
    readdir: () => [],
    env: {},
    who: { multiUser: true, home: '/var/root', name: 'root' },
  });

describe("nix-darwin's linux-builder", () => {
  test('running: listed for what it is, and doctor passes it', async () => {
    const files = tree('linux-builder');
    const reg = registry(files);
    assert.deepEqual(reg.macBuilders.map(macJson), [
      {
        name: 'linux-builder',
        what: "nix-darwin's nix.linux-builder (a VM)",
        systems: ['aarch64-linux'],
        source: '/etc/nix/machines:1',
        launchd: 'org.nixos.linux-builder',
      },
    ]);
    assert.equal(reg.builders[0]!.managed, false, 'not nixremote’s');
    const r = await check(files);
    assert.equal(r.status, 'pass', JSON.stringify(r));
    assert.match(
      r.summary,
      /linux-builder \(nix-darwin's nix\.linux-builder \(a VM\)\): the VM answers on 127\.0\.0\.1:31022/,
    );
  });

  test('not running: the port says so, and the fix is the launchd job', async () => {
    const r = await check(tree('linux-builder'), false);
    assert.equal(r.status, 'fail');
    assert.match(r.summary, /the VM does not answer on 127\.0\.0\.1:31022/);
    assert.match(r.fix!, /sudo launchctl kickstart -k system\/org\.nixos\.linux-builder/);
  });

  test('never installed: the machine line names a VM that nothing starts', async () => {
    const r = await check(
      tree('linux-builder', { '/Library/LaunchDaemons/org.nixos.linux-builder.plist': null }),
      false,
    );
    assert.equal(r.status, 'fail');
    assert.match(r.summary, /its launchd job org\.nixos\.linux-builder is not installed/);
    assert.match(r.fix!, /nix\.linux-builder\.enable = true\) and run darwin-rebuild switch/);
  });

  test("/etc/ssh/ssh_config without Include of ssh_config.d: root's ssh cannot resolve linux-builder", async () => {
    const r = await check(tree('linux-builder', { '/etc/ssh/ssh_config': 'Host *\n    SendEnv LANG LC_*\n' }));
    assert.equal(r.status, 'fail');
    assert.match(r.summary, /\/etc\/ssh\/ssh_config does not include ssh_config\.d/);
    assert.match(r.cause!, /Could not resolve hostname linux-builder/);
    assert.match(r.fix!, /add "Include \/etc\/ssh\/ssh_config\.d\/\*" as the first line of \/etc\/ssh\/ssh_config/);
  });

  test('a key others can read, and a missing Host block, each named', async () => {
    const files = tree('linux-builder', { '/etc/ssh/ssh_config.d/100-linux-builder.conf': null });
    files.get('/etc/nix/builder_ed25519')!.mode = 0o100644;
    const r = await check(files);
    assert.match(r.summary, /no Host block for linux-builder/);
    assert.match(r.summary, /its key \/etc\/nix\/builder_ed25519 can be read by others \(mode 644\)/);
    assert.match(r.fix!, /sudo chmod 600 \/etc\/nix\/builder_ed25519/);
  });
});

describe("Determinate's native Linux builder", () => {
  test('listed though it has no machine line, and doctor passes it', async () => {
    const files = tree('determinate-native');
    const reg = registry(files);
    assert.equal(reg.builders.length, 0);
    assert.deepEqual(reg.macBuilders.map(macJson), [
      {
        name: 'determinate-nixd builder',
        what: "Determinate's native Linux builder",
        systems: ['aarch64-linux', 'x86_64-linux'],
        source: 'external-builders, /etc/nix/nix.conf:10',
        launchd: null,
      },
    ]);
    const r = await check(files);
    assert.equal(r.status, 'pass', JSON.stringify(r));
    assert.match(r.summary, /serves aarch64-linux, x86_64-linux/);
  });

  test('without the experimental feature, and turned off in config.json: each named with its fix', async () => {
    const conf = tree('determinate-native').get('/etc/nix/nix.conf')!.text;
    const r = await check(
      tree('determinate-native', {
        '/etc/nix/nix.conf': conf.replace('extra-experimental-features = external-builders\n', ''),
        '/etc/determinate/config.json': '{ "builder": { "state": "disabled" } }\n',
      }),
    );
    assert.equal(r.status, 'fail');
    assert.match(r.summary, /the experimental feature external-builders is not on/);
    assert.match(r.summary, /turned off in \/etc\/determinate\/config\.json/);
    assert.match(r.fix!, /add external-builders to extra-experimental-features/);
  });

  test('why: a Linux derivation on a Mac with no builder for it goes to the native builder, a local build', () => {
    const local: LocalSide = parseShowConfig(
      JSON.stringify({
        system: { value: 'aarch64-darwin' },
        'extra-platforms': { value: ['x86_64-darwin'] },
        'system-features': { value: ['apple-virt', 'benchmark', 'big-parallel', 'nixos-test'] },
        'max-jobs': { value: 8 },
        'experimental-features': { value: ['nix-command', 'flakes', 'external-builders'] },
        'external-builders': {
          value: [
            {
              systems: ['aarch64-linux', 'x86_64-linux'],
              program: '/usr/local/bin/determinate-nixd',
              args: ['builder'],
            },
          ],
        },
      }),
      [2, 33, 0],
    );
    const d: WhyDrv = {
      path: '/nix/store/00000000000000000000000000000000-hello.drv',
      name: 'hello',
      system: 'aarch64-linux',
      features: ['kvm'],
      preferLocal: false,
      builtin: false,
      inputs: [],
    };
    const [v] = decide([d], local, []);
    assert.equal(v!.where, 'here');
    assert.match(v!.rule, /built here by \/usr\/local\/bin\/determinate-nixd builder \(external-builders\)/);
    // Without the feature Nix has no such builder: the derivation cannot be built here.
    const off = { ...local, external: [] };
    assert.equal(decide([d], off, [])[0]!.where, 'fails');
  });
});
