// The Linux builders a Mac runs for itself (src/builders/vm-builders.ts), checked from what
// can be seen here: the launchd job's plist, the VM's port, root's ssh reaching the Host
// block nix-darwin writes, the key's mode; for an external builder, its program and the
// experimental feature Nix needs for it. Each finding names its fix; none is made.
import { macBuilders, vmPort, type MacBuilder } from '../../builders/vm-builders.js';
import type { Check, Result } from '../types.js';
import { fail, pass, warn } from '../types.js';
import type { LocalState } from './local.js';

interface Finding {
  level: 'fail' | 'warn';
  summary: string;
  cause: string;
  fix: string;
}

async function vmFindings(
  s: LocalState,
  b: Extract<MacBuilder, { kind: 'vm' }>,
): Promise<{ ok: string; found: Finding[] }> {
  const { ctx } = s;
  const found: Finding[] = [];
  const rebuild = 'darwin-rebuild switch';
  if (!ctx.stat(b.plist))
    found.push({
      level: 'fail',
      summary: `its launchd job ${b.label} is not installed (${b.plist} is missing)`,
      cause: 'nothing starts the VM, so the machine line names a builder that is never there',
      fix: `enable it in your nix-darwin configuration (nix.linux-builder.enable = true) and run ${rebuild}, or remove the machine line`,
    });
  const conf = ctx.read(b.sshConfig);
  if (conf === null)
    found.push({
      level: 'fail',
      summary: `no Host block for ${b.name} (${b.sshConfig} is missing)`,
      cause: `root's ssh cannot resolve ${b.name}: "Could not resolve hostname ${b.name}"`,
      fix: `run ${rebuild}: nix-darwin writes it`,
    });
  else {
    // nix-darwin writes only ssh_config.d; the stock /etc/ssh/ssh_config includes it.
    const main = ctx.read('/etc/ssh/ssh_config') ?? '';
    if (!/^\s*Include\s+(\/etc\/ssh\/)?ssh_config\.d\//im.test(main))
      found.push({
        level: 'fail',
        summary: `/etc/ssh/ssh_config does not include ssh_config.d, so root's ssh never reads ${b.sshConfig}`,
        cause: `ssh cannot resolve ${b.name} ("Could not resolve hostname ${b.name}"; nix-darwin#913): macOS's own ssh_config includes ssh_config.d, this one does not`,
        fix: 'add "Include /etc/ssh/ssh_config.d/*" as the first line of /etc/ssh/ssh_config',
      });
  }
  const port = vmPort(conf);
  const t = await ctx.tcp('127.0.0.1', port, 3000);
  if (!t.ok)
    found.push({
      level: 'fail',
      summary: `the VM does not answer on 127.0.0.1:${port}`,
      cause: `the VM is not running (${b.label} starts it at boot and keeps it up; it takes a minute to boot)`,
      fix: `sudo launchctl kickstart -k system/${b.label}; sudo launchctl print system/${b.label} says why it stopped`,
    });
  const key = b.machine?.sshKey ?? '/etc/nix/builder_ed25519';
  const st = ctx.stat(key);
  if (!st)
    found.push({
      level: 'fail',
      summary: `its key ${key} does not exist`,
      cause:
        'the VM has not been started once since it was enabled (its first start installs the key), or the key was removed',
      fix: `sudo launchctl kickstart -k system/${b.label}: create-builder installs the key again`,
    });
  else if (st.uid === 0 && st.mode & 0o077)
    found.push({
      level: 'fail',
      summary: `its key ${key} can be read by others (mode ${(st.mode & 0o777).toString(8)})`,
      cause: 'ssh refuses a private key that others can read ("UNPROTECTED PRIVATE KEY FILE")',
      fix: `sudo chmod 600 ${key}`,
    });
  return { ok: `${b.name} (${b.what}): the VM answers on 127.0.0.1:${port}`, found };
}

function externalFindings(
  s: LocalState,
  b: Extract<MacBuilder, { kind: 'external' }>,
): { ok: string; found: Finding[] } {
  const found: Finding[] = [];
  const st = s.ctx.stat(b.program);
  if (!st?.isFile || !(st.mode & 0o111))
    found.push({
      level: 'fail',
      summary: `${b.program} (external-builders, ${b.where}) ${st ? 'is not an executable file' : 'does not exist'}`,
      cause: `Nix runs it for every ${b.systems.join(' and ')} build and fails when it cannot`,
      fix: `reinstall it, or take it out of external-builders (${b.where})`,
    });
  const features = ['experimental-features', 'extra-experimental-features'].flatMap((n) =>
    (s.cfg.settings.get(n) ?? []).flatMap((x) => x.value.split(/\s+/)),
  );
  if (!features.includes('external-builders'))
    found.push({
      level: 'fail',
      summary: `external-builders is set (${b.where}), but the experimental feature external-builders is not on`,
      cause: `Nix fails such a build: "experimental Nix feature 'external-builders' is disabled"`,
      fix: 'add external-builders to extra-experimental-features in the same file',
    });
  if (b.name === 'determinate-nixd builder') {
    const conf = s.ctx.read('/etc/determinate/config.json');
    let state: unknown = null;
    try {
      state = conf ? (JSON.parse(conf) as { builder?: { state?: string } }).builder?.state : null;
    } catch {
      // A broken config.json is determinate-nixd's to report.
    }
    if (state === 'disabled')
      found.push({
        level: 'warn',
        summary: 'the native Linux builder is turned off in /etc/determinate/config.json (builder.state = "disabled")',
        cause: 'determinate-nixd does not start it, so Linux builds fail instead of going to another builder',
        fix: 'set builder.state to "enabled" (Determinate\'s nix-darwin module: determinateNixd.builder.state), or take external-builders out',
      });
  }
  return { ok: `${b.name} (${b.what}): serves ${b.systems.join(', ')}`, found };
}

/** The Mac's builders this state's files name, looked for once per state (doctor asks twice). */
const looked = new WeakMap<LocalState, MacBuilder[]>();
function macBuildersOf(s: LocalState): MacBuilder[] {
  let b = looked.get(s);
  if (!b) {
    b = macBuilders((p) => s.ctx.stat(p) !== null, s.builders.machines, s.cfg);
    looked.set(s, b);
  }
  return b;
}

export const macBuildersCheck: Check<LocalState> = {
  id: 'mac-builders',
  title: "this Mac's own Linux builders",
  needs: ['access'],
  run: async (s): Promise<Result> => {
    const builders = macBuildersOf(s);
    if (!builders.length)
      return s.ctx.platform === 'darwin'
        ? pass("none (nix-darwin's linux-builder, Determinate's native builder)")
        : { status: 'skip', summary: 'not a Mac' };
    const seen = await Promise.all(builders.map((b) => (b.kind === 'vm' ? vmFindings(s, b) : externalFindings(s, b))));
    const found = seen.flatMap((x, i) => x.found.map((f) => ({ ...f, summary: `${builders[i]!.name}: ${f.summary}` })));
    if (!found.length) return pass(seen.map((x) => x.ok).join('; '));
    const first = found.find((f) => f.level === 'fail') ?? found[0]!;
    const summary = found.map((f) => f.summary).join('; ');
    const cause = found.map((f) => f.cause).join('. ');
    const fix = found.map((f) => f.fix).join('; then ');
    return first.level === 'fail' ? fail(summary, cause, fix) : warn(summary, { cause, fix });
  },
};

/** Whether the check has anything to say here: a Mac, or a machine whose files name one. */
export const macBuildersApply = (s: LocalState) => s.ctx.platform === 'darwin' || macBuildersOf(s).length > 0;
