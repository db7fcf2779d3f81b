// Steps 7 and 10 as they run after the changes: the checks exactly as Nix will make them
// (system ssh as the build user, batch mode, no agent; the store ping of the local Nix
// version), and the proof that a build really runs on the builder.
import type { Step } from '../../plan/plan.js';
import { StepFailed } from '../../plan/plan.js';
import { sshAsNix, startupFileFor } from '../../ssh/system-ssh.js';
import { formatVersion, parseNixVersion, parseStorePing, storePingArgs } from '../../nix/version.js';
import { proveOffload } from '../prove.js';
import type { WizardCtx } from './context.js';

export function verifySteps(c: WizardCtx, name: string, storeUri: string, remoteProgram: string | null, shell: string | null): Step[] {
  const { exec } = c;
  const nixStore = remoteProgram ?? 'nix-store';
  return [
    {
      kind: 'check',
      title: `Check: ssh ${name} prints nothing for a command`,
      detail: `ssh -x -a -o BatchMode=yes ${name} true   (as ${c.install.user.name}, no agent)`,
      run: async () => {
        const r = await sshAsNix(exec, name, ['true']);
        if (r.exitCode !== 0) throw new StepFailed('ssh', `ssh ${name} true failed (exit ${r.exitCode}): ${r.stderr.trim()}`);
        if (r.stdout !== '') throw new StepFailed('ssh', `ssh ${name} true printed ${JSON.stringify(r.stdout.slice(0, 200))}; make ${startupFileFor(shell)} silent for non-interactive shells`);
      },
    },
    {
      kind: 'check',
      title: `Check: ssh ${name} ${nixStore} --version`,
      run: async () => {
        const r = await sshAsNix(exec, name, [nixStore, '--version']);
        if (r.exitCode !== 0) throw new StepFailed('nix-store', `ssh ${name} ${nixStore} --version failed (exit ${r.exitCode}): ${r.stderr.trim()}`);
        return r.stdout.trim();
      },
    },
    {
      kind: 'check',
      title: `Check: store ping of ${storeUri}`,
      run: async () => {
        const v = parseNixVersion((await exec('nix', ['--version'])).stdout);
        if (!v) throw new StepFailed('ping', 'cannot tell the local Nix version from `nix --version`');
        const r = await exec('nix', storePingArgs(v, storeUri), { timeoutMs: 60_000 });
        if (r.exitCode !== 0) throw new StepFailed('ping', `${r.command} failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`);
        const info = parseStorePing(r.stdout + r.stderr);
        return `local Nix ${formatVersion(v)}${info.version ? `, builder Nix ${info.version}` : ''}${info.trusted === null ? '' : info.trusted ? ', trusted' : ', NOT trusted'}`;
      },
    },
  ];
}

export function proofStep(c: WizardCtx, name: string, system: string, builders: string): Step {
  return {
    kind: 'check',
    title: `Prove it: build a fresh derivation with --max-jobs 0 --builders '<${name}'s line>'`,
    detail: `it can only succeed on a builder; then look for the output in ${name}'s store`,
    run: async () => {
      const r = await proveOffload(c.exec, { name, system, builders });
      if (!r.ok) throw new StepFailed('build', r.detail);
      return r.detail;
    },
  };
}
