// Taking builders out of what Nix uses and putting them back, as plans of steps: by hand
// (`disable`, `enable`) or by the keeper (`keep`), which disables the managed builders that
// do not answer as Nix needs and enables again the ones it disabled that do. Only
// nixremote's own blocks are edited; a builder the user disabled is the user's to enable.
import { disableMachine, enableMachine, type Disabled } from '../nix/machines-file.js';
import type { WriteStep } from '../plan/plan.js';
import { UsageError } from '../validate.js';
import type { BuilderEntry } from './registry.js';

/** The write that disables (or enables) these builders, one step per machines file. */
export function keepingWrites(
  changes: { b: BuilderEntry; disable: Disabled | null }[],
  read: (p: string) => string | null,
): WriteStep[] {
  const byFile = new Map<string, { b: BuilderEntry; disable: Disabled | null }[]>();
  for (const c of changes) {
    if (!c.b.managed || c.b.kind !== 'machines')
      throw new UsageError(
        c.b.kind === 'module'
          ? `${c.b.name} is defined in nixremote's NixOS or nix-darwin module: take it out there (remove it from the module) and rebuild; disable works on machine lines`
          : `${c.b.name} was not set up by nixremote (${c.b.source.file}:${c.b.source.line}): comment its line out yourself`,
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
