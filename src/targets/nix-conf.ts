// The plain install on Linux: /etc/nix/nix.conf and the machines file, the nix-daemon under
// systemd (nix-daemon.service, from Nix's own installer and distributions' packages).
import * as path from 'node:path';
import type { Target } from './types.js';

export const nixConf: Target = {
  name: 'nix-conf',
  detect: () => 'nix.conf and the machines file',
  settingsFile: (ctx) => path.join(ctx.confDir, 'nix.conf'),
  // systemd is running when this directory exists (sd_booted(3)).
  restart: (ctx) => (ctx.exists('/run/systemd/system') ? ['systemctl', 'restart', 'nix-daemon.service'] : null),
  restartHow: () => 'restart nix-daemon with your service manager (no systemd is running here)',
  buildersHome: (ctx) => `${path.join(ctx.confDir, 'nix.conf')} (or the machines file)`,
  upkeep: () => [],
  writes: (ctx) => [path.join(ctx.confDir, 'machines'), path.join(ctx.confDir, 'nix.conf')],
};
