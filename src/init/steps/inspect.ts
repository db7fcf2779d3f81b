// Steps 7 and 8, read-only: look at the builder as Nix will see it (a shell that prints,
// where nix-store is) and at what it can build.
import * as os from 'node:os';
import type { Exec } from '../../io/exec.js';
import type { HostKey } from '../../ssh/host-key.js';
import { machinesHostKeyField } from '../../ssh/host-key.js';
import { systemFromUname, type ProbeResult } from '../../path/probe.js';
import { BuilderFacts, type Transport } from '../../path/facts.js';
import { pathChecks } from '../../path/walk.js';
import { runChecks } from '../../doctor/runner.js';
import { realCtx } from '../../doctor/context.js';
import type { ParsedMachine } from '../../nix/machines-file.js';
import { showCommand } from '../../io/exec.js';
import { StepFailed, type RunStep } from '../../plan/plan.js';
import { UsageError, validateList, validatePositiveInt } from '../../validate.js';
import type { Access } from './access.js';
import { sshWithPinnedKey } from './access.js';
import type { BuilderAnswers } from './builder.js';
import { InitFailed, type WizardCtx } from './context.js';
import { signedUnsupported } from '../../nix/signing.js';
import { parseNixVersion, type Version } from '../../nix/version.js';

export type Protocol = 'ssh' | 'ssh-ng';

export interface Inspection {
  probe: ProbeResult | null;
  /** Makes the builder user's ssh files writable by the owner only, before the key is copied. */
  fixModes: RunStep | null;
  /** Where nix-store (ssh) or nix-daemon (ssh-ng) is when it is not on the non-interactive PATH. */
  remoteProgram: string | null;
  protocol: Protocol;
  /** The forced command for the key line (--restrict-to-nix), or null. */
  keyCommand: string | null;
  /** A forced command already answers for the key (facts the probe cannot see). */
  forcedAlready: boolean;
  access: AccessLevel;
  /** This machine's Nix, read for signed access. */
  localVersion: Version | null;
}

/** How the ssh user may build there: trusted (trusted-users) or signed (trusted-public-keys). */
export type AccessLevel = 'trusted' | 'signed';

/**
 * What a key that may only speak Nix runs instead of anything asked: the program Nix would
 * start for the protocol, by the path found on the builder (sshd runs it through the login
 * shell, whatever the client asks; the asked command is in SSH_ORIGINAL_COMMAND).
 */
export function forcedCommand(protocol: Protocol, program: string | null): string {
  const p = program ?? (protocol === 'ssh-ng' ? 'nix-daemon' : 'nix-store');
  return protocol === 'ssh-ng' ? `${p} --stdio` : `${p} --serve --write`;
}

