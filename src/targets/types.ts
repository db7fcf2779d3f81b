// A target is a place Nix keeps its config: how to recognise it from files, where the
// builders and settings go, and how the change takes effect. Everything it needs of the
// machine comes in through the context, so a unit test hands in a Mac or a Determinate
// install as a fixture tree.
export type TargetName = 'nix-conf' | 'determinate' | 'macos' | 'nixos' | 'nix-darwin';

export interface TargetCtx {
  exists(p: string): boolean;
  read(p: string): string | null;
  /** process.platform, handed in. */
  platform: string;
  /** NIX_CONF_DIR or /etc/nix (a single-user install: the user's ~/.config/nix). */
  confDir: string;
}

export interface Target {
  name: TargetName;
  /** Why this machine looks like this target, or null. */
  detect(ctx: TargetCtx): string | null;
  /** Where `builders` and `builders-use-substitutes` go (null: a module instead). */
  settingsFile(ctx: TargetCtx): string | null;
  /** The command that makes the nix-daemon read new settings, or null when none can be run here. */
  restart(ctx: TargetCtx): string[] | null;
  /** What to do when the restart cannot be run here, in the target's own words. */
  restartHow(ctx: TargetCtx): string;
  /** Where the daemon's builders belong, in the target's own words, for fixes. */
  buildersHome(ctx: TargetCtx): string;
  /** What is known to undo this kind of setup and has (macOS updates), read from files. */
  upkeep(ctx: TargetCtx): Finding[];
  /**
   * Every file of Nix's that nixremote may write for this target (the build user's ssh
   * files and the keeper's come on top: see nixremoteFiles). What backups lists, and what
   * the rest of the tool asks instead of keeping a list of its own.
   */
  writes(ctx: TargetCtx): string[];
  /** A declarative system: nixremote's module, where init puts it, and the rebuild that applies it. */
  module?: { path: string; rebuild: string };
}

/** Something found undone, with its cause and the fix. */
export interface Finding {
  summary: string;
  cause: string;
  fix: string;
}
