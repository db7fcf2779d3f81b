// On the builder: the login with the key, a silent shell, Nix there, what it can build,
// and whether the ssh user may build.
import type { Check, Result } from '../types.js';
import { fail, pass, warn } from '../types.js';
import { withRemoteProgram } from '../../nix/machines-file.js';
import { startupFileFor } from '../../ssh/system-ssh.js';
import { classifySshError } from '../../ssh/ssh-errors.js';
import { decodeProtocolError } from '../../nix/build-errors.js';
import { asShCommand, parseProbe, PROBE_SCRIPT, type ProbeResult } from '../../remote/scripts.js';
import {
  type BuilderState,
  first,
  ssh,
  remoteCommand,
  storePing,
  cannotTake,
  startEarly,
  reachedAuth,
} from './builder-state.js';
import { editFile } from '../../plan/plan.js';
import { declarativeHome } from '../context.js';

export const remoteChecks: Check<BuilderState>[] = [
  {
    id: 'login',
    title: 'login with the key, as Nix does',
    needs: ['host-key', 'key'],
    run: async (s) => {
      // The host key check's login, when it got as far as authentication: a second try
      // would cost the builder another failed login (OpenSSH 9.8+ penalises those).
      const tried = s.attempt ? await s.attempt : null;
      const r = tried && reachedAuth(tried) ? tried : await ssh(s, ['true']);
      s.authStdout = r.stdout;
      if (r === tried && r.exitCode === 0) {
        // It ran the probe: the shell's own output is what came before the probe's.
        const at = r.stdout.indexOf('NIXREMOTE:');
        s.authStdout = at < 0 ? r.stdout : r.stdout.slice(0, at);
        s.probeRun = r;
      }
      if (r.exitCode === 0) {
        startEarly(s);
        return pass(`ssh ${s.target} works`, { evidence: [r.ev] });
      }
      const f = classifySshError(r.stderr, { name: s.name, user: first(s, 'user'), key: s.keyPath });
      return fail(`ssh ${s.target} failed (exit ${r.exitCode})`, f.cause, f.fix, { evidence: [r.ev] });
    },
  },
  {
    id: 'shell',
    title: 'silent shell',
    needs: ['login'],
    run: async (s) => {
      if (s.authStdout === '') return pass("nothing on stdout from the shell's startup");
      const shell =
        /NIXREMOTE:shell=(.*)/.exec(
          (s.probeRun ?? (await ssh(s, [asShCommand('echo "NIXREMOTE:shell=$SHELL"')]))).stdout,
        )?.[1] ?? null;
      // Show what Nix itself makes of it, decoded back to the text.
      const ping = await (s.early?.ping ?? storePing(s));
      const nixSays = ping && ping.r.exitCode !== 0 ? decodeProtocolError(ping.r.stderr) : null;
      return fail(
        `the shell on ${s.target} printed ${JSON.stringify(s.authStdout.slice(0, 200))}`,
        "Nix speaks its protocol over that stdout, and text printed by the builder's shell corrupts it" +
          (nixSays !== null
            ? `: Nix's error quotes ${JSON.stringify(nixSays)}, which is that text`
            : ' ("protocol mismatch" or "serialised integer ... is too large")'),
        `make ${startupFileFor(shell)} print nothing for non-interactive shells (e.g. wrap it in: [ -t 0 ] && ...)`,
        { evidence: ping ? [ping.ev] : [] },
      );
    },
  },
  {
    id: 'remote-nix',
    title: 'Nix on the builder',
    needs: ['shell'],
    run: async (s) => {
      const probeRun = s.probeRun ?? (await ssh(s, [asShCommand(PROBE_SCRIPT)]));
      s.probe = parseProbe(probeRun.stdout);
      const prog = remoteCommand(s);
      // The probe ran the nix-store its shell finds, which is the one Nix's `ssh NAME
      // nix-store --serve` runs: its answer needs no second session.
      if (prog === 'nix-store' && s.probe.nixStorePath && s.probe.nixStoreVersion) {
        return pass(`${prog}: ${s.probe.nixStoreVersion}`, { evidence: [probeRun.ev] });
      }
      const r = await ssh(s, [prog, '--version']);
      if (r.exitCode === 0) {
        return pass(`${prog}: ${r.stdout.trim().split('\n')[0]}`, { evidence: [r.ev] });
      }
      const found = s.probe.nixStoreFound;
      if (found && !s.remoteProgram) {
        const wanted = s.scheme === 'ssh-ng' ? found.replace(/nix-store$/, 'nix-daemon') : found;
        const file = s.machine.source.file;
        const home = declarativeHome(s.ctx);
        const edited = home ? null : withRemoteProgram(s.ctx.read(file) ?? '', s.machine.source.line, wanted);
        // nix.buildMachines has no remote-program field; the query rides on hostName.
        const where = home
          ? `hostName = "${s.name}?remote-program=${wanted}" for ${s.name} in ${home}`
          : `${s.scheme}://${s.target}?remote-program=${wanted} as the store URI (${file}:${s.machine.source.line})`;
        return fail(
          `${prog} is not on the builder's non-interactive PATH`,
          `the shell Nix's ssh gets does not have ${prog} on PATH (exit ${r.exitCode}), but it is at ${found}`,
          `use ${where}`,
          {
            evidence: [r.ev],
            ...(edited === null
              ? {}
              : {
                  action: {
                    description: `add ?remote-program=${wanted} to ${s.name}'s store URI in ${file}`,
                    steps: [editFile(`remote-program for ${s.name}`, file, s.ctx.read(file), edited)],
                  },
                }),
          },
        );
      }
      return fail(
        `${prog} --version failed on the builder (exit ${r.exitCode})`,
        r.exitCode === 127
          ? `${prog} is not installed or not on the builder's non-interactive PATH`
          : (r.stderr.trim().split('\n').pop() ?? ''),
        'install Nix on the builder, or put it on the PATH its non-interactive shell gets',
        { evidence: [r.ev] },
      );
    },
  },
  {
    id: 'capabilities',
    title: 'systems and features',
    needs: ['remote-nix'],
    run: async (s) => {
      const p = s.probe!;
      const m = s.machine;
      const problems: string[] = [];
      const remoteSystems = [p.system, ...p.extraPlatforms].filter((x): x is string => !!x);
      if (p.system) {
        const missing = m.systems.filter((x) => !remoteSystems.includes(x));
        if (missing.length)
          problems.push(`claims ${missing.join(', ')}, but the builder's Nix builds ${remoteSystems.join(', ')}`);
      }
      if (p.systemFeatures) {
        const claimed = [...m.supportedFeatures, ...m.mandatoryFeatures];
        const missing = claimed.filter((f) => !p.systemFeatures!.includes(f));
        if (missing.length)
          problems.push(
            `claims feature ${missing.join(', ')}, which the builder's system-features (${p.systemFeatures.join(' ') || 'none'}) lack`,
          );
      }
      if ([...m.supportedFeatures, ...m.mandatoryFeatures].includes('kvm') && !p.kvm)
        problems.push('claims kvm, but the builder has no /dev/kvm');
      const line = `${m.source.file}:${m.source.line}`;
      if (problems.length) {
        return fail(
          problems.join('; '),
          'derivations sent for what the builder cannot do fail there, and the ones it could do may never be sent',
          `make the systems and features on the machine line (${line}) match the builder: systems ${remoteSystems.join(',') || '?'}, features ${(p.systemFeatures ?? []).filter((f) => f !== 'kvm' || p.kvm).join(',') || '-'}`,
        );
      }
      if (m.mandatoryFeatures.length) {
        return warn(`mandatory features ${m.mandatoryFeatures.join(', ')}`, {
          cause: 'only derivations that require all of them are sent here; ordinary builds never are',
          fix: `clear the 7th field of the machine line (${line}) unless that is intended`,
        });
      }
      return pass(
        `builds ${m.systems.join(', ') || 'this system'}; features ${m.supportedFeatures.join(', ') || 'none'}`,
      );
    },
  },
  {
    id: 'derivation',
    title: 'the derivation (--drv/--attr)',
    needs: ['uri'],
    run: async (s) => {
      const drv = s.ctx.drv;
      if (!drv) return { status: 'skip', summary: 'no --drv or --attr given' };
      const m = s.machine;
      const why = cannotTake(m, drv.system, drv.requiredFeatures);
      const wants = `${drv.system}${drv.requiredFeatures.length ? ` with ${drv.requiredFeatures.join(', ')}` : ''}`;
      if (why) {
        return fail(
          `${drv.path} (${wants}) cannot go to ${s.name}: ${why}`,
          'Nix sends a derivation only to a builder whose systems include its system, whose features cover its requiredSystemFeatures, and whose mandatory features it requires',
          `change the machine line (${m.source.file}:${m.source.line}) if the builder can do it, or build it elsewhere`,
        );
      }
      return pass(`${drv.path} (${wants}) can go to ${s.name}`);
    },
  },
  {
    id: 'trust',
    title: 'allowed to build there',
    needs: ['remote-nix'],
    run: async (s) => trustVerdict(s.probe!),
  },
];

