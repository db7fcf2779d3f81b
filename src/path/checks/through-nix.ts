// Through Nix itself: the store ping as the build hook opens the store, and a real build.
import { diagnose } from '../catalogue.js';
import { fail, pass } from '../../doctor/types.js';
import { formatVersion, parseStorePing } from '../../nix/version.js';
import { showCommand } from '../../io/exec.js';
import { formatMachineLine } from '../../nix/machines-file.js';
import type { PathCheck } from '../check.js';

/** A build to run by hand that shows more: a tiny derivation, as the proof's, with Nix's chatter on. */
function byHand(builders: string | null): string {
  const expr = `derivation { name = "by-hand"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; t = builtins.currentTime; }`;
  return showCommand('nix-build', [
    '-E',
    expr,
    '--no-out-link',
    ...(builders === null ? ['--builders', ''] : ['--max-jobs', '0', '--builders', builders]),
    '-vvv',
  ]);
}

export const storePingCheck: PathCheck = {
  id: 'store-ping',
  title: 'store ping',
  needs: ['remote-nix'],
  tiers: ['doctor'],
  timeoutMs: 90_000,
  run: async (f) => {
    const ping = await f.ping();
    if (!ping) return fail('cannot run the local nix', '`nix --version` failed here', 'install Nix, or put it on PATH');
    const { r, ev, v } = ping;
    if (r.exitCode !== 0) {
      const d = diagnose(r, 'ping', await f.names(), 'the store ping', `${r.command} -vvv`);
      return fail('the store ping failed', d.cause, d.fix, { evidence: [ev] });
    }
    const info = parseStorePing(r.stdout + r.stderr);
    // Signed access: over ssh-ng the user is meant to be untrusted; this machine's signature carries its inputs.
    const keys = f.signingKeys();
    if (info.trusted === false && f.scheme === 'ssh-ng' && keys.length)
      return pass(
        `answers; the ssh user is not trusted there, as signed access wants: inputs built here go by this machine's signature (${keys.map((k) => k.split(':')[0]).join(', ')}), which the real build puts to the test`,
        { evidence: [ev] },
      );
    if (info.trusted === false)
      return fail(
        'the builder answers, but says the ssh user is not trusted',
        "the builder's nix-daemon does not trust the ssh user",
        'add it to trusted-users on the builder',
        { evidence: [ev] },
      );
    return pass(`answers (local Nix ${formatVersion(v)}${info.version ? `, builder ${info.version}` : ''})`, {
      evidence: [ev],
    });
  },
};

export const buildCheck: PathCheck = {
  id: 'build',
  title: 'a real build',
  needs: ['login-shell', 'remote-nix'],
  tiers: ['doctor'],
  timeoutMs: 600_000,
  run: async (f) => {
    if (!f.ctx.build) return { status: 'skip', summary: 'skipped (--no-build)' };
    const { result: r, outPath: out, stage } = await f.build();
    const ev = { command: r.command, output: (r.stdout + r.stderr).trim().split('\n').slice(-12).join('\n') };
    if (!out) {
      if (stage === 'input') {
        const d = diagnose(r, 'build', await f.names(), "the proof's input, built here", byHand(null));
        return fail("the proof's input could not be built on this machine", d.cause, d.fix, { evidence: [ev] });
      }
      const d = diagnose(
        r,
        'build',
        await f.names(),
        'a build sent to this builder',
        byHand(formatMachineLine(f.machine)),
      );
      return fail('a build sent to this builder failed', d.cause, d.fix, { evidence: [ev] });
    }
    const there = await f.has(out);
    if (there.exitCode !== 0)
      return fail(
        `${out} was built, but is not in the builder's store`,
        `the build did not run on ${f.name}: ${there.command} exited ${there.exitCode}`,
        `run a build by hand and read where the build hook sends it: ${byHand(formatMachineLine(f.machine))}`,
        { evidence: [ev, there.ev] },
      );
    return pass(`${out} was built on ${f.name}, with an input built here copied to it`, { evidence: [ev] });
  },
};
