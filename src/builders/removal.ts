// What `nixremote remove NAME` changes: exactly what init wrote for that builder (its Host
// block, its known_hosts pin, its machine line or module entry) and, when asked, this
// machine's key line in the builder's authorized_keys. Made as a plan of steps, like
// init's, so it is shown with diffs, applied atomically and rolled back on failure.
import * as path from 'node:path';
import { removeBlock } from '../text/managed-block.js';
import { hostBlockMarkers } from '../ssh/ssh-config.js';
import { unpinHostKey } from '../ssh/known-hosts.js';
import { machineMarkers } from '../nix/machines-file.js';
import type { Step, WriteStep } from '../plan/plan.js';
import { UsageError } from '../validate.js';
import { selectBuilders, type BuilderEntry, type Registry } from './registry.js';
import { moduleSystemOf } from '../nix/nixos-module.js';
import { rebuildFor } from '../targets/index.js';

/** Find NAME among the builders, refusing (exit 2) one that is unknown or not nixremote's. */
export function removable(reg: Registry, name: string): BuilderEntry {
  const found = selectBuilders(reg.builders, [name]);
  const ours = found.find((b) => b.managed);
  if (!ours) {
    const where = found.map((b) => `${b.source.file}:${b.source.line}`).join(', ');
    throw new UsageError(
      `${name} was not set up by nixremote; it is defined by hand at ${where}: edit that line to remove it (nothing was changed)`,
    );
  }
  return ours;
}

export interface RemovalFiles {
  read: (p: string) => string | null;
  /** The build user's ~/.ssh/known_hosts. */
  knownHosts: string;
  owner: { uid: number; gid: number };
}

/** The local writes that take NAME's parts out, each only where nixremote's own text is found. */
export function removalWrites(b: BuilderEntry, f: RemovalFiles): WriteStep[] {
  const steps: WriteStep[] = [];
  const edit = (
    title: string,
    p: string,
    mode: number,
    change: (text: string) => { text: string; changed: boolean },
    owner = {},
  ) => {
    const before = f.read(p);
    if (before === null) return;
    const after = change(before);
    if (after.changed) steps.push({ kind: 'write', title, path: p, before, after: after.text, mode, ...owner });
  };
  const where = b.kind === 'module' ? 'module entry' : 'machine line';
  edit(`Remove ${b.name}'s ${where}`, b.source.file, 0o644, (t) => removeBlock(t, machineMarkers(b.name)));
  if (b.hostBlock?.managed) {
    edit(
      `Remove the Host block for ${b.name}`,
      b.hostBlock.file,
      0o600,
      (t) => removeBlock(t, hostBlockMarkers(b.name)),
      f.owner,
    );
  }
  // init pins the key on a line naming the alias alone; a line the user wrote for more names stays.
  edit(`Remove ${b.name}'s pinned host key`, f.knownHosts, 0o644, (t) => unpinHostKey(t, b.name), f.owner);
  return steps;
}

/** What is left in place, for the user to know. */
export function leftInPlace(reg: Registry, b: BuilderEntry): string[] {
  const notes: string[] = [];
  if (b.hostBlock && !b.hostBlock.managed)
    notes.push(`your own Host block for ${b.name} (${b.hostBlock.file}:${b.hostBlock.line}) is yours and stays`);
  const key = b.keyPath;
  if (key) {
    const others = reg.builders.filter((o) => o !== b && o.keyPath === key).map((o) => o.name);
    notes.push(
      others.length
        ? `the key ${key} stays: ${others.join(', ')} ${others.length === 1 ? 'uses' : 'use'} it`
        : `no builder uses the key ${key} any more; it stays. To delete it: rm ${key} ${key}.pub`,
    );
  }
  return notes;
}

/** How the change reaches Nix, as a step of the plan. */
export function takesEffect(b: BuilderEntry, read: (p: string) => string | null): Step {
  if (b.kind === 'module') {
    // The module's own header says which system it was written for.
    const rebuild = rebuildFor(moduleSystemOf(read(b.source.file) ?? ''));
    return { kind: 'note', title: `Then run ${rebuild}: ${path.basename(b.source.file)} no longer lists ${b.name}` };
  }
  // Nix's build hook reads the machines file each time it starts (build-remote.cc,
  // getMachines), so the next build sees the change; nix.conf is not touched, so the
  // daemon needs no restart.
  return { kind: 'note', title: `Nix reads ${b.source.file} afresh for each build: no daemon restart needed` };
}
