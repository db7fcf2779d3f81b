// Nix's official installer on macOS: /etc/nix/nix.conf and the machines file as on Linux,
// root's ssh files under /var/root/.ssh (root's home in its passwd entry, which is what
// ssh and init use), and the daemon as the launchd job org.nixos.nix-daemon, from
// /Library/LaunchDaemons/org.nixos.nix-daemon.plist. Its shell hook is in /etc/zshrc and
// /etc/bashrc, which macOS updates replace (macos-upkeep.ts).
import * as path from 'node:path';
import { macosUpkeep } from './macos-upkeep.js';
import type { Target } from './types.js';

export const macos: Target = {
  name: 'macos',
  detect: (ctx) => (ctx.platform === 'darwin' ? 'macOS, with nix.conf not managed by nix-darwin or Determinate' : null),
  settingsFile: (ctx) => path.join(ctx.confDir, 'nix.conf'),
  restart: () => ['launchctl', 'kickstart', '-k', 'system/org.nixos.nix-daemon'],
  restartHow: () => 'sudo launchctl kickstart -k system/org.nixos.nix-daemon',
  buildersHome: (ctx) => `${path.join(ctx.confDir, 'nix.conf')} (or the machines file)`,
  upkeep: (ctx) => macosUpkeep(ctx, '/Library/LaunchDaemons/org.nixos.nix-daemon.plist', ['/etc/zshrc', '/etc/bashrc']),
  writes: (ctx) => [path.join(ctx.confDir, 'machines'), path.join(ctx.confDir, 'nix.conf')],
};
