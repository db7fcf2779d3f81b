// The probe build: a derivation no cache can have (a fresh nonce, /bin/sh as builder, no
// nixpkgs), built with --max-jobs 0 so that only a remote builder can build it.
import type { Exec, ExecOptions, ExecResult } from '../io/exec.js';

export const PROBE_NIX = `# Written by nixremote: a build that only a remote builder can do.
{ nonce ? "0", system ? builtins.currentSystem }:
derivation {
  name = "nixremote-probe";
  inherit system nonce;
  builder = "/bin/sh";
  args = [ "-c" "echo ok > $out" ];
}
`;

export interface ProbeBuild {
  result: ExecResult;
  /** The output path, when the build succeeded. */
  outPath: string | null;
}

/**
 * Build the probe for `system` with `builders` (one machine line) as the only builders, so
 * the build can go to that machine and no other.
 */
export async function buildProbe(
  exec: Exec,
  opts: { system: string; builders: string; exec?: ExecOptions },
): Promise<ProbeBuild> {
  // The expression on the command line: no file to write and remove for each build.
  // Unique, not secret: the time, this process and a random part (crypto's randomBytes
  // cost doctor tens of milliseconds of blocking on a loaded machine, by node --cpu-prof).
  const nonce = `${Date.now()}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  const args = [
    '-E',
    PROBE_NIX,
    '--argstr',
    'nonce',
    nonce,
    '--argstr',
    'system',
    opts.system,
    '--max-jobs',
    '0',
    '--no-out-link',
    '--builders',
    opts.builders,
  ];
  const result = await exec('nix-build', args, { timeoutMs: 580_000, ...opts.exec });
  const last = result.stdout.trim().split('\n').pop() ?? '';
  return { result, outPath: result.exitCode === 0 && last.startsWith('/nix/store/') ? last : null };
}