/**
 * May the ssh user build on the builder, from what the probe saw there: it owns the store
 * (single-user), or the builder's nix-daemon trusts it (trusted-users, a @group, or *).
 * init asks this before it writes anything; doctor as one of its checks.
 */
export function trustVerdict(p: ProbeResult): Result {
  if (p.storeWritable) return pass(`${p.user ?? 'the ssh user'} owns the builder's store (single-user install)`);
  if (!p.daemonSocket)
    return fail(
      "the builder's store is not writable by the ssh user and no nix-daemon socket is there",
      'the nix-daemon on the builder is not running',
      'start it on the builder: systemctl start nix-daemon (macOS: launchctl kickstart -k system/org.nixos.nix-daemon)',
    );
  if (p.trustedUsers === null)
    return warn("cannot read the builder's trusted-users", {
      cause: 'the build below tells whether the ssh user is trusted',
      fix: '',
    });
  const who = p.user ?? '';
  const ok =
    p.trustedUsers.includes('*') ||
    p.trustedUsers.includes(who) ||
    p.groups.some((g) => p.trustedUsers!.includes(`@${g}`));
  if (ok) return pass(`${who} is trusted (trusted-users = ${p.trustedUsers.join(' ')})`);
  return fail(
    `${who} is not in the builder's trusted-users (${p.trustedUsers.join(' ') || 'empty'})`,
    'the builder\'s nix-daemon refuses to build or import unsigned paths for an untrusted user ("you are not privileged to build input-addressed derivations")',
    `on the builder add "trusted-users = root ${who}" to /etc/nix/nix.conf (NixOS: nix.settings.trusted-users) and restart its nix-daemon`,
  );
}
