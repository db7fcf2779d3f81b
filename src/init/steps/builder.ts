// Step 2. The builder: address, port, ssh user, and the name used everywhere after.
import type { WizardCtx } from './context.js';
import { lockBuildUserFiles, lockPathFor } from '../../io/lock.js';
import { validateHost, validateName, validatePort, validateUser } from '../../validate.js';

export interface BuilderAnswers {
  host: string;
  port: number;
  user: string;
  name: string;
}

/**
 * A name of its own for the builder, from the first label of the host (or the address with
 * dashes). Not the address itself: a `Host 10.0.0.5` block with User, IdentityFile and
 * IdentitiesOnly would change how this user's ssh reaches that machine for everything else.
 */
export function defaultName(host: string): string {
  const isAddress = /^[\d.]+$|:/.test(host);
  const label = (isAddress ? host.replace(/[.:]+/g, '-') : host.split('.')[0]!)
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, '-');
  return `nix-${label.replace(/^[^a-z0-9]+/, '') || 'builder'}`;
}

/**
 * The builder's address, port, user and name. `before` is an earlier set of answers that
 * turned out wrong: its values are the defaults, and the questions are asked again.
 */
export async function askBuilder(c: WizardCtx, before?: BuilderAnswers): Promise<BuilderAnswers> {
  const { answers, flags, out } = c;
  const again = before !== undefined;
  const host = await answers.text({
    flag: '--host',
    value: again ? undefined : flags.host,
    message: 'Builder address (host name or IP):',
    default: before?.host,
    parse: validateHost,
  });
  const port = await answers.text({
    flag: '--port',
    value: again ? undefined : flags.port,
    message: 'SSH port:',
    default: String(before?.port ?? 22),
    parse: validatePort,
  });
  const user = await answers.text({
    flag: '--user',
    value: again ? undefined : flags.user,
    message: 'SSH user on the builder:',
    default: before?.user,
    parse: validateUser,
  });
  const suggested = before && before.name !== defaultName(before.host) ? before.name : defaultName(host);
  const name = await answers.text({
    flag: '--name',
    value: again ? undefined : flags.name,
    message: 'Name for this builder (ssh Host alias, used only by Nix):',
    default: suggested,
    parse: validateName,
  });
  if (name === defaultName(host) && flags.name === undefined)
    out.info(`  ${name}: a name of its own, so that the Host block changes nothing else that reaches ${host}`);
  if (name === host.toLowerCase()) {
    out.warn(
      `the name is the address itself: its Host block (User ${user}, IdentityFile, IdentitiesOnly) will apply to everything this user's ssh does with ${host}, not only Nix's builds`,
    );
  }
  return { host, port, user, name };
}

/** From here on a run reads the files it will plan edits of: one run at a time. */
export async function lockBuildUser(c: WizardCtx): Promise<void> {
  if (c.flags.dryRun || c.locked) return;
  const release = await lockBuildUserFiles(lockPathFor(c.home), c.out);
  c.onExit(release);
}
