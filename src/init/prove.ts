// The proof at the end of init: the probe build, then its output looked for in the
// builder's store, over ssh as Nix runs it.
import type { Exec } from '../io/exec.js';
import { sshAsNix } from '../ssh/system-ssh.js';
import { explainBuild } from '../nix/build-errors.js';
import { buildProbe } from '../nix/probe-build.js';

export interface ProofResult {
  ok: boolean;
  detail: string;
}

export async function proveOffload(exec: Exec, opts: { name: string; system: string; builders: string }): Promise<ProofResult> {
  const { result: r, outPath } = await buildProbe(exec, opts);
  if (!outPath) {
    const tail = r.stderr.trim().split('\n').slice(-6).join('\n');
    const why = explainBuild(r.stderr);
    return { ok: false, detail: `${r.command} failed${why ? `: ${why.cause}; fix: ${why.fix}` : ''}\n${tail}` };
  }
  const check = await sshAsNix(exec, opts.name, ['test', '-e', outPath]);
  if (check.exitCode !== 0) return { ok: false, detail: `${outPath} was built, but not on ${opts.name} (another builder took it?)` };
  return { ok: true, detail: `${outPath} built on ${opts.name}` };
}
