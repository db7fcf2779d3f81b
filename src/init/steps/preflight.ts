// Step 1. Who builds, and with what: ssh and Nix must be here, and on a multi-user install
// only root's ssh setup counts.
import * as path from 'node:path';
import type { InitDeps, WizardCtx } from './context.js';
import { InitFailed } from './context.js';
import { detectInstall } from '../install.js';
import type { InitFlags } from '../options.js';
import { machinesFormat } from './nix-side.js';

export async function preflight(flags: InitFlags, d: InitDeps): Promise<WizardCtx> {
  for (const tool of ['ssh', 'ssh-keygen', 'nix', 'nix-build']) {
    const r = await d.exec('sh', ['-c', `command -v ${tool}`]);
    if (r.exitCode !== 0) {
      throw new InitFailed(
        `${tool} is not on this machine's PATH; nixremote sets up ${tool.startsWith('nix') ? 'Nix, so install Nix first' : 'OpenSSH, so install the OpenSSH client first'}`,
      );
    }
  }
  const install = detectInstall();
  const kind = install.multiUser ? 'multi-user' : 'single-user';
  d.out.step(
    `Nix install: ${kind} (${install.reason}); builds run as ${install.multiUser ? 'root' : install.user.name}`,
  );
  if (install.multiUser && install.user.uid !== 0) {
    throw new InitFailed(
      "on a multi-user install the nix-daemon builds as root, so root's ssh key, ssh config and known_hosts are the ones that count; re-run with sudo",
    );
  }
  const home = install.user.home;
  const c: WizardCtx = { ...d, flags, install, home, sshDir: path.join(home, '.ssh') };
  // Before anything is touched: a TOML machines file asked for where it cannot be.
  if (flags.machinesFormat !== undefined) await machinesFormat(c, path.join(install.confDir, 'machines'));
  return c;
}