export async function inspectBuilder(
  c: WizardCtx,
  b: BuilderAnswers,
  a: Access,
  hostKey: HostKey,
): Promise<Inspection> {
  const { out, answers, flags } = c;
  // This machine's Nix decides whether signed access can be offered (the builder's, after the probe).
  const localVersion = parseNixVersion((await c.exec('nix', ['--version'])).stdout);
  const canSign = signedUnsupported(localVersion, null) === null;
  // Access and protocol in one question when neither flag settles them: three ways to build there.
  let access: AccessLevel;
  let protocol: Protocol;
  if (flags.access === undefined && flags.protocol === undefined) {
    const way = await answers.choose<'trusted-ssh' | 'trusted-ssh-ng' | 'signed'>({
      flag: '--access',
      value: undefined,
      message: `How should Nix build on ${b.name}?`,
      default: 'trusted-ssh',
      choices: [
        {
          name: "trusted, over ssh: the user is in the builder's trusted-users; nix-store --serve, which every Nix speaks",
          value: 'trusted-ssh',
        },
        { name: "trusted, over ssh-ng: the same, through the builder's nix-daemon", value: 'trusted-ssh-ng' },
        {
          name: `signed, over ssh-ng: this machine signs what it builds, the builder trusts that one key, not the user (Nix 2.16 here, 2.15 there)${canSign ? '; least privilege' : ''}`,
          value: 'signed',
        },
      ],
    });
    access = way === 'signed' ? 'signed' : 'trusted';
    protocol = way === 'trusted-ssh' ? 'ssh' : 'ssh-ng';
    answers.note('--access', access);
    answers.note('--protocol', protocol);
  } else {
    access = await answers.choose<AccessLevel>({
      flag: '--access',
      // --protocol ssh answers it: signed access needs ssh-ng.
      value: flags.access ?? (flags.protocol === 'ssh' ? 'trusted' : undefined),
      message: `How may the ssh user build on ${b.name}?`,
      default: 'trusted',
      choices: [
        {
          name: "trusted: the user is in the builder's trusted-users (works with every Nix; root-equivalent there)",
          value: 'trusted',
        },
        {
          name: `signed: this machine signs what it builds, the builder trusts that one key, not the user (ssh-ng; Nix 2.16 here, 2.15 there)${canSign ? '; recommended' : ''}`,
          value: 'signed',
        },
      ],
    });
    if (access === 'signed' && flags.protocol === 'ssh')
      throw new UsageError(
        "--access signed needs --protocol ssh-ng: only the nix-daemon's protocol takes signed paths from an untrusted user",
      );
    protocol =
      access === 'signed'
        ? 'ssh-ng'
        : await answers.choose<Protocol>({
            flag: '--protocol',
            value: flags.protocol,
            message: 'How should Nix talk to it?',
            default: 'ssh',
            choices: [
              { name: 'ssh: nix-store --serve, which every Nix speaks', value: 'ssh' },
              { name: "ssh-ng: the builder's nix-daemon protocol (needs a user that daemon trusts)", value: 'ssh-ng' },
            ],
          });
  }
  if (access === 'signed') {
    const why = signedUnsupported(localVersion, null);
    if (why) throw new InitFailed(`--access signed: ${why}. Nothing was changed`);
  }
  // ssh:// runs nix-store --serve on the builder; ssh-ng:// runs nix-daemon --stdio.
  const program = protocol === 'ssh-ng' ? 'nix-daemon' : 'nix-store';
  let remoteProgram: string | null = flags.remoteProgram ?? null;
  if (remoteProgram !== null && !remoteProgram.startsWith('/'))
    throw new UsageError('--remote-program: give an absolute path');
  // The builder looked at as Nix will see it, through the session init already has: the
  // same probe and the same checks (their "init" tier) as doctor, before anything is written.
  const transport: Transport | null = a.session
    ? { run: (cmd, input) => a.session!.run(cmd, input).then((r) => ({ command: cmd, timedOut: false, ...r })) }
    : a.mode === 'ssh'
      ? { run: (cmd, input) => sshWithPinnedKey(c.exec, a.target, b.name, hostKey, [cmd], input) }
      : null;
  if (!transport) {
    out.warn(
      `Cannot look at ${b.name} before the key is on it: systems, features and jobs come from flags or defaults`,
    );
    const keyCommand = (await askRestrict(c, b, protocol, access)) ? forcedCommand(protocol, remoteProgram) : null;
    return {
      probe: null,
      remoteProgram,
      protocol,
      fixModes: null,
      keyCommand,
      forcedAlready: false,
      access,
      localVersion,
    };
  }
  out.step(`Looking at ${b.name}: its shell, Nix, daemon and trust, free space, what it can build`);
  const facts = (rp: string | null) =>
    new BuilderFacts(
      realCtx(c.exec, c.install, { build: false, drv: null }),
      provisionalMachine(b.name, protocol, rp, hostKey),
      { transport, user: b.user },
    );
  let f = facts(remoteProgram);
  const probe = (await f.login()).probe;
  if (probe && remoteProgram === null) {
    const onPath = protocol === 'ssh-ng' ? probe.nixDaemonPath : probe.nixStorePath;
    // nix-daemon sits beside nix-store wherever an installer puts Nix.
    const found =
      probe.nixStoreFound && protocol === 'ssh-ng'
        ? probe.nixStoreFound.replace(/nix-store$/, 'nix-daemon')
        : probe.nixStoreFound;
    if (onPath)
      out.ok(`${program} on the non-interactive PATH: ${onPath} (${probe.nixStoreVersion ?? 'version unknown'})`);
    else if (found) {
      out.warn(`${program} is not on ${b.name}'s non-interactive PATH, but is at ${found}`);
      const use = await answers.confirm({
        flag: '--remote-program',
        value: undefined,
        message: `Tell Nix where it is (?remote-program=${found} on the store URI)?`,
        default: true,
      });
      if (!use)
        throw new InitFailed(
          `Nix cannot run ${program} on ${b.name}; put it on the PATH that \`ssh ${b.name} ${program} --version\` sees, or accept --remote-program`,
        );
      remoteProgram = found;
      f = facts(remoteProgram);
    }
  }
  if (access === 'signed' && probe) {
    const why = signedUnsupported(localVersion, parseNixVersion(probe.nixStoreVersion ?? ''));
    if (why) throw new InitFailed(`--access signed: ${why}. Nothing was changed`);
  }
  // Signed access wants the user untrusted: the trust check's verdict is for trusted access.
  const reports = (await runChecks(pathChecks('init'), f)).filter((r) => access !== 'signed' || r.id !== 'trust');
  const bad = reports.find((r) => r.status === 'fail');
  if (bad)
    throw new InitFailed(
      `${bad.title}: ${bad.summary}: ${bad.cause}. Fix: ${bad.fix}; then re-run. Nothing was changed`,
    );
  for (const w of reports.filter((r) => r.status === 'warn')) out.warn(`${w.title}: ${w.summary}`);
  const trust = reports.find((r) => r.id === 'trust');
  if (trust?.status === 'pass') out.ok(`allowed to build there: ${trust.summary}`);
  const fixModes = await modesStep(
    c,
    b,
    a,
    probe,
    reports.find((r) => r.id === 'ssh-modes'),
  );
  if (remoteProgram) answers.note('--remote-program', remoteProgram);
  const onPath = probe ? (protocol === 'ssh-ng' ? probe.nixDaemonPath : probe.nixStorePath) : null;
  const keyCommand = (await askRestrict(c, b, protocol, access))
    ? forcedCommand(protocol, remoteProgram ?? onPath ?? null)
    : null;
  // The probe does not get through a forced command: then one answers already, and the checks
  // above found that it serves this protocol.
  return { probe, remoteProgram, protocol, fixModes, keyCommand, forcedAlready: probe === null, access, localVersion };
}

