// The Linux builders a Mac runs for itself, which nixremote recognises and checks but never
// edits:
// - nix-darwin's nix.linux-builder (modules/nix/linux-builder.nix): a QEMU VM that the
//   launchd daemon org.nixos.linux-builder starts, reached over ssh-ng as
//   builder@linux-builder through /etc/ssh/ssh_config.d/100-linux-builder.conf (Hostname
//   localhost, Port 31022, IdentityFile /etc/nix/builder_ed25519: root:nixbld, 0600, which
//   nixpkgs' create-builder installs). nix-darwin does not write /etc/ssh/ssh_config: that
//   file must include ssh_config.d, as macOS's own does, or "Could not resolve hostname
//   linux-builder" (nix-darwin#913). Determinate's nix-darwin module runs the same VM as
//   nixos-vm-based-linux-builder.
// - Determinate's native Linux builder: no machine line, no ssh; the `external-builders`
//   setting (Nix 2.32, Determinate Nix 3.8.3; experimental feature external-builders) names
//   determinate-nixd builder, which Nix runs as a local build for aarch64-linux and
//   x86_64-linux. /etc/determinate/config.json's builder.state may turn it off.
import { effective, type NixConfig } from '../nix/effective-config.js';
import { uriHost, type ParsedMachine } from '../nix/machines-file.js';
import type { ExternalBuilder } from '../why/model.js';

export interface VmDaemonBuilder {
  kind: 'vm';
  /** The ssh alias and machine host: linux-builder, nixos-vm-based-linux-builder. */
  name: string;
  what: string;
  label: string;
  plist: string;
  sshConfig: string;
  /** Its machine line, when the machines file has one. */
  machine: ParsedMachine | null;
}

export interface NativeBuilder {
  kind: 'external';
  name: string;
  what: string;
  systems: string[];
  program: string;
  args: string[];
  /** Where external-builders is set. */
  where: string;
}

export type MacBuilder = VmDaemonBuilder | NativeBuilder;

const VMS = [
  { name: 'linux-builder', what: "nix-darwin's nix.linux-builder (a VM)" },
  { name: 'nixos-vm-based-linux-builder', what: "Determinate's nixosVmBasedLinuxBuilder for nix-darwin (a VM)" },
];

/** The VM port nix-darwin's Host block names (nixpkgs' darwin-builder hostPort, 31022 by default). */
export function vmPort(sshConfigText: string | null): number {
  const m = /^\s*Port\s+(\d+)\s*$/im.exec(sshConfigText ?? '');
  return m ? Number(m[1]) : 31022;
}

export function macBuilders(exists: (p: string) => boolean, machines: ParsedMachine[], cfg: NixConfig): MacBuilder[] {
  const out: MacBuilder[] = [];
  for (const v of VMS) {
    const label = `org.nixos.${v.name}`;
    const plist = `/Library/LaunchDaemons/${label}.plist`;
    const sshConfig = `/etc/ssh/ssh_config.d/100-${v.name}.conf`;
    const machine = machines.find((m) => uriHost(m.uri) === v.name) ?? null;
    if (machine || exists(plist))
      out.push({ kind: 'vm', name: v.name, what: v.what, label, plist, sshConfig, machine });
  }
  const set = effective(cfg, 'external-builders');
  for (const e of set ? parseExternalBuilders(set.value) : []) {
    const native = e.program.endsWith('/determinate-nixd') && e.args[0] === 'builder';
    out.push({
      kind: 'external',
      name: native ? 'determinate-nixd builder' : [e.program, ...e.args].join(' '),
      what: native ? "Determinate's native Linux builder" : 'an external builder (external-builders)',
      systems: e.systems,
      program: e.program,
      args: e.args,
      where: `${set!.file}:${set!.line}`,
    });
  }
  return out;
}

/** external-builders as `nix config show --json` gives it: the JSON array, or its text. */
export function parseExternalBuilders(v: unknown): ExternalBuilder[] {
  let x = v;
  if (typeof x === 'string') {
    try {
      x = JSON.parse(x);
    } catch {
      return [];
    }
  }
  if (!Array.isArray(x)) return [];
  return x.flatMap((e) =>
    e && Array.isArray(e.systems) && typeof e.program === 'string'
      ? [{ systems: e.systems.map(String), program: e.program, args: Array.isArray(e.args) ? e.args.map(String) : [] }]
      : [],
  );
}
