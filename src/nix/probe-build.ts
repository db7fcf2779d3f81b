// The probe build: a derivation no cache can have (a fresh nonce, /bin/sh as builder, no
// nixpkgs), built with --max-jobs 0 so that only a remote builder can build it. It takes
// an input built here first, so that the proof carries what nearly every real build does:
// a locally built, unsigned path copied to the builder. Over ssh-ng:// to a builder that
// does not trust the ssh user, that copy is refused ("lacks a signature by a trusted key")
// while a build without inputs would pass.
import type { Exec, ExecOptions, ExecResult } from '../io/exec.js';

export const PROBE_NIX = `# Written by nixremote: a build that only a remote builder can do.
{ nonce ? "0", inputNonce ? nonce, system ? builtins.currentSystem }:
let
  input = derivation {
    name = "nixremote-probe-input";
    system = builtins.currentSystem;
    nonce = inputNonce;
    builder = "/bin/sh";
    args = [ "-c" "echo input > $out" ];
    preferLocalBuild = true;
    allowSubstitutes = false;
  };
in
derivation {
  name = "nixremote-probe";
  inherit system nonce input;
  builder = "/bin/sh";
  args = [ "-c" "read x < $input && echo ok > $out" ];
}
`;

export interface ProbeBuild {
  result: ExecResult;
  /** The output path, when the build succeeded. */
  outPath: string | null;
  /** Which build the result is of: the input here, or the probe on the builder. */
  stage: 'input' | 'probe';
}

/** A nonce that no store has seen: unique, not secret (randomBytes blocked doctor for tens of ms under load). */
export const freshNonce = () => `${Date.now()}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;

export interface ProbeInput {
  nonce: string;
  run: Promise<ExecResult>;
}

/**
 * The input, built here with no builders at all (and without the sandbox, which need not
 * have /bin/sh). One per run serves every builder: each gets it copied, since its nonce is new.
 */
export function buildInput(exec: Exec, execOpts: ExecOptions = {}): ProbeInput {
  const nonce = freshNonce();
  const run = exec(
    'nix-build',
    [
      '-E',
      PROBE_NIX,
      '--argstr',
      'inputNonce',
      nonce,
      '-A',
      'input',
      '--no-out-link',
      '--max-jobs',
      '1',
      '--builders',
      '',
      '--option',
      'sandbox',
      'false',
    ],
    { timeoutMs: 120_000, ...execOpts },
  );
  return { nonce, run };
}

/**
 * Build the probe for `system` with `builders` (one machine line) as the only builders, so
 * the build can go to that machine and no other.
 */
export async function buildProbe(
  exec: Exec,
  opts: { system: string; builders: string; exec?: ExecOptions; input?: ProbeInput; signWith?: string },
): Promise<ProbeBuild> {
  const input = opts.input ?? buildInput(exec, opts.exec);
  const built = await input.run;
  if (built.exitCode !== 0) return { result: built, outPath: null, stage: 'input' };
  // Signed access, while init sets it up: the input may have been built before nix.conf named
  // the key (and a daemon reads it only when restarted), so it is signed here by the key itself.
  if (opts.signWith) {
    const p = built.stdout.trim().split('\n').pop() ?? '';
    const signed = await exec(
      'nix',
      ['--extra-experimental-features', 'nix-command', 'store', 'sign', '--key-file', opts.signWith, p],
      opts.exec,
    );
    if (signed.exitCode !== 0) return { result: signed, outPath: null, stage: 'input' };
  }
  const args = ['-E', PROBE_NIX, '--argstr', 'nonce', freshNonce(), '--argstr', 'inputNonce', input.nonce];
  const result = await exec(
    'nix-build',
    [...args, '--argstr', 'system', opts.system, '--no-out-link', '--max-jobs', '0', '--builders', opts.builders],
    { timeoutMs: 580_000, ...opts.exec },
  );
  const last = result.stdout.trim().split('\n').pop() ?? '';
  return { result, outPath: result.exitCode === 0 && last.startsWith('/nix/store/') ? last : null, stage: 'probe' };
}
