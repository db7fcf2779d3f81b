// Which target this machine is, most specific first: the declarative systems (their
// /etc/nix is generated), then Determinate (its nix.conf is replaced), then the
// official installer on macOS, then plain nix.conf.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { determinate } from './determinate.js';
import { macos } from './macos.js';
import { nixConf } from './nix-conf.js';
import { nixDarwin } from './nix-darwin.js';
import { nixos } from './nixos.js';
import type { Target, TargetCtx, TargetName } from './types.js';
import type { ModuleSystem } from '../nix/nixos-module.js';
import { keeperFiles, liveMachinesPath } from '../builders/keeper-service.js';

export type { Target, TargetCtx, TargetName } from './types.js';

export const TARGETS: Target[] = [nixDarwin, nixos, determinate, macos, nixConf];

export function targetByName(name: TargetName): Target {
  return TARGETS.find((t) => t.name === name)!;
}

export function detectTarget(ctx: TargetCtx): { target: Target; reason: string } {
  for (const t of TARGETS) {
    const reason = t.detect(ctx);
    if (reason) return { target: t, reason };
  }
  return { target: nixConf, reason: 'nix.conf and the machines file' };
}

export function realTargetCtx(confDir: string): TargetCtx {
  return {
    exists: (p) => fs.existsSync(p),
    read: (p) => {
      try {
        return fs.readFileSync(p, 'utf8');
      } catch {
        return null;
      }
    },
    platform: process.platform,
    confDir,
  };
}

/** Where init puts nixremote's module on each declarative system, unless --output said otherwise. */
export const MODULE_PATHS = [nixos.module!.path, nixDarwin.module!.path];

/** The rebuild that applies a module written for this system. */
export function rebuildFor(system: ModuleSystem): string {
  return (system === 'nixos' ? nixos : nixDarwin).module!.rebuild;
}

/**
 * Every file nixremote may write on this machine: the build user's ssh config and
 * known_hosts, the target's own files, any module of nixremote's at its usual place, the
 * keeper's service files and live machines file.
 */
export function nixremoteFiles(target: Target, ctx: TargetCtx, home: string): string[] {
  const keeper = keeperFiles(ctx.platform, { node: '', cli: '' }, 60).map((f) => f.path);
  const modules = MODULE_PATHS.filter((p) => target.writes(ctx).includes(p) || ctx.exists(p));
  const live = target.module ? [liveMachinesPath(target.name === 'nixos' ? 'nixos' : 'nix-darwin')] : [];
  const all = [
    path.join(home, '.ssh', 'config'),
    path.join(home, '.ssh', 'known_hosts'),
    ...target.writes(ctx),
    ...modules,
    ...keeper,
    ...live,
  ];
  return all.filter((p, i) => all.indexOf(p) === i);
}
