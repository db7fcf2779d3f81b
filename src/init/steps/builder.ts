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

export async function askBuilder(c: WizardCtx): Promise<BuilderAnswers> {
  const { answers, flags } = c;
  const host = await answers.text({ flag: '--host', value: flags.host, message: 'Builder address (host name or IP):', parse: validateHost });
  const port = await answers.text({ flag: '--port', value: flags.port, message: 'SSH port:', default: '22', parse: validatePort });
  const user = await answers.text({ flag: '--user', value: flags.user, message: 'SSH user on the builder:', parse: validateUser });
  const defaultName = host.toLowerCase().replace(/[^a-z0-9._-]/g, '-').replace(/^[^a-z0-9]+/, '') || 'builder';
  const name = await answers.text({ flag: '--name', value: flags.name, message: 'Name for this builder (ssh Host alias):', default: defaultName, parse: validateName });
  return { host, port, user, name };
}

/** From here on a run reads the files it will plan edits of: one run at a time. */
export async function lockBuildUser(c: WizardCtx): Promise<void> {
  if (c.flags.dryRun) return;
  const release = await lockBuildUserFiles(lockPathFor(c.home), c.out);
  c.onExit(release);
}
