// Each target recognised from files alone: fixture trees handed in through the context,
// so a Mac, nix-darwin or Determinate install is tested here on Linux.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { detectTarget, targetByName, type TargetCtx } from '../../src/targets/index.js';

function tree(files: Record<string, string>, platform = 'linux'): TargetCtx {
  return { exists: (p) => p in files, read: (p) => files[p] ?? null, platform, confDir: '/etc/nix' };
}
const DETERMINATE = '# DETERMINATE NIX CONFIG\n# do not modify! this file will be replaced!\n# user modification can go in nix.custom.conf\n!include nix.custom.conf\n';

describe('targets', () => {
  const cases: [string, TargetCtx, string, string[] | null, string | null][] = [
    ['plain Linux with systemd', tree({ '/etc/nix/nix.conf': 'sandbox = true\n', '/run/systemd/system': '' }), 'nix-conf', ['systemctl', 'restart', 'nix-daemon.service'], '/etc/nix/nix.conf'],
    ['plain Linux, no service manager', tree({ '/etc/nix/nix.conf': '' }), 'nix-conf', null, '/etc/nix/nix.conf'],
    ['Determinate on Linux, from its nix.conf', tree({ '/etc/nix/nix.conf': DETERMINATE, '/run/systemd/system': '' }), 'determinate', ['systemctl', 'restart', 'nix-daemon.service'], '/etc/nix/nix.custom.conf'],
    ['Determinate on macOS, from determinate-nixd', tree({ '/usr/local/bin/determinate-nixd': '' }, 'darwin'), 'determinate', ['launchctl', 'kickstart', '-k', 'system/systems.determinate.nix-daemon'], '/etc/nix/nix.custom.conf'],
    ["macOS with Nix's installer", tree({ '/etc/nix/nix.conf': 'build-users-group = nixbld\n' }, 'darwin'), 'macos', ['launchctl', 'kickstart', '-k', 'system/org.nixos.nix-daemon'], '/etc/nix/nix.conf'],
    ['nix-darwin', tree({ '/run/current-system/darwin-version': '', '/usr/local/bin/determinate-nixd': '' }, 'darwin'), 'nix-darwin', null, null],
    ['NixOS', tree({ '/etc/NIXOS': '', '/run/systemd/system': '' }), 'nixos', null, null],
  ];
  for (const [what, ctx, name, restart, settings] of cases) {
    test(what, () => {
      const { target, reason } = detectTarget(ctx);
      assert.equal(target.name, name, reason);
      assert.ok(reason.length > 0);
      assert.deepEqual(target.restart(ctx), restart);
      assert.equal(target.settingsFile(ctx), settings);
    });
  }
  test('what to run when the restart cannot be run here, in each target\'s words', () => {
    const ctx = tree({});
    assert.match(targetByName('nixos').restartHow(ctx), /nixos-rebuild switch/);
    assert.match(targetByName('nix-darwin').restartHow(ctx), /darwin-rebuild switch/);
    assert.match(targetByName('macos').restartHow(ctx), /launchctl kickstart -k system\/org\.nixos\.nix-daemon/);
  });
});
