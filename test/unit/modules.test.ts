// nixremote's NixOS and nix-darwin modules, merged with a user's own configuration the way
// the module system merges these options (test/fixtures/modules/eval.nix, since nixpkgs
// cannot be fetched here), and the files they render read back by the programs that use
// them: Nix's machines-file parser (ours, which follows Nix's), ssh -G and ssh-keygen -F.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { upsertModule, ModuleError, type ModuleBuilder, type ModuleSystem } from '../../src/nix/nixos-module.js';
import { parseMachines } from '../../src/nix/machines-file.js';
import { machinesHostKeyField } from '../../src/ssh/host-key.js';

const EVAL = path.resolve('test/fixtures/modules/eval.nix');
const KEY = { type: 'ssh-ed25519', base64: 'AAAAC3NzaC1lZDI1NTE5AAAAIGb1n8Sj1Hq8l2x0cQ0m0Yp3kZ8Nn6n9uQeE7s3FQm2s' };

function builder(name: string, port: number, extra: Partial<ModuleBuilder> = {}): ModuleBuilder {
  return {
    name,
    sshUser: 'nixbuild',
    sshKey: '/root/.ssh/nix_remote',
    systems: ['x86_64-linux'],
    maxJobs: 4,
    speedFactor: 2,
    features: ['big-parallel'],
    mandatoryFeatures: [],
    hostKey: KEY,
    hostBlock: { name, hostName: '10.1.2.3', port, user: 'nixbuild', identityFile: '/root/.ssh/nix_remote' },
    ...extra,
  };
}

/** Writes nixremote's module with these builders and a configuration that imports it. */
function configuration(dir: string, system: ModuleSystem, builders: ModuleBuilder[], user: string): string {
  let text: string | null = null;
  for (const b of builders) text = upsertModule(text, 'nixremote.nix', b, system).text;
  fs.writeFileSync(path.join(dir, 'nixremote.nix'), text!);
  fs.writeFileSync(path.join(dir, 'configuration.nix'), user);
  return path.join(dir, 'configuration.nix');
}

