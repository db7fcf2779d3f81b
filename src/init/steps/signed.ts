// Signed access, the builder's side, checked for real before this machine's Nix config is
// written: a path built here, signed with this machine's key, is copied to the builder the
// way Nix will copy inputs (nix copy --to its store URI, through the ssh files just
// written). The builder's nix-daemon takes it only if it trusts that key; until it does,
// init says exactly what to add there, and waits (on a terminal) or stops (unattended).
import * as fs from 'node:fs';
import { buildInput } from '../../nix/probe-build.js';
import { builderTrustWords, UNTRUSTED_SIGNATURE, type SigningKey } from '../../nix/signing.js';
import { nixCommandFlags, type Version } from '../../nix/version.js';
import { StepFailed, type RunStep } from '../../plan/plan.js';
import { envWithoutAgent } from '../../ssh/system-ssh.js';
import { quote } from '../../path/catalogue.js';
import type { WizardCtx } from './context.js';
import type { Access } from './access.js';
import { sudoTrustCommand } from '../../remote/scripts.js';
import { UsageError } from '../../validate.js';

export function builderTrustStep(c: WizardCtx, name: string, storeUri: string, k: SigningKey, v: Version): RunStep {
  return {
    kind: 'check',
    title: `Check: ${name}'s nix-daemon takes a path this machine signed (its trusted-public-keys, not trusted-users)`,
    detail: `nix store sign --key-file ${k.secret} on a path built here, then nix copy --to ${storeUri}`,
    run: async () => {
      const built = await buildInput(c.exec).run;
      const p = built.stdout.trim().split('\n').pop() ?? '';
      if (built.exitCode !== 0 || !p.startsWith('/'))
        throw new StepFailed('trust', `building a path to sign here failed: ${built.stderr.trim().split('\n').pop()}`);
      const nix = (args: string[]) =>
        c.exec('nix', [...nixCommandFlags(v), ...args], { env: envWithoutAgent(), timeoutMs: 120_000 });
      const signed = await nix(['store', 'sign', '--key-file', k.secret, p]);
      if (signed.exitCode !== 0) throw new StepFailed('trust', `nix store sign failed: ${signed.stderr.trim()}`);
      const publicKey = fs.readFileSync(k.public, 'utf8').trim();
      for (;;) {
        const r = await nix(['copy', '--to', storeUri, p]);
        if (r.exitCode === 0) return `it takes what ${k.name} signs`;
        const said = r.stderr.trim();
        if (!UNTRUSTED_SIGNATURE.test(said))
          throw new StepFailed(
            'trust',
            `not recognised: nix copy --to ${storeUri} failed (exit ${r.exitCode}) and printed ${quote(said) || 'nothing'}; nixremote doctor ${name} looks at the way in`,
          );
        c.out.info(`\n${builderTrustWords(name, publicKey)}\n`);
        if (c.answers.yes || !(await c.answers.canAsk()))
          throw new StepFailed(
            'trust',
            `${name}'s nix-daemon does not trust this machine's signing key yet (${said.split('\n').pop()}); add it as shown above, restart that daemon, then run the same command again`,
          );
        await c.pause("Press Enter once it is added and the builder's nix-daemon restarted");
      }
    },
  };
}

/**
 * --builder-sudo: the builder's side done over the session init holds, as root through sudo
 * (-S, the password on stdin: the one init logged in with, or asked once; never stored):
 * this machine's public key in a nixremote block of the builder's nix.conf, a backup
 * beside it, and its nix-daemon restarted where systemd or launchd runs it.
 */
export function builderSudoStep(c: WizardCtx, name: string, a: Access, k: SigningKey, forcedAlready: boolean): RunStep {
  if (!a.session || forcedAlready)
    throw new UsageError(
      `--builder-sudo needs a shell on ${name}: log in with the password (--copy-key password), since the key ${forcedAlready ? 'can only speak Nix there' : 'is not in yet'}`,
    );
  const session = a.session;
  return {
    kind: 'remote',
    title: `On ${name}, as root (sudo): trust this machine's signing key in its nix.conf, and restart its nix-daemon`,
    detail: `a nixremote block of extra-trusted-public-keys at the end of /etc/nix/nix.conf (nix.custom.conf with Determinate), a backup beside it; trusted-users untouched`,
    run: async () => {
      const password =
        a.password ??
        (await c.answers.password({
          flag: '--password-stdin',
          fromStdin: () => (c.flags.passwordStdin ? c.readStdin() : null),
          message: `Password for sudo on ${name} (used once, never stored):`,
        }));
      const publicKey = fs.readFileSync(k.public, 'utf8').trim();
      const r = await session.run(sudoTrustCommand(publicKey, 'add'), `${password}\n`);
      const said = (key: string) => new RegExp(`^NIXREMOTE:${key}=(.*)$`, 'm').exec(r.stdout)?.[1];
      if (/^NIXREMOTE:declarative$/m.test(r.stdout))
        throw new StepFailed(
          'sudo',
          `${name}'s nix.conf is generated from its NixOS or nix-darwin configuration: add nix.settings.extra-trusted-public-keys = [ "${publicKey}" ] there and rebuild, then run the same command again without --builder-sudo`,
        );
      const file = said('added') ?? said('present');
      if (r.exitCode !== 0 || !file)
        throw new StepFailed(
          'sudo',
          `sudo on ${name} failed (exit ${r.exitCode}): ${quote(r.stderr.trim()) || 'it printed nothing'}; without sudo there, leave out --builder-sudo and add the key by hand`,
        );
      if (said('present')) return `already in ${file}`;
      const restarted = said('restarted');
      if (!restarted)
        c.out.warn(
          `${name}'s nix-daemon is not run by systemd or launchd here: restart it yourself so it reads ${file}`,
        );
      return `added to ${file}${said('backup') ? ` (backup: ${said('backup')})` : ''}${restarted ? `; ${restarted}` : ''}`;
    },
  };
}
