// `nixremote init`: ask (or read flags), look at the builder without changing anything,
// make the plan, show it, then apply it and prove that a build really ran on the builder.
// Each numbered step lives in steps/; they ask and decide, and return planned steps.
import { repeatCommand } from './answers.js';
import { UsageError } from '../validate.js';
import type { InitFlags } from './options.js';
import { applyPlan, renderPlan, type Step } from '../plan/plan.js';
import { planReporter } from '../plan/reporter.js';
import { askBuilder, lockBuildUser } from './steps/builder.js';
import { askKey, keygenStep } from './steps/key.js';
import { readSshFiles, sshFileSteps, trustHostKey, wrongAddress } from './steps/ssh-files.js';
import { copyKeyStep, getAccess } from './steps/access.js';
import { askCapabilities, inspectBuilder } from './steps/inspect.js';
import { nixSide } from './steps/nix-side.js';
import { pathSteps, type PathSteps } from './steps/verify.js';
import { preflight } from './steps/preflight.js';
import type { InitDeps } from './steps/context.js';
import type { HostKey } from '../ssh/host-key.js';
import * as fs from 'node:fs';
import { signingKey, signingKeygenStep } from '../nix/signing.js';
import { builderSudoStep, builderTrustStep } from './steps/signed.js';

export { InitFailed, type InitDeps } from './steps/context.js';

/** What init will do for one builder, planned and not yet applied. */
export interface InitPlan {
  name: string;
  steps: Step[];
  /** The lines said once the plan is applied. */
  finish: () => void;
  /** Closes the session and the checks' connections, however it ends. */
  close: () => Promise<void>;
}

export async function runInit(flags: InitFlags, d: InitDeps): Promise<void> {
  const plan = await planInit(flags, d);
  try {
    const { out, answers } = d;
    out.info('');
    out.info(out.bold(flags.dryRun ? 'Plan (dry run: nothing will be changed):' : 'Plan:'));
    out.info(renderPlan(plan.steps));
    out.info('');
    if (flags.dryRun) {
      out.ok('Dry run: nothing was changed, locally or on the builder.');
      return;
    }
    if (
      !answers.yes &&
      !(await answers.confirm({ flag: '--yes', value: undefined, message: 'Apply this plan?', default: true }))
    ) {
      out.info('Nothing was changed.');
      return;
    }
    d.beginApply();
    await applyPlan(plan.steps, {
      isInterrupted: d.isInterrupted,
      stepDelayMs: Number(process.env.NIXREMOTE_TEST_STEP_DELAY_MS) || undefined,
      reporter: planReporter(out),
    });
    plan.finish();
  } finally {
    await plan.close();
  }
}

/** Steps 1 to 10 for one builder: asked (or read from flags), looked at, planned. */
export async function planInit(flags: InitFlags, d: InitDeps): Promise<InitPlan> {
  const c = await preflight(flags, d); // 1. who builds
  const { out, answers } = c;
  let b = await askBuilder(c); // 2. the builder
  await lockBuildUser(c);
  const { keyPath, key } = await askKey(c); // 3. the key
  let files = await readSshFiles(c, b.name);
  let hostKey: HostKey;
  for (;;) {
    try {
      hostKey = await trustHostKey(c, b, files); // 4. the host key
      break;
    } catch (e) {
      // Nothing listens there, the name does not resolve, it is not sshd: on a terminal,
      // back to the address and port with what went wrong, instead of starting over.
      if (!wrongAddress(e) || !(await answers.canAsk())) throw e;
      out.fail(e.message.replace(/^--host\/--port: /, ''));
      out.info('  Check the address and port, and answer again:');
      b = await askBuilder(c, b);
      c.adopt = undefined; // a new name asks again about taking over what stands under it
      files = await readSshFiles(c, b.name);
    }
  }
  const sshSteps = await sshFileSteps(c, b, files, keyPath, hostKey); // 5. the Host block
  const access = await getAccess(c, b, keyPath, key, hostKey); // 6. a way in
  let checks: PathSteps | null = null;
  const close = async () => {
    access.session?.close();
    await checks?.done();
  };
  try {
    const {
      probe,
      remoteProgram,
      protocol,
      fixModes,
      keyCommand,
      forcedAlready,
      access: how,
      localVersion,
    } = await inspectBuilder(c, b, access, hostKey); // 7. as Nix sees it
    const cap = await askCapabilities(c, probe); // 8. what it can do
    // Signed access: this machine's signing key, made once, and the builder checked to trust it.
    const signing = how === 'signed' ? signingKey(keyPath) : null;
    const nix = await nixSide(
      c,
      b,
      keyPath,
      hostKey,
      { ...cap, protocol },
      remoteProgram,
      files.configPath,
      signing?.secret ?? null,
    ); // 9. the Nix side

    const copy = copyKeyStep(c, b, access, keyPath, key, hostKey, { command: keyCommand, already: forcedAlready });
    checks = pathSteps(c, b.name, nix.machineLine, nix.file, flags.testBuild, signing?.secret ?? null);
    const steps: Step[] = [
      ...(key.exists ? [] : [keygenStep(c.exec, keyPath)]),
      ...sshSteps,
      ...(fixModes ? [fixModes] : []),
      ...(copy ? [copy] : []),
      ...(signing && !fs.existsSync(signing.secret) ? [signingKeygenStep(c.exec, signing)] : []),
      ...(signing && flags.builderSudo ? [builderSudoStep(c, b.name, access, signing, forcedAlready)] : []),
      checks.verify,
      ...(signing ? [builderTrustStep(c, b.name, nix.storeUri, signing, localVersion ?? [2, 16, 0])] : []),
      ...nix.steps,
    ];
    if (how === 'signed') answers.note('--access', 'signed');
    if (flags.builderSudo) {
      if (!signing)
        throw new UsageError('--builder-sudo goes with --access signed: it adds the signing key on the builder');
      answers.note('--builder-sudo', true);
    }
    if (checks.proof)
      steps.push(checks.proof); // 10. prove it
    else answers.note('--no-test-build', true);
    // 11. Finish.
    const finish = () => {
      out.info('');
      out.ok(out.bold(`${b.name} is set up${flags.testBuild ? ' and a build ran on it' : ''}.`));
      out.info(`  machine line: ${nix.machineLine}`);
      if (nix.confChanged && c.install.daemon && !c.install.daemon.restart)
        out.warn(`restart the nix-daemon: ${c.install.daemon.how}`);
      out.info(`  when builds stop offloading: nixremote doctor ${b.name}`);
      if (!answers.yes) {
        out.info('');
        out.info('To do the same again without questions:');
        out.info(
          `  ${repeatCommand(answers.given)}${answers.given.some(([f]) => f === '--password-stdin') ? ' < password-file' : ''}`,
        );
      }
    };
    return { name: b.name, steps, finish, close };
  } catch (e) {
    await close();
    throw e;
  }
}
