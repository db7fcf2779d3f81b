// Step 9. The Nix side: the machine line in the machines file and `builders` in nix.conf
// (then a daemon restart, or the command to run), or a NixOS module.
import * as path from 'node:path';
import { readText } from '../../io/files.js';
import { StepFailed, type Step } from '../../plan/plan.js';
import { readBlock, type BlockEdit } from '../../text/managed-block.js';
import { readNixConfig } from '../../nix/effective-config.js';
import {
  adoptMachineLines,
  machineMarkers,
  formatMachineLine,
  machineFromHost,
  unmanagedMachineLines,
  upsertMachine,
} from '../../nix/machines-file.js';
import { isTomlMachines, tomlHasMachine, upsertTomlMachine } from '../../nix/machines-toml.js';
import { atLeast, formatVersion, isLix, parseNixVersion } from '../../nix/version.js';
import { blockLineNumbers, inlineEntryNames, upsertNixConf } from '../../nix/nix-conf.js';
import { ModuleError, upsertModule, type ModuleSystem } from '../../nix/nixos-module.js';
import type { HostKey } from '../../ssh/host-key.js';
import { UsageError } from '../../validate.js';
import { storeSymlink } from '../install.js';
import { detectTarget, realTargetCtx, targetByName, type TargetName } from '../../targets/index.js';
import { determinate } from '../../targets/determinate.js';
import type { BuilderAnswers } from './builder.js';
import { hostBlockOf } from './ssh-files.js';
import { decideAdopt, type WizardCtx } from './context.js';
import type { Capabilities, Protocol } from './inspect.js';

export interface NixSide {
  steps: Step[];
  /** The store URI Nix will use for the builder. */
  storeUri: string;
  machineLine: string;
  target: TargetName;
  /** nix.conf changed, so the daemon must re-read it. */
  confChanged: boolean;
  /** Where the builder's line (or module entry) is written. */
  file: string;
}