async function askRestrict(c: WizardCtx, b: BuilderAnswers, protocol: Protocol, access: AccessLevel): Promise<boolean> {
  // Asked where it is the least-privilege default (signed access); for trusted access the
  // key keeps its shell unless --restrict-to-nix says otherwise.
  const yes = await c.answers.confirm({
    flag: '--restrict-to-nix',
    value: c.flags.restrictToNix ?? (access === 'signed' ? undefined : false),
    message: `Let the key only speak Nix on ${b.name} (a forced command: ${forcedCommand(protocol, null)}; no shell with it)?`,
    // Signed access is the least-privilege setup: its key is restricted unless told otherwise.
    default: access === 'signed',
  });
  if (yes) c.answers.note('--restrict-to-nix', true);
  return yes;
}

/**
 * sshd's StrictModes ignores authorized_keys that others could have written, and refuses the
 * key with a bare "Permission denied". init holds the password session, so it can mend the
 * modes before the key's first login, asked (default yes) or --no-fix-modes.
 */
async function modesStep(
  c: WizardCtx,
  b: BuilderAnswers,
  a: Access,
  probe: ProbeResult | null,
  report: { status: string } | undefined,
): Promise<RunStep | null> {
  if (!probe || report?.status !== 'warn' || !a.session || a.mode !== 'password') return null;
  const loose = probe.sshFiles.filter((f) => f.mode[5] === 'w' || f.mode[8] === 'w').map((f) => f.path);
  const fix = await c.answers.confirm({
    flag: '--no-fix-modes',
    value: c.flags.fixModes === false ? false : undefined,
    message: `sshd will refuse the key while ${loose.join(', ')} ${loose.length > 1 ? 'are' : 'is'} writable by others (StrictModes). Make ${loose.length > 1 ? 'them' : 'it'} writable by ${b.user} only (chmod go-w)?`,
    default: true,
  });
  if (!fix) {
    c.answers.note('--no-fix-modes', true);
    return null;
  }
  const session = a.session;
  const command = showCommand('chmod', ['go-w', ...loose]);
  return {
    kind: 'remote',
    title: `Make ${loose.join(', ')} writable by ${b.user} only on ${b.host} (sshd's StrictModes)`,
    detail: command,
    run: async () => {
      const r = await session.run(command);
      if (r.exitCode !== 0) throw new StepFailed('modes', `${command} on ${b.host} failed: ${r.stderr.trim()}`);
      return 'done';
    },
  };
}

/** The builder as a machine line before its capabilities are known: what the checks need of it. */
function provisionalMachine(
  name: string,
  protocol: Protocol,
  remoteProgram: string | null,
  hostKey: HostKey,
): ParsedMachine {
  return {
    uri: `${protocol}://${name}${remoteProgram ? `?remote-program=${remoteProgram}` : ''}`,
    systems: [],
    sshKey: null,
    maxJobs: 1,
    speedFactor: 1,
    supportedFeatures: [],
    mandatoryFeatures: [],
    hostKey: machinesHostKeyField(hostKey),
    source: { file: '(the machine line init will write)', line: 0 },
  };
}

