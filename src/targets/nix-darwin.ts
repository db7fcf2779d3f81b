// nix-darwin: /etc/nix/nix.conf is a link into the Nix store that darwin-rebuild writes,
// so nothing may be edited there; builders belong in the nix-darwin configuration
// (nix.buildMachines, nix.distributedBuilds), applied with darwin-rebuild switch.
import { determinate } from './determinate.js';
import type { Target } from './types.js';

// nix-darwin's flake configuration lives in /etc/nix-darwin by default.
export const NIX_DARWIN_MODULE = '/etc/nix-darwin/nixremote.nix';

export const nixDarwin: Target = {
  name: 'nix-darwin',
  detect: (ctx) =>
    ctx.platform === 'darwin' && ctx.exists('/run/current-system/darwin-version')
      ? '/run/current-system/darwin-version exists (nix-darwin)'
      : null,
  settingsFile: () => null,
  restart: () => null,
  restartHow: () => 'add the builder to your nix-darwin configuration and run: darwin-rebuild switch',
  buildersHome: (ctx) =>
    `${determinate.detect(ctx) ? "determinateNix.buildMachines (Determinate's module turns nix.* off)" : 'nix.buildMachines'} in your nix-darwin configuration (then darwin-rebuild switch)`,
  upkeep: () => [],
  writes: () => [NIX_DARWIN_MODULE],
  module: { path: NIX_DARWIN_MODULE, rebuild: 'darwin-rebuild switch' },
};
