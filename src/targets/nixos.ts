// NixOS: /etc/nix is built from the configuration, so builders go into a module
// (nix.buildMachines, nix.distributedBuilds) that nixos-rebuild switch applies.
import type { Target } from './types.js';

export const NIXOS_MODULE = '/etc/nixos/nixremote.nix';

export const nixos: Target = {
  name: 'nixos',
  detect: (ctx) => (ctx.exists('/etc/NIXOS') ? '/etc/NIXOS exists' : null),
  settingsFile: () => null,
  restart: () => null,
  restartHow: () => 'add the module to imports in configuration.nix and run: sudo nixos-rebuild switch',
  buildersHome: () => 'nix.buildMachines in your NixOS configuration (then nixos-rebuild switch)',
  upkeep: () => [],
  writes: () => [NIXOS_MODULE],
  module: { path: NIXOS_MODULE, rebuild: 'nixos-rebuild switch' },
};
