// Nix's official installer on macOS: /etc/nix/nix.conf and the machines file as on Linux,
// root's ssh files under /var/root/.ssh (root's home in its passwd entry, which is what
// ssh and init use), and the daemon as the launchd job org.nixos.nix-daemon.
import * as path from 'node:path';
import type { Target } from './types.js';

export const macos: Target = {
  name: 'macos',
  detect: (ctx) => (ctx.platform === 'darwin' ? 'macOS, with nix.conf not managed by nix-darwin or Determinate' : null),
  settingsFile: (ctx) => path.join(ctx.confDir, 'nix.conf'),
  restart: () => ['launchctl', 'kickstart', '-k', 'system/org.nixos.nix-daemon'],
  restartHow: () => 'sudo launchctl kickstart -k system/org.nixos.nix-daemon',
};
