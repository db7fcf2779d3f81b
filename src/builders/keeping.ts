// Taking builders out of what Nix uses and putting them back, as plans of steps: by hand
// (`disable`, `enable`) or by the keeper (`keep`), which disables the managed builders that
// do not answer as Nix needs and enables again the ones it disabled that do. Only
// nixremote's own blocks are edited; a builder the user disabled is the user's to enable.
import {
  disabledMachines,
  disableMachine,
  enableMachine,
  machineMarkers,
  type Disabled,
} from '../nix/machines-file.js';
import type { NoteStep, WriteStep } from '../plan/plan.js';
import { moduleSystemOf } from '../nix/nixos-module.js';
import { rebuildFor } from '../targets/index.js';
import { UsageError } from '../validate.js';
import type { BuilderEntry } from './registry.js';
import { LIVE_HEADER } from './keeper-service.js';

/** When a builder is taken out, as its disabled line says it: UTC to the second. */
export const stamp = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/** The write that disables (or enables) these builders, one step per machines file. */
export function keepingWrites(
  changes: { b: BuilderEntry; disable: Disabled | null }[],
  read: (p: string) => string | null,
): WriteStep[] {
  const byFile = new Map<string, { b: BuilderEntry; disable: Disabled | null }[]>();
  for (const c of changes) {
    if (!c.b.managed)
      throw new UsageError(
        `${c.b.name} was not set up by nixremote (${c.b.source.file}:${c.b.source.line}): comment its line out yourself`,
      );
    byFile.set(c.b.source.file, [...(byFile.get(c.b.source.file) ?? []), c]);
  }
  const steps: WriteStep[] = [];
  for (const [file, cs] of byFile) {
    const before = read(file);
    if (before === null) throw new UsageError(`${file}: cannot read it`);
    let text = before;
    for (const c of cs) {
      const edit = c.disable ? disableMachine(text, c.b.name, c.disable) : enableMachine(text, c.b.name);
      if (!edit) throw new UsageError(`${file} has no nixremote block for ${c.b.name}`);
      text = edit.text;
    }
    if (text === before) continue;
    const names = cs.map((c) => c.b.name).join(', ');
    const what = cs.every((c) => c.disable) ? 'Disable' : cs.every((c) => !c.disable) ? 'Enable' : 'Disable and enable';
    steps.push({ kind: 'write', title: `${what} ${names} in ${file}`, path: file, before, after: text, mode: 0o644 });
  }
  return steps;
}

/** How a disable or enable reaches Nix: at once for a machines file, at the next rebuild for a module. */
export function toggleTakesEffect(b: BuilderEntry, read: (p: string) => string | null): NoteStep {
  if (b.kind === 'module') {
    const rebuild = rebuildFor(moduleSystemOf(read(b.source.file) ?? ''));
    return { kind: 'note', title: `Then run ${rebuild}: until then Nix uses the builders the last one wrote` };
  }
  // The build hook reads the machines file each time it starts (build-remote.cc).
  return { kind: 'note', title: 'Nix reads the machines file afresh for each build: no daemon restart needed' };
}

/**
 * The live machines file of a declarative system (see keeper-service.ts): `source`, the file
 * the configuration built, line for line, with the lines of the builders that are down (by
 * line number) in nixremote's disabled blocks. A builder down since an earlier round keeps
 * that round's when and why, so the file changes only when the fleet does. Also what changed
 * against `before`, one line each.
 */
export function liveMachines(
  source: string,
  from: string,
  down: Map<number, { name: string; why: string }>,
  before: string | null,
  ours: Set<string>,
  at = stamp(),
): { text: string; said: string[] } {
  const was = new Map(disabledMachines(before ?? '', 'live').map((d) => [d.name, d.disabled]));
  const body = source === '' ? [] : source.replace(/\n$/, '').split('\n');
  const text = [
    // No ';' in these comments (see disableMachine).
    `${LIVE_HEADER}${from}, each round: builders that are down are commented out.`,
    '# Edit your configuration instead: the next round rewrites this file.',
    ...body.flatMap((l, i) => {
      const off = down.get(i + 1);
      if (!off) return [l];
      const m = machineMarkers(off.name);
      const d = was.get(off.name) ?? { by: 'keep', at, why: off.why };
      return disableMachine(`${m.begin}\n${l}\n${m.end}\n`, off.name, d)!.text.replace(/\n$/, '').split('\n');
    }),
    '',
  ].join('\n');
  const downNames = new Set([...down.values()].map((x) => x.name));
  const said = [
    ...[...down.values()].filter((x) => !was.has(x.name)).map((x) => `disabled ${x.name}: ${x.why}`),
    ...[...was.keys()]
      .filter((n) => !downNames.has(n))
      .map((n) => `enabled ${n}: ${ours.has(n) ? 'it answers again' : 'no longer in the configuration'}`),
  ];
  return { text, said };
}
