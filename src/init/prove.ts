// The proof: a derivation no cache can have (a fresh nonce), built with --max-jobs 0 so it
// can only succeed on a builder, then looked for in the builder's store.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Exec } from '../io/exec.js';
import { sshAsNix } from '../ssh/system-ssh.js';
import { explainBuild } from '../nix/build-errors.js';

export const PROBE_NIX = `# Written by nixremote: a build that only a remote builder can do.
{ nonce ? "0", system ? builtins.currentSystem }:
derivation {
  name = "nixremote-probe";
  inherit system nonce;
  builder = "/bin/sh";
  args = [ "-c" "echo ok > $out" ];
}
`;

export interface ProofResult {
  ok: boolean;
  outPath: string | null;
  detail: string;
}

export async function proveOffload(
  exec: Exec,
  opts: { name: string; system: string; builders: string | null; remoteStoreCheck: boolean },
): Promise<ProofResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-probe-'));
  try {
    const file = path.join(dir, 'probe.nix');
    fs.writeFileSync(file, PROBE_NIX);
    const nonce = `${Date.now()}-${randomBytes(6).toString('hex')}`;
    const args = [file, '--argstr', 'nonce', nonce, '--argstr', 'system', opts.system, '--max-jobs', '0', '--no-out-link'];
    if (opts.builders !== null) args.push('--builders', opts.builders);
    const r = await exec('nix-build', args, { timeoutMs: 600_000 });
    const outPath = r.stdout.trim().split('\n').pop() ?? '';
    if (r.exitCode !== 0 || !outPath.startsWith('/')) {
      const tail = r.stderr.trim().split('\n').slice(-6).join('\n');
      const why = explainBuild(r.stderr);
      return { ok: false, outPath: null, detail: `${r.command} failed${why ? `: ${why.cause}; fix: ${why.fix}` : ''}\n${tail}` };
    }
    if (!opts.remoteStoreCheck) return { ok: true, outPath, detail: outPath };
    const check = await sshAsNix(exec, opts.name, ['test', '-e', outPath]);
    if (check.exitCode !== 0) {
      return { ok: false, outPath, detail: `${outPath} was built, but not on ${opts.name} (another builder took it?)` };
    }
    return { ok: true, outPath, detail: `${outPath} built on ${opts.name}` };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