async function evaluate(file: string, system: ModuleSystem): Promise<Record<string, string>> {
  const args =
    system === 'nix-darwin-determinate' ? '{ prefix = "determinateNix"; settings = "customSettings"; }' : '{ }';
  const expr = `(import ${EVAL} (${args} // { modules = [ ${file} ]; })).files`;
  const r = await execa('nix-instantiate', ['--eval', '--strict', '--json', '-E', expr], { reject: false });
  if (r.exitCode !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as Record<string, string>;
}

// The user's own configuration, as people write it: a function module with a builder of
// its own, its own ssh settings and host key, importing nixremote's file.
const USER = `{ config, lib, pkgs, ... }: {
  imports = [ ./nixremote.nix ];
  nix.buildMachines = [ { hostName = "arm.example.org"; systems = [ "aarch64-linux" ]; sshUser = "me"; } ];
  programs.ssh.extraConfig = ''
    Host arm.example.org
      User me
  '';
  programs.ssh.knownHosts."arm.example.org".publicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHand";
}
`;

describe('modules merged as the module system merges them', () => {
  test("NixOS: every builder reaches the machines file, ssh_config and ssh_known_hosts, next to the user's own", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-modules-'));
    const files = await evaluate(
      configuration(
        dir,
        'nixos',
        [builder('fast', 2201), builder('big', 2202, { protocol: 'ssh-ng', features: [] })],
        USER,
      ),
      'nixos',
    );
    const machines = parseMachines(files.machines!, 'machines', () => null);
    assert.deepEqual(machines.errors, []);
    assert.deepEqual(
      machines.machines.map((m) => [
        m.uri,
        m.systems,
        m.sshKey,
        m.maxJobs,
        m.speedFactor,
        m.supportedFeatures,
        m.hostKey,
      ]),
      [
        ['ssh://me@arm.example.org', ['aarch64-linux'], null, 1, 1, [], null],
        [
          'ssh://nixbuild@fast',
          ['x86_64-linux'],
          '/root/.ssh/nix_remote',
          4,
          2,
          ['big-parallel'],
          machinesHostKeyField(KEY),
        ],
        ['ssh-ng://nixbuild@big', ['x86_64-linux'], '/root/.ssh/nix_remote', 4, 2, [], machinesHostKeyField(KEY)],
      ],
    );
    assert.equal(files['nix.conf'], 'builders-use-substitutes = true\n');
    // ssh reads the rendered ssh_config the way root's ssh will read /etc/ssh/ssh_config.
    fs.writeFileSync(path.join(dir, 'ssh_config'), files.ssh_config!);
    for (const [name, port] of [
      ['fast', 2201],
      ['big', 2202],
    ] as const) {
      const g = await execa('ssh', ['-G', '-F', path.join(dir, 'ssh_config'), name]);
      for (const want of [
        'hostname 10.1.2.3',
        `port ${port}`,
        'user nixbuild',
        `hostkeyalias ${name}`,
        'identitiesonly yes',
      ]) {
        assert.match(g.stdout, new RegExp(`^${want}$`, 'm'), `${name}: ${want}`);
      }
    }
    const other = await execa('ssh', ['-G', '-F', path.join(dir, 'ssh_config'), 'arm.example.org']);
    assert.match(other.stdout, /^user me$/m);
    // The host keys are found under the names ssh looks them up by (HostKeyAlias).
    fs.writeFileSync(path.join(dir, 'known_hosts'), files.ssh_known_hosts!);
    for (const name of ['fast', 'big', 'arm.example.org']) {
      const k = await execa('ssh-keygen', ['-F', name, '-f', path.join(dir, 'known_hosts')], { reject: false });
      assert.equal(k.exitCode, 0, `${name} is not in ssh_known_hosts:\n${files.ssh_known_hosts}`);
    }
  });

  test('signed access: each signed builder names the signing key, and the lists merge into one setting', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-modules-'));
    const signed = { protocol: 'ssh-ng' as const, secretKeyFile: '/root/.ssh/nix-signing-key' };
    const files = await evaluate(
      configuration(dir, 'nixos', [builder('a', 2201, signed), builder('b', 2202, signed), builder('c', 2203)], USER),
      'nixos',
    );
    assert.equal(
      files['nix.conf'],
      'builders-use-substitutes = true\nextra-secret-key-files = /root/.ssh/nix-signing-key\n',
    );
  });
  test('a builder disabled in the module: its block Nix comments, gone from what the module writes; enable restores it', async () => {
    const { disableMachine, enableMachine } = await import('../../src/nix/machines-file.js');
    const { parseModuleBuilders } = await import('../../src/nix/nixos-module.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-modules-'));
    const file = configuration(dir, 'nixos', [builder('fast', 2201), builder('big', 2202)], USER);
    const mod = path.join(dir, 'nixremote.nix');
    const text = fs.readFileSync(mod, 'utf8');
    const off = disableMachine(text, 'big', { by: 'user', at: '2026-12-01T23:00:00Z', why: 'asleep' })!;
    fs.writeFileSync(mod, off.text);
    const files = await evaluate(file, 'nixos');
    const names = parseMachines(files.machines!, 'machines', () => null).machines.map((m) => m.uri);
    assert.deepEqual(names, ['ssh://me@arm.example.org', 'ssh://nixbuild@fast']);
    assert.doesNotMatch(files.ssh_config!, /Host big/);
    const parsed = parseModuleBuilders(off.text);
    const big = parsed.find((b) => b.name === 'big')!;
    assert.equal(big.disabled?.why, 'asleep');
    assert.equal(big.maxJobs, 4, 'its fields read through the comments');
    assert.equal(parsed.find((b) => b.name === 'fast')!.disabled, null);
    assert.equal(enableMachine(off.text, 'big')!.text, text);
  });
  test("a user who turned distributed builds off gets the module system's conflict, not a silent merge", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-modules-'));
    const file = configuration(
      dir,
      'nixos',
      [builder('fast', 2201)],
      '{ imports = [ ./nixremote.nix ]; nix.distributedBuilds = false; }',
    );
    await assert.rejects(
      evaluate(file, 'nixos'),
      /The option `nix\.distributedBuilds' has conflicting definition values/,
    );
  });

  test('nix-darwin with Determinate: determinateNix.* options, rendered to /etc/nix/machines and nix.custom.conf', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-modules-'));
    const file = configuration(
      dir,
      'nix-darwin-determinate',
      [builder('linux', 22)],
      '{ imports = [ ./nixremote.nix ]; determinateNix.customSettings.trusted-users = [ "root" "@admin" ]; }',
    );
    const text = fs.readFileSync(path.join(dir, 'nixremote.nix'), 'utf8');
    assert.doesNotMatch(text, /^\s*nix\./m, 'nix.* options are off under Determinate (nix.enable = false)');
    const files = await evaluate(file, 'nix-darwin-determinate');
    assert.match(
      files.machines!,
      /^ssh:\/\/nixbuild@linux x86_64-linux \/root\/\.ssh\/nix_remote 4 2 big-parallel - \S+$/m,
    );
    assert.equal(files['nix.conf'], 'builders-use-substitutes = true\ntrusted-users = root @admin\n');
    // A module written for plain nix-darwin is not silently mixed with Determinate's options.
    assert.throws(
      () => upsertModule(text, 'nixremote.nix', builder('other', 22), 'nix-darwin'),
      (e: unknown) => e instanceof ModuleError && /uses determinateNix\.buildMachines/.test(e.message),
    );
  });

  test("the keeper in the module: Nix's builders at the live file, and a service that runs a round (NixOS units, nix-darwin's launchd daemon)", async (t) => {
    const { KEEPER_MARKERS, keeperModuleBody, moduleKeeperInterval } = await import(
      '../../src/builders/keeper-service.js'
    );
    const { upsertModuleBlock } = await import('../../src/nix/nixos-module.js');
    const { removeBlock } = await import('../../src/text/managed-block.js');
    const { spawnSync } = await import('node:child_process');
    const k = { node: process.execPath, cli: path.resolve('bin/nixremote') };
    const whole = async (file: string, system: ModuleSystem) => {
      const args =
        system === 'nix-darwin-determinate' ? '{ prefix = "determinateNix"; settings = "customSettings"; }' : '{ }';
      const expr = `let r = import ${EVAL} (${args} // { modules = [ ${file} ]; }); in { inherit (r) files; launchd = r.config.launchd; }`;
      const r = await execa('nix-instantiate', ['--eval', '--strict', '--json', '-E', expr], { reject: false });
      assert.equal(r.exitCode, 0, r.stderr);
      return JSON.parse(r.stdout) as {
        files: { machines: string; 'nix.conf': string; systemd: Record<string, string> };
        launchd: { daemons: Record<string, { serviceConfig: Record<string, unknown> }> };
      };
    };
    for (const system of ['nixos', 'nix-darwin', 'nix-darwin-determinate'] as const) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-modules-'));
      const file = configuration(dir, system, [builder('fast', 2201)], '{ imports = [ ./nixremote.nix ]; }');
      const mod = path.join(dir, 'nixremote.nix');
      const text = fs.readFileSync(mod, 'utf8');
      const withKeeper = upsertModuleBlock(text, KEEPER_MARKERS, keeperModuleBody(system, k, mod, 45)).text;
      fs.writeFileSync(mod, withKeeper);
      assert.equal(moduleKeeperInterval(withKeeper), 45);
      assert.equal(removeBlock(withKeeper, KEEPER_MARKERS).text, text, 'uninstall gives the module back byte for byte');
      const r = await whole(file, system);
      const live = system === 'nixos' ? '/var/lib/nixremote/machines' : '/var/db/nixremote/machines';
      assert.match(r.files['nix.conf'], new RegExp(`^builders = @${live}$`, 'm'), system);
      assert.match(r.files.machines, /^ssh:\/\/nixbuild@fast /m, 'what the configuration declares is unchanged');
      const round = [k.node, k.cli, 'keep', '--live', live, '--module', mod];
      if (system === 'nixos') {
        const units = r.files.systemd;
        assert.match(units['nixremote-keep.service']!, new RegExp(`^ExecStart=${round.join(' ')}$`, 'm'));
        assert.match(units['nixremote-keep.service']!, /^Environment="PATH=\/usr\/bin:\/usr\/sbin:/m);
        assert.match(units['nixremote-keep.timer']!, /^OnUnitActiveSec=45$/m);
        if (spawnSync('sh', ['-c', 'command -v systemd-analyze']).status === 0) {
          const udir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-units-'));
          for (const [n, t] of Object.entries(units)) fs.writeFileSync(path.join(udir, n), t);
          const v = spawnSync('systemd-analyze', ['verify', ...Object.keys(units).map((n) => path.join(udir, n))], {
            encoding: 'utf8',
          });
          assert.equal(v.status, 0, v.stderr);
          assert.equal(v.stderr.trim(), '', 'no warnings');
        } else t.diagnostic('no systemd-analyze here: the units were not verified');
      } else {
        const sc = r.launchd.daemons['nixremote-keep']!.serviceConfig;
        assert.deepEqual(sc.ProgramArguments, round);
        assert.equal(sc.StartInterval, 45);
        assert.equal(sc.RunAtLoad, true);
        assert.match(
          String((sc.EnvironmentVariables as { PATH: string }).PATH),
          /\/nix\/var\/nix\/profiles\/default\/bin/,
        );
      }
    }
  });
});
