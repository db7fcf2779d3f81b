// The login, as Nix makes it: the key accepted, the account's shell running the command
// sent, and a shell that prints nothing of its own on stdout.
import { diagnose, match, quote, type Names } from '../catalogue.js';
import { fail, pass, warn, type Result } from '../../doctor/types.js';
import { startupFileFor } from '../../ssh/system-ssh.js';
import { decodeProtocolError } from '../protocol-text.js';
import type { BuilderFacts } from '../facts.js';
import type { PathCheck } from '../check.js';

export const loginCheck: PathCheck = {
  id: 'login',
  title: 'login with the key, as Nix does',
  needs: ['host-key', 'key'],
  tiers: ['status', 'doctor'],
  run: async (f) => {
    const { run, authOk } = await f.login();
    if (authOk) {
      f.startEarly();
      return pass(`ssh ${f.target} accepts the key`, { evidence: [run.ev] });
    }
    if (run.timedOut)
      return fail(
        `ssh ${f.target} did not finish in time`,
        `ssh was stopped after waiting; until then it printed ${quote((run.stdout + run.stderr).trim()) || 'nothing'}`,
        `ssh -v ${f.name} true as the build user shows where it stops`,
        { evidence: [run.ev] },
      );
    const d = diagnose(run, 'login', await f.names(), `ssh ${f.target}`, `ssh -v ${f.name} true as the build user`);
    return fail(`ssh ${f.target} failed (exit ${run.exitCode})`, d.cause, d.fix, { evidence: [run.ev] });
  },
};

/**
 * Whether the command Nix sends runs as sent. sshd runs it as `SHELL -c COMMAND`, so a
 * login shell that runs no commands (nologin, /bin/false) stops every build; a forced
 * command (command= on the key line, ForceCommand) runs instead of it, and then only Nix's
 * own protocol can tell whether it is the right one.
 */
export const loginShellCheck: PathCheck = {
  id: 'login-shell',
  title: 'the login runs commands',
  needs: ['login'],
  tiers: ['status', 'init', 'doctor'],
  run: async (f) => {
    const { run, probe } = await f.login();
    if (probe) return pass(`${probe.shell ?? 'the login shell'} runs the command sent`);
    const n = await f.names();
    const hit = match(run, 'login');
    if (hit && hit.entry.from === 'shell')
      return fail(
        `the login shell of ${n.user ?? 'the ssh user'} runs no commands`,
        hit.entry.cause(n, hit.said, run.stdout + run.stderr),
        hit.entry.fix(n, hit.said, run.stdout + run.stderr),
        { evidence: [run.ev] },
      );
    // The command sent did not run, and the shell did not say why: something else answered.
    return forcedCommand(f, run, n);
  },
};

async function forcedCommand(
  f: BuilderFacts,
  run: Awaited<ReturnType<BuilderFacts['login']>>['run'],
  n: Names,
): Promise<Result> {
  const unseen =
    "the builder's facts (its shell, Nix version and settings, trust, free space, the modes of its ssh files) are not visible through it";
  if (f.o.transport)
    return warn('the command sent was not what ran: a forced command answers instead', {
      cause: unseen,
      fix: 'the checks after the key is in place judge it by the store ping and a real build',
    });
  const own = await f.ping();
  // A key that may only speak Nix (init --restrict-to-nix, NixOS's nix.sshServe): the right
  // setup, not a fault; what it hides is said, and judged by the store ping and the build.
  if (own && own.r.exitCode === 0)
    return pass(
      `a forced command answers instead of the shell, and it serves ${f.scheme}:// (the key can only speak Nix); ${unseen.replace("the builder's facts", 'its facts')}, so the store ping and the real build judge them`,
      { evidence: [run.ev, own.ev] },
    );
  const other = f.scheme === 'ssh-ng' ? 'ssh' : 'ssh-ng';
  const theirs = await f.ping(other);
  if (theirs && theirs.r.exitCode === 0)
    return fail(
      `a forced command answers instead of the shell, and it serves ${other}://, not ${f.scheme}://`,
      `the key's forced command (command= in authorized_keys, or ForceCommand) is ${other === 'ssh-ng' ? 'nix-daemon --stdio' : 'nix-store --serve --write'}, which speaks ${other}:// only`,
      `use ${other}://${f.target} as the store URI (${f.machine.source.file}:${f.machine.source.line})`,
      { evidence: [run.ev, ...(own ? [own.ev] : []), theirs.ev] },
    );
  return fail(
    `the command sent to ${f.target} did not run, and neither ${f.scheme}:// nor ${other}:// answers`,
    `not recognised: the login was accepted, but the command printed ${quote((run.stdout + run.stderr).trim()) || 'nothing'} (exit ${run.exitCode}) instead of its answers`,
    `look at the key's line in ~${n.user ?? ''}/.ssh/authorized_keys (command=) and ForceCommand in sshd_config on the builder, and at ssh -v ${f.name} true`,
    { evidence: [run.ev, ...(own ? [own.ev] : []), ...(theirs ? [theirs.ev] : [])] },
  );
}

export const silentShellCheck: PathCheck = {
  id: 'shell',
  title: 'silent shell',
  needs: ['login-shell'],
  tiers: ['status', 'init', 'doctor'],
  run: async (f) => {
    const { noise, probe } = await f.login();
    if (!probe) return { status: 'skip', summary: 'not visible through a forced command: the store ping judges it' };
    if (noise === '') return pass("nothing on stdout from the shell's startup");
    // Show what Nix itself makes of it, decoded back to the text.
    const ping = f.o.transport ? null : await f.ping();
    const nixSays = ping && ping.r.exitCode !== 0 ? decodeProtocolError(ping.r.stderr) : null;
    return fail(
      `the shell on ${f.target} printed ${quote(noise.slice(0, 200))}`,
      "Nix speaks its protocol over that stdout, and text printed by the builder's shell corrupts it" +
        (nixSays !== null
          ? `: Nix's error quotes ${quote(nixSays)}, which is that text`
          : ' ("protocol mismatch" or "serialised integer ... is too large")'),
      `make ${startupFileFor(probe.shell)} print nothing for non-interactive shells (e.g. wrap it in: [ -t 0 ] && ...)`,
      { evidence: ping ? [ping.ev] : [] },
    );
  },
};

export const loginChecks: PathCheck[] = [loginCheck, loginShellCheck, silentShellCheck];
