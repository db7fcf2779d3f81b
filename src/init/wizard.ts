// `nixremote init`: ask (or read flags), look at the builder without changing anything,
// make the plan, show it, then apply it and prove that a build really ran on the builder.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Exec } from '../io/exec.js';
import { readText } from '../io/files.js';
import { acquireLock } from '../io/lock.js';
import type { Output } from '../io/output.js';
import { openSession, fetchHostKey, SshError, type Session, type Target } from '../io/ssh2-session.js';
import { Answers, repeatCommand } from './answers.js';
import type { InitFlags } from './options.js';
import { detectInstall, storeSymlink } from './install.js';
import { inspectKey, keygenArgs } from './key.js';
import { proveOffload } from './prove.js';
import { applyPlan, renderPlan, StepFailed, type Step } from '../plan/plan.js';
import { fingerprint, keyLine, type HostKey } from '../ssh/host-key.js';
import { conflictingKeys, pinHostKey } from '../ssh/known-hosts.js';
import { effectiveConfigMismatches, unmanagedHostLines, upsertHostBlock, type HostBlock } from '../ssh/ssh-config.js';
import { sshAsNix, startupFileFor } from '../ssh/system-ssh.js';
import { formatMachineLine, machineFromHost, unmanagedMachineLines, upsertMachine } from '../nix/machines-file.js';
import { blockLineNumbers, upsertNixConf } from '../nix/nix-conf.js';
import { readNixConfig } from '../nix/effective-config.js';
import { upsertModule, ModuleError } from '../nix/nixos-module.js';
import { formatVersion, parseNixVersion, parseStorePing, storePingArgs } from '../nix/version.js';
import { APPEND_KEY_SCRIPT, asShCommand, parseProbe, PROBE_SCRIPT, systemFromUname, type ProbeResult } from '../remote/scripts.js';
import { shellQuote } from '../io/exec.js';
import {
  UsageError,
  validateFingerprint,
  validateHost,
  validateKeyPath,
  validateList,
  validateName,
  validatePort,
  validatePositiveInt,
  validateUser,
} from '../validate.js';

export interface InitDeps {
  exec: Exec;
  out: Output;
  answers: Answers;
  /** Reads the password piped to --password-stdin, once. */
  readStdin: () => Promise<string>;
  isInterrupted: () => boolean;
  /** From here on an interrupt rolls back instead of exiting at once. */
  beginApply: () => void;
  /** Run this when the command ends, however it ends. */
  onExit: (fn: () => void) => void;
  /** Waits for the user to press Enter (interactive --copy-key manual). */
  pause: (message: string) => Promise<void>;
}

export class InitFailed extends Error {}

type CopyMode = 'password' | 'ssh' | 'manual' | 'skip';

