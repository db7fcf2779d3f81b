// Through Nix itself: the store ping as the build hook opens the store, and a real build.
import type { Check } from '../types.js';
import { fail, pass } from '../types.js';
import { explainBuild } from '../../nix/build-errors.js';
import { parseStorePing, formatVersion } from '../../nix/version.js';
import { type BuilderState, realBuild, ssh, storePing } from './builder-state.js';

export const storeChecks: Check<BuilderState>[] = [
  {
    id: 'store-ping',
    title: 'store ping',
    needs: ['remote-nix'],
    timeoutMs: 90_000,
    run: async (s) => {
      const ping = await (s.early?.ping ?? storePing(s));
      if (!ping) return fail('cannot run the local nix', '`nix --version` failed', 'install Nix, or put it on PATH');
      const { r, ev, v } = ping;
      if (r.exitCode !== 0) {
        const ex = explainBuild(r.stderr);
        return fail(
          'the store ping failed',
          ex?.cause ?? r.stderr.trim().split('\n').pop() ?? '',
          ex?.fix ?? 'see the evidence',
          { evidence: [ev] },
        );
      }
      const info = parseStorePing(r.stdout + r.stderr);
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
  },
  {
    id: 'build',
    title: 'a real build',
    needs: ['login', 'remote-nix'],
    timeoutMs: 600_000,
    run: async (s) => {
      if (!s.ctx.build) return { status: 'skip', summary: 'skipped (--no-build)' };
      const { result: r, outPath: out } = await (s.early?.build ?? realBuild(s));
      const ev = { command: r.command, output: (r.stdout + r.stderr).trim().split('\n').slice(-12).join('\n') };
      if (!out) {
        const ex = explainBuild(r.stderr);
        return fail(
          'a build sent to this builder failed',
          ex?.cause ?? 'see the evidence',
          ex?.fix ?? "read Nix's output in the evidence",
          { evidence: [ev] },
        );
      }
      const there = await ssh(s, ['test', '-e', out]);
      if (there.exitCode !== 0)
        return fail(
          `${out} was built, but is not in the builder's store`,
          'the build did not run there',
          'see the evidence',
          { evidence: [ev, there.ev] },
        );
      return pass(`${out} was built on ${s.name}`, { evidence: [ev] });
    },
  },
];
