// Which target this machine is, most specific first: the declarative systems (their
// /etc/nix is generated), then Determinate (its nix.conf is replaced), then the
// official installer on macOS, then plain nix.conf.
import * as fs from 'node:fs';
import { determinate } from './determinate.js';
import { macos } from './macos.js';
import { nixConf } from './nix-conf.js';
import { nixDarwin } from './nix-darwin.js';
import { nixos } from './nixos.js';
import type { Target, TargetCtx, TargetName } from './types.js';

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