export async function runInit(flags: InitFlags, d: InitDeps): Promise<void> {
  const { out, answers, exec } = d;

  // 1. Who builds, and with what.
  for (const tool of ['ssh', 'ssh-keygen', 'nix', 'nix-build']) {
    const r = await exec('sh', ['-c', `command -v ${tool}`]);
    if (r.exitCode !== 0) {
      throw new InitFailed(`${tool} is not on this machine's PATH; nixremote sets up ${tool.startsWith('nix') ? 'Nix, so install Nix first' : 'OpenSSH, so install the OpenSSH client first'}`);
    }
  }
  const install = detectInstall();
  const kind = install.multiUser ? 'multi-user' : 'single-user';
  out.step(`Nix install: ${kind} (${install.reason}); builds run as ${install.multiUser ? 'root' : install.user.name}`);
  if (install.multiUser && install.user.uid !== 0) {
    throw new InitFailed(
      "on a multi-user install the nix-daemon builds as root, so root's ssh key, ssh config and known_hosts are the ones that count; re-run with sudo",
    );
  }
  const home = install.user.home;
  const sshDir = path.join(home, '.ssh');

  // 2. The builder.
  const host = await answers.text({ flag: '--host', value: flags.host, message: 'Builder address (host name or IP):', parse: validateHost });
  const port = await answers.text({ flag: '--port', value: flags.port, message: 'SSH port:', default: '22', parse: validatePort });
  const user = await answers.text({ flag: '--user', value: flags.user, message: 'SSH user on the builder:', parse: validateUser });
  const defaultName = host.toLowerCase().replace(/[^a-z0-9._-]/g, '-').replace(/^[^a-z0-9]+/, '') || 'builder';
  const name = await answers.text({ flag: '--name', value: flags.name, message: 'Name for this builder (ssh Host alias):', default: defaultName, parse: validateName });

  // From here on this run reads the files it will plan edits of: one run at a time.
  if (!flags.dryRun) {
    const lock = path.join(home, '.nixremote.lock');
    const wait = Number(process.env.NIXREMOTE_LOCK_WAIT_MS ?? 10_000);
    const release = await acquireLock(lock, wait, (o) => out.step(`Waiting for another nixremote (pid ${o.pid}) to finish`));
    d.onExit(release);
  }

  // 3. The key.
  const keyPath = await answers.text({
    flag: '--key',
    value: flags.key,
    message: 'SSH key for the builder (made if missing):',
    default: path.join(sshDir, 'nix_remote'),
    parse: (v, f) => validateKeyPath(v.replace(/^~(?=\/)/, home), f),
  });
  const key = await inspectKey(exec, keyPath, install.user.uid);
  out.step(key.exists ? `Key ${keyPath} exists and has no passphrase: reusing it` : `Key ${keyPath} will be made (ed25519, no passphrase)`);

  // Local files that will be edited: refuse what we must not or cannot touch, now.
  const configPath = path.join(sshDir, 'config');
  const knownHostsPath = path.join(sshDir, 'known_hosts');
  for (const p of [configPath, knownHostsPath]) {
    const target = storeSymlink(p);
    if (target) throw new UsageError(`${p} is a link into the Nix store (${target}), managed by NixOS or home-manager; add the Host block there instead`);
  }
  checkSshDirOwnership(sshDir, install.user.uid);
  checkSshConfigOwnership(configPath, install.user.uid);
  const configText = readText(configPath) ?? '';
  const clash = unmanagedHostLines(configText, name);
  if (clash.length) {
    throw new UsageError(`--name: ${configPath} line ${clash.join(', ')} already has its own "Host ${name}"; pass another --name or remove that block`);
  }

  // 4. Host key: learn it, show it, pin it.
  const fpFlag = flags.hostKeyFingerprint === undefined ? undefined : validateFingerprint(flags.hostKeyFingerprint);
  out.step(`Connecting to ${host}:${port} for its host key`);
  const hostKey = await fetchHostKey({ host, port }).catch((e: unknown) => {
    // Something that is not sshd on that port means the address is wrong: bad input.
    if (e instanceof SshError && e.kind === 'protocol') throw new UsageError(`--host/--port: ${e.message}`);
    throw e;
  });
  const fp = fingerprint(hostKey);
  out.info(`  ${hostKey.type} ${fp}`);
  if (fpFlag !== undefined && fpFlag !== fp) {
    throw new UsageError(`--host-key-fingerprint: ${host}:${port} shows ${fp}, not ${fpFlag}; check that you reach the right machine`);
  }
  const knownText = readText(knownHostsPath) ?? '';
  const conflicts = conflictingKeys(knownText, name, hostKey);
  if (conflicts.length) {
    out.warn(`${knownHostsPath} already pins another key for ${name}:`);
    for (const c of conflicts) out.info(`  line ${c.line}: ${c.key.type} ${fingerprint(c.key)}`);
    out.info(`  the builder now shows: ${hostKey.type} ${fp}`);
    const replace =
      fpFlag === fp ||
      (!answers.yes && (await answers.confirm({ flag: null, value: undefined, message: `The host key changed. Replace the pinned key with ${fp}?`, default: false })));
    if (!replace) {
      throw new InitFailed(
        `the host key of ${name} changed; if the builder was reinstalled, confirm its new key with --host-key-fingerprint ${fp} (check it on the builder: ssh-keygen -lf /etc/ssh/ssh_host_${hostKey.type.replace(/^ssh-/, '')}_key.pub)`,
      );
    }
  } else if (fpFlag === undefined) {
    const trust = await answers.confirm({
      flag: '--host-key-fingerprint',
      value: undefined,
      message: `Trust this host key for ${name}? (compare on the builder: ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub)`,
      default: true,
    });
    if (!trust) throw new InitFailed('host key not trusted; nothing was changed');
    if (answers.yes) out.info(`  trusted on first use (pass --host-key-fingerprint ${fp} to require it)`);
  }
  answers.note('--host-key-fingerprint', fp);

  // 5. The ssh_config block, checked against what ssh will really use.
  const block: HostBlock = { name, hostName: host, port, user, identityFile: keyPath };
  const newConfig = upsertHostBlock(configText, block);
  await checkEffectiveConfig(exec, newConfig.text, block, keyPath);

  // 6. Getting the key onto the builder, and a session to look at the builder with.
  const target: Target = { host, port, user };
  let session: Session | null = null;
  let keyAlreadyIn = false;
  if (key.exists) {
    try {
      session = await openSession(target, { privateKey: fs.readFileSync(keyPath, 'utf8') }, hostKey);
      keyAlreadyIn = true;
    } catch (e) {
      if ((e as { kind?: string }).kind !== 'auth') throw e;
    }
  }
  let copyMode: CopyMode | 'already' = 'already';
  if (keyAlreadyIn) {
    out.ok(`The key already gets in as ${user}@${host}: no copy needed`);
    if (flags.copyKey) answers.note('--copy-key', flags.copyKey);
  } else {
    copyMode = await answers.choose<CopyMode>({
      flag: '--copy-key',
      value: flags.copyKey,
      message: `How should the key get onto ${user}@${host}?`,
      default: 'password',
      choices: [
        { name: 'Log in with the password once and add it (ssh2)', value: 'password' },
        { name: 'Use my existing ssh access (system ssh)', value: 'ssh' },
        { name: 'Show me the line; I add it myself', value: 'manual' },
        { name: 'Skip: it is already there some other way', value: 'skip' },
      ],
    });
    if (copyMode === 'password') {
      const password = await answers.password({
        flag: '--password-stdin',
        fromStdin: () => (flags.passwordStdin ? d.readStdin() : null),
        message: `Password for ${user}@${host} (used once, never stored):`,
      });
      out.step(`Logging in to ${user}@${host} with the password`);
      session = await openSession(target, { password }, hostKey);
    }
  }
  const restrict = flags.restrict;
  if (!restrict) answers.note('--no-restrict', true);

  try {
    // 7 and 8. Look at the builder as Nix will see it (read-only).
    let probe: ProbeResult | null = null;
    if (session) {
      out.step(`Looking at ${name}: shell output, nix-store, system, features, cores`);
      const t = await session.run('true');
      probe = parseProbe((await session.run(asShCommand(PROBE_SCRIPT))).stdout);
      if (t.stdout !== '') {
        throw new InitFailed(
          `the builder's shell prints ${JSON.stringify(t.stdout.slice(0, 200))} for every command run over ssh; Nix reads that as its protocol and fails. ` +
            `Make ${startupFileFor(probe.shell)} print nothing when not interactive, then re-run`,
        );
      }
    } else if (copyMode === 'ssh') {
      probe = await probeWithSystemSsh(exec, target, name, hostKey);
    } else {
      out.warn(`Cannot look at ${name} before the key is on it: systems, features and jobs come from flags or defaults`);
    }

    let remoteProgram: string | null = flags.remoteProgram ?? null;
    if (remoteProgram !== null && !remoteProgram.startsWith('/')) throw new UsageError('--remote-program: give an absolute path');
    if (probe && remoteProgram === null) {
      if (probe.nixStorePath) out.ok(`nix-store on the non-interactive PATH: ${probe.nixStorePath} (${probe.nixStoreVersion ?? 'version unknown'})`);
      else if (probe.nixStoreFound) {
        out.warn(`nix-store is not on ${name}'s non-interactive PATH, but is at ${probe.nixStoreFound}`);
        const use = await answers.confirm({
          flag: '--remote-program',
          value: undefined,
          message: `Tell Nix where it is (?remote-program=${probe.nixStoreFound} on the store URI)?`,
          default: true,
        });
        if (!use) throw new InitFailed(`Nix cannot run nix-store on ${name}; put it on the PATH that \`ssh ${name} nix-store --version\` sees, or accept --remote-program`);
        remoteProgram = probe.nixStoreFound;
      } else {
        const broken = probe.nixStoreBroken ? ` (${probe.nixStoreBroken})` : '';
        throw new InitFailed(
          `nix-store is not on ${name}'s non-interactive PATH${broken}, nor in any of the usual places; install Nix on the builder, or pass --remote-program with its path`,
        );
      }
    }
    if (remoteProgram) answers.note('--remote-program', remoteProgram);

    // 8. What the builder can do: the defaults for the next questions.
    const localSystem = await localNixSystem(exec);
    const detectedSystems = probe ? [probe.system ?? systemFromUname(probe.uname), ...probe.extraPlatforms].filter((s): s is string => !!s) : [];
    const systems = await answers.text({
      flag: '--systems',
      value: flags.systems,
      message: 'Systems it builds for (comma-separated):',
      default: (detectedSystems.length ? detectedSystems : [localSystem]).join(','),
      parse: (v, f) => validateList(v, f, false),
      show: (v) => v.join(','),
    });
    // The builder's own system-features are what its Nix will accept; kvm additionally
    // needs /dev/kvm. Only a Nix too old to say gets the usual defaults.
    const detectedFeatures = !probe
      ? []
      : probe.systemFeatures
        ? probe.systemFeatures.filter((f) => f !== 'kvm' || probe!.kvm)
        : ['benchmark', 'big-parallel', 'nixos-test', ...(probe.kvm ? ['kvm'] : [])];
    const features = await answers.text({
      flag: '--features',
      value: flags.features,
      message: 'Supported features (comma-separated, empty for none):',
      default: detectedFeatures.join(','),
      parse: (v, f) => validateList(v, f, true),
      show: (v) => v.join(',') || '-',
    });
    const mandatoryFeatures = flags.mandatoryFeatures === undefined ? [] : validateList(flags.mandatoryFeatures, '--mandatory-features', true);
    if (mandatoryFeatures.length) answers.note('--mandatory-features', mandatoryFeatures.join(','));
    const cores = probe?.cores ?? 1;
    const maxJobs = await answers.text({
      flag: '--max-jobs',
      value: flags.maxJobs,
      message: 'Jobs at once on the builder:',
      default: String(cores),
      parse: (v, f) => validatePositiveInt(v, f),
    });
    const localCores = os.availableParallelism();
    const speedFactor = await answers.text({
      flag: '--speed-factor',
      value: flags.speedFactor,
      message: 'Speed factor (higher is preferred):',
      default: String(Math.max(1, Math.round(cores / localCores))),
      parse: (v, f) => validatePositiveInt(v, f),
    });

    // 9. The Nix side.
    const targetKind = await answers.choose<'nix-conf' | 'nixos'>({
      flag: '--target',
      value: flags.target,
      message: 'Where should the builder be configured?',
      default: fs.existsSync('/etc/NIXOS') ? 'nixos' : 'nix-conf',
      choices: [
        { name: `${install.confDir}/nix.conf and ${install.confDir}/machines`, value: 'nix-conf' },
        { name: 'A NixOS module (nix.buildMachines), for nixos-rebuild', value: 'nixos' },
      ],
    });
    // The machines file has no quoting: a key path with a space is left to IdentityFile
    // in the Host block, which ssh reads for this alias anyway.
    const keyInMachines = /\s/.test(keyPath) ? null : keyPath;
    if (!keyInMachines) out.info(`  the key path has a space, so the machine line leaves the key to IdentityFile in ${configPath}`);
    const machine = machineFromHost({ name, remoteProgram, systems, sshKey: keyInMachines, maxJobs, speedFactor, features, mandatoryFeatures, hostKey });
    const machineLine = formatMachineLine(machine);

    const steps: Step[] = [];
    // Local ssh side.
    if (!key.exists) {
      steps.push({
        kind: 'keygen',
        title: `Make the key ${keyPath}`,
        detail: `ssh-keygen ${keygenArgs(keyPath, `nixremote@${os.hostname()}`).map(shellQuote).join(' ')}`,
        run: async () => {
          // ssh-keygen writes in place; make the pair beside the target and rename it in,
          // public half first, so the key is there whole or not at all.
          const dir = path.dirname(keyPath);
          fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
          const tmp = fs.mkdtempSync(path.join(dir, '.nixremote-key-'));
          try {
            const r = await exec('ssh-keygen', keygenArgs(path.join(tmp, 'key'), `nixremote@${os.hostname()}`));
            if (r.exitCode !== 0) throw new StepFailed('keygen', `ssh-keygen failed: ${r.stderr.trim()}`);
            fs.chmodSync(path.join(tmp, 'key'), 0o600);
            fs.renameSync(path.join(tmp, 'key.pub'), `${keyPath}.pub`);
            fs.renameSync(path.join(tmp, 'key'), keyPath);
          } finally {
            fs.rmSync(tmp, { recursive: true, force: true });
          }
        },
      });
    }
    const pinned = pinHostKey(knownText, name, hostKey);
    steps.push({ kind: 'write', title: `Pin ${name}'s host key`, path: knownHostsPath, before: readText(knownHostsPath), after: pinned.text, mode: 0o644, dirMode: 0o700, uid: install.user.uid, gid: install.user.gid });
    steps.push({ kind: 'write', title: `Host block for ${name}`, path: configPath, before: readText(configPath), after: newConfig.text, mode: 0o600, dirMode: 0o700, uid: install.user.uid, gid: install.user.gid });

    // The key onto the builder.
    const publicLine = () => (key.exists ? key.publicLine : fs.readFileSync(`${keyPath}.pub`, 'utf8').trim());
    const authLine = () => `${restrict ? 'restrict ' : ''}${publicLine()}`;
    if (copyMode === 'password' || copyMode === 'ssh') {
      steps.push({
        kind: 'remote',
        title: `Add the key to ${user}@${host}:~/.ssh/authorized_keys${restrict ? ' (with restrict)' : ''}`,
        detail: `creates ~/.ssh (0700) and authorized_keys (0600) if missing; appends only if the key is not there (${copyMode === 'ssh' ? 'system ssh' : 'ssh2, password'})`,
        run: async () => {
          const input = authLine() + '\n';
          const r = session ? await session.run(asShCommand(APPEND_KEY_SCRIPT), input) : await sshWithPinnedKey(exec, target, name, hostKey, [asShCommand(APPEND_KEY_SCRIPT)], input);
          if (r.exitCode !== 0 || !/NIXREMOTE:(added|present)/.test(r.stdout)) throw new StepFailed('copy', `adding the key on ${host} failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`);
          return /NIXREMOTE:present/.test(r.stdout) ? 'already there' : 'added';
        },
      });
    } else if (copyMode === 'manual') {
      steps.push({
        kind: 'remote',
        title: `You add the key on ${user}@${host}`,
        detail: `the line is printed after the key exists; add it to ~${user}/.ssh/authorized_keys on the builder`,
        run: async () => {
          out.info(`\nAdd this line to ~/.ssh/authorized_keys of ${user} on ${host}:\n\n${authLine()}\n`);
          const probeKey = async () => {
            try {
              (await openSession(target, { privateKey: fs.readFileSync(keyPath, 'utf8') }, hostKey)).close();
              return true;
            } catch {
              return false;
            }
          };
          if (answers.yes) {
            if (await probeKey()) return 'the key gets in';
            throw new StepFailed('copy', `the key does not get in yet; add the line above on ${host}, then re-run the same command`);
          }
          for (;;) {
            await d.pause('Press Enter once the line is added');
            if (await probeKey()) return 'the key gets in';
            out.warn('the key does not get in yet');
          }
        },
      });
    }

    // 7. Verify with the system ssh, exactly as Nix will run it.
    const nixStore = remoteProgram ?? 'nix-store';
    steps.push({
      kind: 'check',
      title: `Check: ssh ${name} prints nothing for a command`,
      detail: `ssh -x -a -o BatchMode=yes ${name} true   (as ${install.user.name}, no agent)`,
      run: async () => {
        const r = await sshAsNix(exec, name, ['true']);
        if (r.exitCode !== 0) throw new StepFailed('ssh', `ssh ${name} true failed (exit ${r.exitCode}): ${r.stderr.trim()}`);
        if (r.stdout !== '') throw new StepFailed('ssh', `ssh ${name} true printed ${JSON.stringify(r.stdout.slice(0, 200))}; make ${startupFileFor(probe?.shell ?? null)} silent for non-interactive shells`);
      },
    });
    steps.push({
      kind: 'check',
      title: `Check: ssh ${name} ${nixStore} --version`,
      run: async () => {
        const r = await sshAsNix(exec, name, [nixStore, '--version']);
        if (r.exitCode !== 0) throw new StepFailed('nix-store', `ssh ${name} ${nixStore} --version failed (exit ${r.exitCode}): ${r.stderr.trim()}`);
        return r.stdout.trim();
      },
    });
    const storeUri = machine.uri;
    steps.push({
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
    });

    // Nix side.
    let builders: string | null = null; // non-null: the proof passes it as --builders
    if (targetKind === 'nix-conf') {
      const machinesPath = path.join(install.confDir, 'machines');
      const nixConfPath = path.join(install.confDir, 'nix.conf');
      for (const p of [machinesPath, nixConfPath]) {
        const target = storeSymlink(p);
        if (target) throw new UsageError(`${p} is a link into the Nix store (${target}): it is managed declaratively; use --target nixos`);
      }
      const machinesText = readText(machinesPath) ?? '';
      const dup = unmanagedMachineLines(machinesText, name);
      if (dup.length) throw new UsageError(`--name: ${machinesPath} line ${dup.join(', ')} already configures ${name} outside nixremote; remove it or pass another --name`);
      const machinesEdit = upsertMachine(machinesText, name, machine);
      steps.push({ kind: 'write', title: `Machine line for ${name}`, path: machinesPath, before: readText(machinesPath), after: machinesEdit.text, mode: 0o644 });
      const nixConfText = readText(nixConfPath) ?? '';
      // The user's builders may come from an included file; read them the way Nix does,
      // leaving out our own block.
      const cfg = readNixConfig((p) => (p === nixConfPath ? nixConfText : readText(p)), { ...process.env, NIX_CONF_DIR: install.confDir }, home, false);
      const ours = blockLineNumbers(nixConfText);
      const userBuilders = (cfg.settings.get('builders') ?? []).filter((b) => !(b.file === nixConfPath && ours.has(b.line))).pop();
      const conf = upsertNixConf(nixConfText, machinesPath, userBuilders && userBuilders.file !== nixConfPath ? { value: userBuilders.value, where: `${userBuilders.file}:${userBuilders.line}` } : null);
      for (const n of conf.notes) out.warn(n);
      steps.push({ kind: 'write', title: 'builders in nix.conf', path: nixConfPath, before: readText(nixConfPath), after: conf.edit.text, mode: 0o644 });
      if (install.daemon?.restart) {
        const cmd = install.daemon.restart;
        const changes = conf.edit.changed || machinesEdit.changed;
        if (changes) {
          steps.push({
            kind: 'command',
            title: 'Restart the nix-daemon so it reads the new settings',
            detail: cmd.join(' '),
            run: async () => {
              const r = await exec(cmd[0]!, cmd.slice(1), { timeoutMs: 60_000 });
              if (r.exitCode !== 0) throw new StepFailed('restart', `${r.command} failed: ${r.stderr.trim()}`);
            },
          });
        }
      } else if (install.daemon) {
        steps.push({ kind: 'note', title: `Restart the nix-daemon yourself: ${install.daemon.how}`, detail: 'until then the daemon uses its old settings; the proof build passes the builder itself' });
        builders = machineLine;
      }
    } else {
      const output = flags.output ?? '/etc/nixos/nixremote.nix';
      if (!output.startsWith('/')) throw new UsageError('--output: give an absolute path');
      if (flags.output) answers.note('--output', output);
      let edit;
      try {
        edit = upsertModule(readText(output), path.basename(output), {
          name, sshUser: user, sshKey: keyInMachines, systems, maxJobs, speedFactor, features, mandatoryFeatures, hostKey,
        });
      } catch (e) {
        if (e instanceof ModuleError) throw new UsageError(`--output: ${output}: ${e.message}`);
        throw e;
      }
      if (remoteProgram) out.warn(`NixOS's nix.buildMachines has no remote-program field; the module cannot pass ${remoteProgram}. Put nix-store on the builder's PATH instead.`);
      steps.push({ kind: 'write', title: `NixOS module with ${name}`, path: output, before: readText(output), after: edit.text, mode: 0o644 });
      steps.push({ kind: 'note', title: `Then: add ./${path.basename(output)} to imports in configuration.nix and run nixos-rebuild switch`, detail: 'the proof build below passes the builder as --builders, since the module is not active yet' });
      builders = machineLine;
    }

    // 10. Prove it.
    if (flags.testBuild) {
      steps.push({
        kind: 'check',
        title: `Prove it: build a fresh derivation with --max-jobs 0${builders ? ` --builders '<${name}'s line>'` : ''}`,
        detail: `it can only succeed on a builder; then look for the output in ${name}'s store`,
        run: async () => {
          const r = await proveOffload(exec, { name, system: systems[0]!, builders, remoteStoreCheck: true });
          if (!r.ok) throw new StepFailed('build', r.detail);
          return r.detail;
        },
      });
    } else answers.note('--no-test-build', true);

    // Show, confirm, apply.
    out.info('');
    out.info(out.bold(flags.dryRun ? 'Plan (dry run: nothing will be changed):' : 'Plan:'));
    out.info(renderPlan(steps));
    out.info('');
    if (flags.dryRun) {
      out.ok('Dry run: nothing was changed, locally or on the builder.');
      return;
    }
    if (!answers.yes) {
      const go = await answers.confirm({ flag: '--yes', value: undefined, message: 'Apply this plan?', default: true });
      if (!go) {
        out.info('Nothing was changed.');
        return;
      }
    }
    d.beginApply();
    await applyPlan(steps, {
      isInterrupted: d.isInterrupted,
      stepDelayMs: Number(process.env.NIXREMOTE_TEST_STEP_DELAY_MS) || undefined,
      reporter: {
        start: (s) => out.step(s.title),
        done: (s, r, backup) => {
          if (s.kind === 'write') out.ok(r === 'unchanged' ? `${s.path} unchanged` : `wrote ${s.path}${backup ? ` (backup: ${backup})` : ''}`);
          else if (s.kind !== 'note' && r) out.ok(r);
        },
      },
    });

    // 11. Finish.
    out.info('');
    out.ok(out.bold(`${name} is set up${flags.testBuild ? ' and a build ran on it' : ''}.`));
    out.info(`  machine line: ${machineLine}`);
    if (targetKind === 'nix-conf' && install.daemon && !install.daemon.restart) out.warn(`restart the nix-daemon: ${install.daemon.how}`);
    out.info(`  when builds stop offloading: nixremote doctor ${name}`);
    if (!answers.yes) {
      out.info('');
      out.info('To do the same again without questions:');
      out.info(`  ${repeatCommand(answers.given)}${answers.given.some(([f]) => f === '--password-stdin') ? ' < password-file' : ''}`);
    }
  } finally {
    session?.close();
  }
}

