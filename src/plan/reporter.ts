// How an apply shows its progress: a line as each step starts, and what it did.
import type { Output } from '../io/output.js';
import type { ApplyReporter } from './plan.js';

export function planReporter(out: Output): ApplyReporter {
  return {
    start: (s) => out.step(s.title),
    done: (s, r, backup) => {
      if (s.kind === 'write')
        out.ok(r === 'unchanged' ? `${s.path} unchanged` : `wrote ${s.path}${backup ? ` (backup: ${backup})` : ''}`);
      else if (s.kind !== 'note' && r) out.ok(r);
    },
  };
}
