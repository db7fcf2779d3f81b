// Nix on the builder, as Nix's ssh finds it, and what the builder can build.
import { diagnose } from '../catalogue.js';
import { fail, pass, warn } from '../../doctor/types.js';
import { declarativeHome } from '../../doctor/context.js';
import { withRemoteProgram } from '../../nix/machines-file.js';
import { editFile } from '../../plan/plan.js';
import { cannotTake } from '../facts.js';
import { notVisible, probeOf, type PathCheck } from '../check.js';
import { parseNixVersion, protocolFloor } from '../../nix/version.js';

export const remoteNixCheck: PathCheck = {
  id: 'remote-nix',
  title: 'Nix on the builder',
  needs: ['shell'],
  tiers: ['status', 'init', 'doctor'],
  run: async (f) => {
    const p = await probeOf(f);
    if (!p) return notVisible('the Nix it runs');
    const prog = f.program;
    const floor = protocolFloor(await f.localVersion(), parseNixVersion(p.nixStoreVersion ?? ''), f.scheme);
    if (floor)
      return fail(
        `${p.nixStoreVersion} on the builder is older than this machine's Nix speaks over ${f.scheme}://`,
        floor,
        f.scheme === 'ssh-ng'
          ? `use ssh:// for this builder (${f.machine.source.file}:${f.machine.source.line}; init --protocol ssh), or update Nix on the builder`
          : 'update Nix on the builder',
      );
    // The probe ran the nix-store its shell finds, which is the one Nix's `ssh NAME
    // nix-store --serve` runs; nix-daemon (ssh-ng) comes beside it wherever Nix is installed.
    if (prog === 'nix-store' && p.nixStorePath && p.nixStoreVersion) return pass(`${prog}: ${p.nixStoreVersion}`);
    if (prog === 'nix-daemon' && p.nixDaemonPath && p.nixStoreVersion)
      return pass(`${prog}: ${p.nixDaemonPath} (${p.nixStoreVersion})`);
    const r = await f.run([prog, '--version']);
    if (r.exitCode === 0) return pass(`${prog}: ${r.stdout.trim().split('\n').pop()}`, { evidence: [r.ev] });
    const found = p.nixStoreFound;
    if (found && !f.remoteProgram) {
      const wanted = f.scheme === 'ssh-ng' ? found.replace(/nix-store$/, 'nix-daemon') : found;
      const file = f.machine.source.file;
      const home = declarativeHome(f.ctx);
      const edited = home ? null : withRemoteProgram(f.ctx.read(file) ?? '', f.machine.source.line, wanted);
      // nix.buildMachines has no remote-program field; the query rides on hostName.
      const where = home
        ? `hostName = "${f.name}?remote-program=${wanted}" for ${f.name} in ${home}`
        : `${f.scheme}://${f.target}?remote-program=${wanted} as the store URI (${file}:${f.machine.source.line})`;
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
                  description: `add ?remote-program=${wanted} to ${f.name}'s store URI in ${file}`,
                  steps: [editFile(`remote-program for ${f.name}`, file, f.ctx.read(file), edited)],
                },
              }),
        },
      );
    }
    // "install Nix" is said only when the probe found none anywhere; anything else is read.
    if (!p.nixStorePath && !found && !p.nixStoreBroken && r.exitCode === 127)
      return fail(
        `${prog} is not on the builder's non-interactive PATH, nor in any of the usual places`,
        `${prog} is not installed on the builder, or is somewhere its non-interactive shell does not look`,
        `install Nix on the builder, or add ?remote-program=/path/to/${prog} to the store URI (${f.machine.source.file}:${f.machine.source.line})`,
        { evidence: [r.ev] },
      );
    const out = p.nixStoreBroken ? { ...r, stderr: `${r.stderr}\n${p.nixStoreBroken}` } : r;
    const d = diagnose(
      out,
      'probe',
      { name: f.name, user: p.user, protocol: f.scheme },
      `${prog} --version on the builder`,
      `ssh ${f.name} ${prog} --version as the build user`,
    );
    return fail(`${prog} --version failed on the builder (exit ${r.exitCode})`, d.cause, d.fix, { evidence: [r.ev] });
  },
};

export const capabilitiesCheck: PathCheck = {
  id: 'capabilities',
  title: 'systems and features',
  needs: ['remote-nix'],
  tiers: ['doctor'],
  run: async (f) => {
    const p = await probeOf(f);
    if (!p) return notVisible("the builder's systems and features");
    const m = f.machine;
    const problems: string[] = [];
    const remoteSystems = [p.system, ...p.extraPlatforms].filter((x): x is string => !!x);
    if (p.system) {
      const missing = m.systems.filter((x) => !remoteSystems.includes(x));
      if (missing.length)
        problems.push(`claims ${missing.join(', ')}, but the builder's Nix builds ${remoteSystems.join(', ')}`);
    }
    if (p.systemFeatures) {
      const claimed = [...m.supportedFeatures, ...m.mandatoryFeatures];
      const missing = claimed.filter((x) => !p.systemFeatures!.includes(x));
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
        `make the systems and features on the machine line (${line}) match the builder: systems ${remoteSystems.join(',') || '?'}, features ${(p.systemFeatures ?? []).filter((x) => x !== 'kvm' || p.kvm).join(',') || '-'}`,
      );
    }
    if (m.mandatoryFeatures.length) {
      return warn(`mandatory features ${m.mandatoryFeatures.join(', ')}`, {
        cause: 'only derivations that require all of them are sent here; ordinary builds never are',
        fix: `clear the mandatory features (7th field) of the machine line (${line}) unless that is intended`,
      });
    }
    return pass(
      `builds ${m.systems.join(', ') || 'this system'}; features ${m.supportedFeatures.join(', ') || 'none'}`,
    );
  },
};

export const derivationCheck: PathCheck = {
  id: 'derivation',
  title: 'the derivation (--drv/--attr)',
  needs: ['uri'],
  tiers: ['doctor'],
  run: async (f) => {
    const drv = f.ctx.drv;
    if (!drv) return { status: 'skip', summary: 'no --drv or --attr given' };
    const m = f.machine;
    const why = cannotTake(m, drv.system, drv.requiredFeatures);
    const wants = `${drv.system}${drv.requiredFeatures.length ? ` with ${drv.requiredFeatures.join(', ')}` : ''}`;
    if (why) {
      return fail(
        `${drv.path} (${wants}) cannot go to ${f.name}: ${why}`,
        'Nix sends a derivation only to a builder whose systems include its system, whose features cover its requiredSystemFeatures, and whose mandatory features it requires',
        `change the machine line (${m.source.file}:${m.source.line}) if the builder can do it, or build it elsewhere`,
      );
    }
    return pass(`${drv.path} (${wants}) can go to ${f.name}`);
  },
};