export async function nixSide(
  c: WizardCtx,
  b: BuilderAnswers,
  keyPath: string,
  hostKey: HostKey,
  cap: Capabilities & { protocol: Protocol },
  remoteProgram: string | null,
  configPath: string,
  /** Signed access: the secret key file for extra-secret-key-files. */
  secretKeyFile: string | null = null,
): Promise<NixSide> {
  const { answers, flags, install, out } = c;
  // Where this Nix keeps its config, detected from files; --target overrides.
  const tctx = realTargetCtx(install.confDir);
  const detected = detectTarget(tctx);
  const settingsOf = (t: TargetName) => targetByName(t).settingsFile(tctx);
  // Detected from files, and said; not asked (--target picks another).
  const target = await answers.choose<TargetName>({
    flag: '--target',
    value: flags.target ?? detected.target.name,
    message: `Where should the builder be configured? (this looks like ${detected.target.name}: ${detected.reason})`,
    default: detected.target.name,
    choices: [
      { name: `${settingsOf('nix-conf')} and ${install.confDir}/machines`, value: 'nix-conf' },
      {
        name: `Determinate Nix: ${settingsOf('determinate')} and ${install.confDir}/machines (nix.conf untouched)`,
        value: 'determinate',
      },
      { name: `macOS (Nix's installer): ${settingsOf('macos')} and ${install.confDir}/machines`, value: 'macos' },
      { name: 'A NixOS module (nix.buildMachines), for nixos-rebuild', value: 'nixos' },
      { name: 'A nix-darwin module (nix.buildMachines), for darwin-rebuild', value: 'nix-darwin' },
    ],
  });
  if (flags.target === undefined) out.step(`Nix config: ${target} (${detected.reason}); --target picks another`);
  // The machines file has no quoting: a key path with a space is left to IdentityFile in
  // the Host block, which ssh reads for this alias anyway.
  const sshKey = /\s/.test(keyPath) ? null : keyPath;
  if (!sshKey)
    out.info(`  the key path has a space, so the machine line leaves the key to IdentityFile in ${configPath}`);
  const machine = machineFromHost({ name: b.name, remoteProgram, sshKey, hostKey, ...cap });
  const machineLine = formatMachineLine(machine);
  const steps: Step[] = [];

  if (target === 'nixos' || target === 'nix-darwin') {
    const { module } = targetByName(target);
    const output = flags.output ?? module!.path;
    const rebuild = module!.rebuild;
    // With Determinate on nix-darwin, its module owns the Nix options (nix.enable = false).
    const system: ModuleSystem =
      target === 'nix-darwin' && determinate.detect(tctx) ? 'nix-darwin-determinate' : target;
    if (system === 'nix-darwin-determinate')
      out.info(
        "  Determinate Nix runs here: the module uses its nix-darwin module's determinateNix.buildMachines, since nix.* is off (nix.enable = false)",
      );
    if (!output.startsWith('/')) throw new UsageError('--output: give an absolute path');
    if (flags.output) answers.note('--output', output);
    const moduleBefore = readText(output);
    let edit: BlockEdit;
    try {
      const hostBlock = hostBlockOf(c, b, keyPath);
      edit = upsertModule(
        moduleBefore,
        path.basename(output),
        { name: b.name, sshUser: b.user, sshKey, hostKey, hostBlock, secretKeyFile, ...cap },
        system,
      );
    } catch (e) {
      if (e instanceof ModuleError) throw new UsageError(`--output: ${output}: ${e.message}`);
      throw e;
    }
    if (remoteProgram)
      out.warn(
        `nix.buildMachines has no remote-program field; the module cannot pass ${remoteProgram}. Put nix-store on the builder's PATH instead.`,
      );
    const os = target === 'nixos' ? 'NixOS' : 'nix-darwin';
    steps.push({
      kind: 'write',
      title: `${os} module with ${b.name}`,
      path: output,
      before: moduleBefore,
      after: edit.text,
      mode: 0o644,
    });
    steps.push({
      kind: 'note',
      title: `Then: add ./${path.basename(output)} to imports in your ${os} configuration and run ${rebuild}`,
      detail: 'until then the module is not active; the proof build passes the builder itself',
    });
    return { steps, storeUri: machine.uri, machineLine, target, confChanged: false, file: output };
  }

  const t = targetByName(target);
  const machinesPath = path.join(install.confDir, 'machines');
  // Determinate keeps nixremote's settings out of the nix.conf it replaces: nix.custom.conf.
  const nixConfPath = t.settingsFile(tctx)!;
  for (const p of [machinesPath, nixConfPath]) {
    const link = storeSymlink(p);
    if (link)
      throw new UsageError(
        `${p} is a link into the Nix store (${link}): it is managed declaratively; use --target nixos`,
      );
  }
  if (
    target === 'determinate' &&
    !/^\s*!?include\s+(\S*\/)?nix\.custom\.conf\s*$/m.test(readText(path.join(install.confDir, 'nix.conf')) ?? '')
  ) {
    out.warn(
      `${install.confDir}/nix.conf does not include nix.custom.conf; Determinate's own nix.conf does, and nixremote's settings go there`,
    );
  }
  const machinesBefore = readText(machinesPath);
  const machinesText = machinesBefore ?? '';
  const toml = await machinesFormat(c, machinesPath);
  const dup = toml ? [] : unmanagedMachineLines(machinesText, b.name);
  if (toml && !readBlock(machinesText, machineMarkers(b.name)) && tomlHasMachine(machinesText, b.name))
    throw new UsageError(
      `--name: ${machinesPath} already has a table machines.${b.name} of your own; pass another --name, or remove it`,
    );
  let machinesEdit = toml
    ? upsertTomlMachine(machinesText, b.name, machine, machineMarkers(b.name))
    : upsertMachine(machinesText, b.name, machine);
  if (dup.length) {
    const where = `${machinesPath} line ${dup.join(', ')}`;
    const adopted = adoptMachineLines(machinesText, dup, b.name, machine);
    if (!adopted)
      throw new UsageError(
        `--name: ${where} holds ${b.name} together with other machines on one line; split that line, or pass another --name`,
      );
    if (!(await decideAdopt(c, `${where} already configures ${b.name}`))) {
      throw new UsageError(
        `--name: ${where} already configures ${b.name} outside nixremote; pass --adopt to replace it with nixremote's line (a backup is kept), or another --name`,
      );
    }
    machinesEdit = adopted;
  }
  steps.push({
    kind: 'write',
    title: toml ? `Table machines.${b.name} (Lix's TOML format)` : `Machine line for ${b.name}`,
    path: machinesPath,
    before: machinesBefore,
    after: machinesEdit.text,
    mode: 0o644,
  });

  const nixConfBefore = readText(nixConfPath);
  const nixConfText = nixConfBefore ?? '';
  // The user's builders may come from an included file; read them the way Nix does,
  // leaving out our own block.
  const cfg = readNixConfig(
    (p) => (p === nixConfPath ? nixConfText : readText(p)),
    { ...process.env, NIX_CONF_DIR: install.confDir },
    c.home,
    false,
  );
  const ours = blockLineNumbers(nixConfText);
  const userBuilders = (cfg.settings.get('builders') ?? [])
    .filter((s) => !(s.file === nixConfPath && ours.has(s.line)))
    .pop();
  const inherited =
    userBuilders && userBuilders.file !== nixConfPath
      ? { value: userBuilders.value, where: `${userBuilders.file}:${userBuilders.line}` }
      : null;
  // A builder the user lists inline in nix.conf under this name is the one being set up:
  // adopted, it is left out of nixremote's builders rather than listed twice.
  const userValue = inherited?.value ?? (userBuilders?.file === nixConfPath ? userBuilders.value : '');
  const inline = userValue.split(';').some((e) => inlineEntryNames(e.trim(), b.name));
  // Once adopted, the machines file holds nixremote's line for it: a re-run asks nothing.
  const adoptedBefore = readBlock(machinesText, machineMarkers(b.name)) !== null;
  if (inline && !adoptedBefore && !(await decideAdopt(c, `nix.conf's builders already lists ${b.name}`))) {
    throw new UsageError(
      `--name: builders in ${userBuilders?.file ?? nixConfPath} already lists ${b.name}; pass --adopt to move it to nixremote's machine line, or another --name`,
    );
  }
  // Lix reads TOML only from a builders setting that is one @file and nothing else (machines.cc).
  if (toml && (inherited || inline))
    throw new UsageError(
      `--machines-format toml: builders in ${userBuilders?.file ?? nixConfPath} lists other builders too, and Lix reads TOML only when builders is the one @file; move them into ${machinesPath} first`,
    );
  const conf = upsertNixConf(nixConfText, machinesPath, inherited, inline ? b.name : undefined, secretKeyFile);
  for (const n of conf.notes) out.warn(n);
  steps.push({
    kind: 'write',
    title: `builders in ${path.basename(nixConfPath)}`,
    path: nixConfPath,
    before: nixConfBefore,
    after: conf.edit.text,
    mode: 0o644,
  });

  const restart = install.daemon ? t.restart(tctx) : null;
  // The daemon reads nix.conf once, at start; the machines file it names is read afresh by
  // the build hook for each build (build-remote.cc, getMachines). So adding a second
  // builder, which changes only the machines file, needs no restart.
  if (restart && conf.edit.changed) {
    steps.push({
      kind: 'command',
      title: 'Restart the nix-daemon so it reads the new settings',
      detail: restart.join(' '),
      run: async () => {
        const r = await c.exec(restart[0]!, restart.slice(1), { timeoutMs: 60_000 });
        if (r.exitCode !== 0) throw new StepFailed('restart', `${r.command} failed: ${r.stderr.trim()}`);
      },
    });
  } else if (install.daemon && !restart && conf.edit.changed) {
    steps.push({
      kind: 'note',
      title: `Restart the nix-daemon yourself: ${t.restartHow(tctx)}`,
      detail: 'until then the daemon uses its old settings; the proof build passes the builder itself',
    });
  }
  return { steps, storeUri: machine.uri, machineLine, target, confChanged: conf.edit.changed, file: machinesPath };
}

