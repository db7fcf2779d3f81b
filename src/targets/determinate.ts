// Determinate Nix: determinate-nixd owns /etc/nix/nix.conf ("# DETERMINATE NIX CONFIG" /
// "# do not modify! this file will be replaced!") and includes nix.custom.conf for the
// user's settings, so nixremote's go there and nix.conf is never touched. Its daemon is
// nix-daemon.service on Linux and the launchd job systems.determinate.nix-daemon on macOS.
import * as path from 'node:path';
import { macosUpkeep } from './macos-upkeep.js';
import type { Target } from './types.js';

export const DETERMINATE_HEADER = '# DETERMINATE NIX CONFIG';

export const determinate: Target = {
  name: 'determinate',
  detect: (ctx) => {
    if ((ctx.read(path.join(ctx.confDir, 'nix.conf')) ?? '').startsWith(DETERMINATE_HEADER))
      return `${path.join(ctx.confDir, 'nix.conf')} begins "${DETERMINATE_HEADER}"`;
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
  buildersHome: (ctx) =>
    `${path.join(ctx.confDir, 'nix.custom.conf')} (Determinate replaces nix.conf) or the machines file`,
  // Determinate's installer puts its own shell hook back (DeterminateSystems/nix-installer#672),
  // so only /nix and the launchd job are checked, as with Nix's installer.
  upkeep: (ctx) =>
    ctx.platform === 'darwin'
      ? macosUpkeep(ctx, '/Library/LaunchDaemons/systems.determinate.nix-daemon.plist', [])
      : [],
  // Never nix.conf: determinate-nixd replaces it.
  writes: (ctx) => [path.join(ctx.confDir, 'machines'), path.join(ctx.confDir, 'nix.custom.conf')],
};