export interface Capabilities {
  systems: string[];
  features: string[];
  mandatoryFeatures: string[];
  maxJobs: number;
  speedFactor: number;
}

/** Step 8: what the builder can do, detected, as the defaults of the questions. */
export async function askCapabilities(c: WizardCtx, probe: ProbeResult | null): Promise<Capabilities> {
  const { answers, flags } = c;
  const detectedSystems = probe
    ? [probe.system ?? systemFromUname(probe.uname), ...probe.extraPlatforms].filter((s): s is string => !!s)
    : [];
  // The builder's own system-features are what its Nix will accept; kvm additionally
  // needs /dev/kvm. Only a Nix too old to say gets the usual defaults.
  const detectedFeatures = !probe
    ? []
    : probe.systemFeatures
      ? probe.systemFeatures.filter((f) => f !== 'kvm' || probe.kvm)
      : // Not kvm: Nix claims it only where it may open /dev/kvm (globals.cc: access R_OK|W_OK),
        // which its existence does not tell; a feature claimed and missing fails builds there.
        ['benchmark', 'big-parallel', 'nixos-test'];
  const cores = probe?.cores ?? 1;
  const found = {
    systems: (detectedSystems.length ? detectedSystems : [await localNixSystem(c.exec)]).join(','),
    features: detectedFeatures.join(','),
    maxJobs: String(cores),
    // Nix prefers the builder with the highest speed factor; relative core counts are a
    // reasonable first guess.
    speedFactor: String(Math.max(1, Math.round(cores / os.availableParallelism()))),
  };
  // What was found, confirmed in one question (a flag given counts as found); the four
  // questions only on "no". --yes takes what was found.
  const given = {
    systems: flags.systems,
    features: flags.features,
    maxJobs: flags.maxJobs,
    speedFactor: flags.speedFactor,
  };
  let take = false;
  if (probe && Object.values(given).some((v) => v === undefined) && (await answers.canAsk())) {
    const v = (k: keyof typeof found) => given[k] ?? found[k];
    take = await answers.confirm({
      flag: null,
      value: undefined,
      message: `nixremote found on it: ${v('systems').split(',').join(', ')}; features ${v('features').split(',').filter(Boolean).join(', ') || 'none'}; ${v('maxJobs')} jobs; speed factor ${v('speedFactor')}. Use these?`,
      default: true,
    });
  }
  const ask = <T>(
    k: keyof typeof found,
    q: { flag: string; message: string; parse: (v: string, f: string) => T; show?: (v: T) => string },
  ) => answers.text({ ...q, value: given[k] ?? (take ? found[k] : undefined), default: found[k] });
  const systems = await ask('systems', {
    flag: '--systems',
    message: 'Systems it builds for (comma-separated):',
    parse: (v, f) => validateList(v, f, false),
    show: (v) => v.join(','),
  });
  const features = await ask('features', {
    flag: '--features',
    message: 'Supported features (comma-separated, empty for none):',
    parse: (v, f) => validateList(v, f, true),
    show: (v) => v.join(',') || '-',
  });
  const mandatoryFeatures =
    flags.mandatoryFeatures === undefined ? [] : validateList(flags.mandatoryFeatures, '--mandatory-features', true);
  if (mandatoryFeatures.length) answers.note('--mandatory-features', mandatoryFeatures.join(','));
  const maxJobs = await ask('maxJobs', {
    flag: '--max-jobs',
    message: 'Jobs at once on the builder:',
    parse: (v, f) => validatePositiveInt(v, f),
  });
  const speedFactor = await ask('speedFactor', {
    flag: '--speed-factor',
    message: 'Speed factor (higher is preferred):',
    parse: (v, f) => validatePositiveInt(v, f),
  });
  return { systems, features, mandatoryFeatures, maxJobs, speedFactor };
}

async function localNixSystem(exec: Exec): Promise<string> {
  const r = await exec('nix-instantiate', ['--eval', '--expr', 'builtins.currentSystem']);
  const s = r.stdout.trim().replace(/^"|"$/g, '');
  if (r.exitCode === 0 && s) return s;
  return `${process.arch === 'arm64' ? 'aarch64' : process.arch === 'x64' ? 'x86_64' : process.arch}-${process.platform}`;
}