/** Another user able to write ~/.ssh would make ssh refuse the files in it. */
function checkSshDirOwnership(sshDir: string, uid: number): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(sshDir);
  } catch {
    return;
  }
  if (st.uid !== uid) throw new UsageError(`${sshDir} is owned by uid ${st.uid}, not the build user (uid ${uid}); ssh refuses its files. Fix: chown ${uid} ${sshDir}`);
  if (st.mode & 0o022) throw new UsageError(`${sshDir} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); ssh refuses such a directory. Fix: chmod 700 ${sshDir}`);
}

/**
 * ssh refuses a config file that another user could have written ("Bad owner or
 * permissions on ~/.ssh/config", readconf.c): owned by the user or root, not writable by
 * group or others.
 */
function checkSshConfigOwnership(p: string, uid: number): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return;
  }
  if ((st.uid !== uid && st.uid !== 0) || st.mode & 0o022) {
    throw new UsageError(`Bad owner or permissions on ${p} (owner uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}): ssh refuses to read it. Fix: chown ${uid} ${p} && chmod 600 ${p}`);
  }
}

/** `ssh -G` over the config we are about to write: another section must not override ours. */
async function checkEffectiveConfig(exec: Exec, configText: string, block: HostBlock, keyPath: string): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-'));
  try {
    const file = path.join(dir, 'config');
    fs.writeFileSync(file, configText, { mode: 0o600 });
    const r = await exec('ssh', ['-F', file, '-G', '--', block.name]);
    if (r.exitCode !== 0) throw new UsageError(`ssh cannot read the resulting ~/.ssh/config: ${r.stderr.trim()}`);
    const bad = effectiveConfigMismatches(r.stdout, block, keyPath);
    if (bad.length) {
      throw new UsageError(`in ~/.ssh/config another setting overrides the Host block for ${block.name} (${bad.join('; ')}); move or narrow that setting, then re-run`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The system's ssh with the user's own access, but only to a host showing the pinned key. */
async function sshWithPinnedKey(exec: Exec, t: Target, name: string, hostKey: HostKey, command: string[], input?: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-'));
  try {
    const kh = path.join(dir, 'known_hosts');
    fs.writeFileSync(kh, `${name} ${keyLine(hostKey)}\n`);
    return await exec(
      'ssh',
      ['-o', `HostKeyAlias=${name}`, '-o', `UserKnownHostsFile=${kh}`, '-o', 'StrictHostKeyChecking=yes', '-p', String(t.port), '-l', t.user, '--', t.host, ...command],
      { input, timeoutMs: 120_000 },
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function probeWithSystemSsh(exec: Exec, t: Target, name: string, hostKey: HostKey): Promise<ProbeResult> {
  const r = await sshWithPinnedKey(exec, t, name, hostKey, [asShCommand(PROBE_SCRIPT)]);
  if (r.exitCode !== 0) throw new InitFailed(`ssh ${t.user}@${t.host} with your existing access failed: ${r.stderr.trim()}`);
  return parseProbe(r.stdout);
}

async function localNixSystem(exec: Exec): Promise<string> {
  const r = await exec('nix-instantiate', ['--eval', '--expr', 'builtins.currentSystem']);
  const s = r.stdout.trim().replace(/^"|"$/g, '');
  if (r.exitCode === 0 && s) return s;
  return `${process.arch === 'arm64' ? 'aarch64' : process.arch === 'x64' ? 'x86_64' : process.arch}-${process.platform}`;
}

