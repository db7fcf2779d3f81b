// Each target recognised from files alone: fixture trees handed in through the context,
// so a Mac, nix-darwin or Determinate install is tested here on Linux.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { detectTarget, targetByName, type TargetCtx } from '../../src/targets/index.js';

function tree(files: Record<string, string>, platform = 'linux'): TargetCtx {
  return { exists: (p) => p in files, read: (p) => files[p] ?? null, platform, confDir: '/etc/nix' };
}
const DETERMINATE =
  '# DETERMINATE NIX CONFIG\n# do not modify! this file will be replaced!\n# user modification can go in nix.custom.conf\n!include nix.custom.conf\n';

describe('targets', () => {
  const cases: [string, TargetCtx, string, string[] | null, string | null][] = [
    [
      'plain Linux with systemd',
      tree({ '/etc/nix/nix.conf': 'sandbox = true\n', '/run/systemd/system': '' }),
      'nix-conf',
      ['systemctl', 'restart', 'nix-daemon.service'],
      '/etc/nix/nix.conf',
    ],
    ['plain Linux, no service manager', tree({ '/etc/nix/nix.conf': '' }), 'nix-conf', null, '/etc/nix/nix.conf'],
    [
      'Determinate on Linux, from its nix.conf',
      tree({ '/etc/nix/nix.conf': DETERMINATE, '/run/systemd/system': '' }),
      'determinate',
      ['systemctl', 'restart', 'nix-daemon.service'],
      '/etc/nix/nix.custom.conf',
    ],
    [
      'Determinate on macOS, from determinate-nixd',
      tree({ '/usr/local/bin/determinate-nixd': '' }, 'darwin'),
      'determinate',
      ['launchctl', 'kickstart', '-k', 'system/systems.determinate.nix-daemon'],
      '/etc/nix/nix.custom.conf',
    ],
    [
      "macOS with Nix's installer",
      tree({ '/etc/nix/nix.conf': 'build-users-group = nixbld\n' }, 'darwin'),
      'macos',
      ['launchctl', 'kickstart', '-k', 'system/org.nixos.nix-daemon'],
      '/etc/nix/nix.conf',
    ],
    [
      'nix-darwin',
      tree({ '/run/current-system/darwin-version': '', '/usr/local/bin/determinate-nixd': '' }, 'darwin'),
      'nix-darwin',
      null,
      null,
    ],
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
  test("what to run when the restart cannot be run here, in each target's words", () => {
    const ctx = tree({});
    assert.match(targetByName('nixos').restartHow(ctx), /nixos-rebuild switch/);
    assert.match(targetByName('nix-darwin').restartHow(ctx), /darwin-rebuild switch/);
    assert.match(targetByName('macos').restartHow(ctx), /launchctl kickstart -k system\/org\.nixos\.nix-daemon/);
  });
});

// A Mac as Nix's installer leaves it, and the same Mac after a macOS update.
const ZSHRC_WITH_NIX =
  "# System-wide profile for interactive zsh(1) shells.\n\n# Nix\nif [ -e '/nix/var/nix/profiles/default/etc/profile.d/nix-daemon.sh' ]; then\n  . '/nix/var/nix/profiles/default/etc/profile.d/nix-daemon.sh'\nfi\n# End Nix\n";
const STOCK_ZSHRC =
  '# System-wide profile for interactive zsh(1) shells.\n\n# Setup user specific overrides for this in ~/.zshrc. See zshbuiltins(1)\n';
const MAC = {
  '/etc/nix/nix.conf': 'build-users-group = nixbld\n',
  '/etc/zshrc': ZSHRC_WITH_NIX,
  '/etc/bashrc': ZSHRC_WITH_NIX,
  '/etc/synthetic.conf': 'nix\n',
  '/Library/LaunchDaemons/org.nixos.nix-daemon.plist': '<plist/>',
};

describe('what is known to undo a setup (doctor names it)', () => {
  test('a healthy Mac: nothing', () => {
    assert.deepEqual(targetByName('macos').upkeep(tree(MAC, 'darwin')), []);
  });
  test('after a macOS update put back the stock /etc/zshrc: named, with the lines to add', () => {
    const found = targetByName('macos').upkeep(tree({ ...MAC, '/etc/zshrc': STOCK_ZSHRC }, 'darwin'));
    assert.equal(found.length, 1);
    assert.match(found[0]!.summary, /^\/etc\/zshrc no longer sources Nix's nix-daemon\.sh$/);
    assert.match(found[0]!.cause, /macOS updates put back the stock/);
    assert.match(
      found[0]!.fix,
      /^add to \/etc\/zshrc: if \[ -e '\/nix\/var\/nix\/profiles\/default\/etc\/profile\.d\/nix-daemon\.sh' \]/,
    );
  });
  test('/nix without its synthetic.conf line, and no launchd job', () => {
    const { '/Library/LaunchDaemons/org.nixos.nix-daemon.plist': _, ...rest } = MAC;
    const found = targetByName('macos').upkeep(tree({ ...rest, '/etc/synthetic.conf': '# nothing\n' }, 'darwin'));
    assert.deepEqual(
      found.map((f) => f.summary),
      ['/etc/synthetic.conf has no "nix" line', '/Library/LaunchDaemons/org.nixos.nix-daemon.plist is missing'],
    );
  });
  test("Determinate on macOS: its own launchd job; its shell hook is not Nix's installer's", () => {
    const det = { '/usr/local/bin/determinate-nixd': '', '/etc/synthetic.conf': 'nix\n', '/etc/zshrc': STOCK_ZSHRC };
    assert.deepEqual(
      targetByName('determinate')
        .upkeep(tree(det, 'darwin'))
        .map((f) => f.summary),
      ['/Library/LaunchDaemons/systems.determinate.nix-daemon.plist is missing'],
    );
    assert.deepEqual(
      targetByName('determinate').upkeep(tree({ '/etc/nix/nix.conf': DETERMINATE })),
      [],
      'nothing of macOS is checked on Linux',
    );
  });
  test("where builders belong, in each target's words", () => {
    assert.match(
      targetByName('determinate').buildersHome(tree({})),
      /^\/etc\/nix\/nix\.custom\.conf \(Determinate replaces nix\.conf\)/,
    );
    assert.match(targetByName('nixos').buildersHome(tree({})), /^nix\.buildMachines in your NixOS configuration/);
    assert.match(
      targetByName('nix-darwin').buildersHome(tree({}, 'darwin')),
      /^nix\.buildMachines in your nix-darwin configuration/,
    );
    assert.match(
      targetByName('nix-darwin').buildersHome(tree({ '/usr/local/bin/determinate-nixd': '' }, 'darwin')),
      /^determinateNix\.buildMachines .* in your nix-darwin configuration/,
    );
  });
});
