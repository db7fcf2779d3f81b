// Steps 7 and 10 as they run after the changes: the builder checked the way Nix's build
// hook reaches it, by the very checks `nixremote doctor` runs (one model of the daemon's
// path: the machine line, ssh config, key, network, host key, login, a silent shell, Nix
// there, capabilities, trust, the store ping), and then the proof, doctor's real build:
// a fresh derivation with this builder's line as the only builders, found in its store.
import { realCtx } from '../../doctor/context.js';
import { BuilderFacts } from '../../path/facts.js';
import { pathChecks } from '../../path/walk.js';
import { runChecks } from '../../doctor/runner.js';
import type { CheckReport, Result } from '../../doctor/types.js';
import { parseMachines } from '../../nix/machines-file.js';
import { StepFailed, type Step } from '../../plan/plan.js';
import type { WizardCtx } from './context.js';

export interface PathSteps {
  verify: Step;
  proof: Step | null;
  /** Ends the checks' shared ssh connection; run when init ends, however it ends. */
  done: () => Promise<void>;
}

/** What a failed check says, as the reason a step of the apply failed. */
function failed(step: string, title: string, r: Result): StepFailed {
  return new StepFailed(
    step,
    `${title}: ${r.summary}${r.cause ? `\n  cause: ${r.cause}` : ''}${r.fix ? `\n  fix:   ${r.fix}` : ''}`,
  );
}

export function pathSteps(
  c: WizardCtx,
  name: string,
  machineLine: string,
  machinesFile: string,
  testBuild: boolean,
  /** Signed access: the signing key (the user is meant to be untrusted; the builder's trust in the key is checked next, for real). */
  signingKeyFile: string | null = null,
): PathSteps {
  const signed = signingKeyFile !== null;
  const machine = parseMachines(machineLine, machinesFile).machines[0]!;
  const state = new BuilderFacts(realCtx(c.exec, c.install, { build: testBuild, drv: null }), machine, {
    share: true,
    ...(signingKeyFile ? { signingKeyFile } : {}),
  });
  const checks = pathChecks('doctor');
  const build = checks.find((x) => x.id === 'build')!;
  const before = checks.filter((x) => x !== build && !(signed && x.id === 'trust'));
  const verify: Step = {
    kind: 'check',
    title: `Check: ssh ${name} as Nix's build hook does (doctor's ${before.length} checks)`,
    detail: `ssh -x -a -o BatchMode=yes ${name} ..., as ${c.install.user.name} with no agent: login, a silent shell, nix-store, capabilities, trust, the store ping`,
    run: async () => {
      const reports: CheckReport[] = await runChecks(before, state);
      const bad = reports.find((r) => r.status === 'fail');
      if (bad) throw failed('check', bad.title, bad);
      for (const w of reports.filter((r) => r.status === 'warn')) c.out.warn(`${w.title}: ${w.summary}`);
      const ping = reports.find((r) => r.id === 'store-ping');
      return `${reports.filter((r) => r.status === 'pass').length} of ${reports.length} checks passed${ping ? `; store ping ${ping.summary}` : ''}`;
    },
  };
  const proof: Step | null = testBuild
    ? {
        kind: 'check',
        // The builder's own line is the only builder for this build: with others configured,
        // Nix could send it to any of them, and it must land on this one.
        title: `Prove it: build a fresh derivation with --max-jobs 0 --builders '<${name}'s line>'`,
        detail: `it can only succeed on a builder; then look for the output in ${name}'s store`,
        run: async () => {
          const r = await build.run(state);
          if (r.status !== 'pass') throw failed('build', build.title, r);
          return r.summary;
        },
      }
    : null;
  return { verify, proof, done: async () => state.close() };
}
