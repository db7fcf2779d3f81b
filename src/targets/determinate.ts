// Determinate Nix: determinate-nixd owns /etc/nix/nix.conf ("# DETERMINATE NIX CONFIG" /
// "# do not modify! this file will be replaced!") and includes nix.custom.conf for the
// user's settings, so nixremote's go there and nix.conf is never touched. Its daemon is
// nix-daemon.service on Linux and the launchd job systems.determinate.nix-daemon on macOS.
import * as path from 'node:path';
import type { Target } from './types.js';

export const DETERMINATE_HEADER = '# DETERMINATE NIX CONFIG';

export const determinate: Target = {
  name: 'determinate',
  detect: (ctx) => {
    if ((ctx.read(path.join(ctx.confDir, 'nix.conf')) ?? '').startsWith(DETERMINATE_HEADER)) return `${path.join(ctx.confDir, 'nix.conf')} begins "${DETERMINATE_HEADER}"`;
    if (ctx.exists('/usr/local/bin/determinate-nixd')) return '/usr/local/bin/determinate-nixd exists';
    return null;
  },
  settingsFile: (ctx) => path.join(ctx.confDir, 'nix.custom.conf'),
  restart: (ctx) =>
    ctx.platform === 'darwin'
      ? ['launchctl', 'kickstart', '-k', 'system/systems.determinate.nix-daemon']
      : ctx.exists('/run/systemd/system')
        ? ['systemctl', 'restart', 'nix-daemon.service']
        : null,
  restartHow: () => 'restart the nix-daemon with your service manager (no systemd is running here)',
};