/**
 * Which format the machines file gets: TOML when it is TOML already, or when asked
 * (--machines-format toml) with Lix 2.95 or later here and no lines in the file yet; else
 * lines. The two are never mixed in one file: Lix reads a file as one or the other.
 */
export async function machinesFormat(c: WizardCtx, file: string): Promise<boolean> {
  const text = readText(file) ?? '';
  const asked = c.flags.machinesFormat;
  if (asked !== undefined && asked !== 'toml' && asked !== 'lines')
    throw new UsageError(`--machines-format: '${asked}' is not toml or lines`);
  if (isTomlMachines(text)) {
    if (asked === 'lines')
      throw new UsageError(`--machines-format lines: ${file} is in Lix's TOML format; a line in it would break it`);
    return true;
  }
  if (asked !== 'toml') return false;
  const v = parseNixVersion((await c.exec('nix', ['--version'])).stdout);
  if (!v || !isLix(v) || !atLeast(v, 2, 95))
    throw new UsageError(
      `--machines-format toml: only Lix 2.95 and later read the TOML machines file, and this machine has ${v ? `${isLix(v) ? 'Lix' : 'Nix'} ${formatVersion(v)}` : 'no nix'}`,
    );
  // Anything but comments and blank lines is a line of the other format.
  if (/^\s*[^#\s]/m.test(text))
    throw new UsageError(
      `--machines-format toml: ${file} has machine lines; Lix reads a file as TOML or as lines, not both. Move them into TOML tables first, or leave out --machines-format`,
    );
  c.answers?.note('--machines-format', 'toml');
  return true;
}
