// `nixremote list`: every builder Nix will use, from every source Nix reads, one row each.
import { makeOutput } from '../io/output.js';
import { detectInstall } from '../init/install.js';
import { readRegistry, type BuilderEntry, type Registry } from '../builders/registry.js';
import { realRegistryCtx } from '../builders/context.js';
import { formatTable } from '../text/table.js';
import { readText } from '../io/files.js';
import { installedInterval, moduleKeeperInterval } from '../builders/keeper-service.js';
import type { MacBuilder } from '../builders/vm-builders.js';

export interface ListFlags {
  json?: boolean;
  module?: string;
}

export async function listCommand(flags: ListFlags): Promise<number> {
  const install = detectInstall();
  const reg = readRegistry(realRegistryCtx(install, flags.module));
  if (flags.json) {
    process.stdout.write(
      JSON.stringify(
        {
          builders: reg.builders.map(toJson),
          macBuilders: reg.macBuilders.map(macJson),
          errors: reg.errors.map((e) => ({ source: `${e.file}:${e.line}:${e.column}`, message: e.message })),
        },
        null,
        2,
      ) + '\n',
    );
    return 0;
  }
  const out = makeOutput();
  if (install.multiUser && install.user.uid !== 0) {
    out.warn(
      "not root: the nix-daemon connects with root's ssh config and known_hosts, and this shows yours; run it with sudo",
    );
  }
  for (const e of reg.errors)
    out.fail(`${e.file}:${e.line}:${e.column}: ${e.message} (Nix ignores every builder while this line is there)`);
  if (!reg.builders.length && !reg.macBuilders.length) {
    out.info('No builders configured. Add one: sudo nixremote init');
    return 0;
  }
  // The keeper's files in /etc, or its block in nixremote's module (running once switched to).
  const inModule = reg.modulePaths.find((p) => moduleKeeperInterval(readText(p) ?? '') !== null);
  const every = inModule ? moduleKeeperInterval(readText(inModule)!) : installedInterval(readText, process.platform);
  if (every !== null)
    out.info(
      out.dim(
        `keep: ${inModule ? `in ${inModule}` : 'installed'}, a round every ${every} s (nixremote keep --uninstall removes it)`,
      ),
    );
  if (reg.builders.length) {
    out.info(listSummary(reg.builders));
    for (const line of renderList(reg)) out.info(line);
  }
  if (reg.macBuilders.length) {
    if (reg.builders.length) out.info('');
    out.info("This Mac's own Linux builders (nixremote does not manage them; doctor checks them):");
    for (const m of reg.macBuilders) {
      const j = macJson(m);
      out.info(`  ${j.name}: ${j.what}, serves ${j.systems.join(', ') || 'its own system'} (${j.source})`);
    }
  }
  return 0;
}

/** One line first: how many Nix uses, who set them up, and what needs a look (no pinned host key). */
export function listSummary(bs: BuilderEntry[]): string {
  const used = bs.filter((b) => b.active && !b.disabled);
  const hand = used.filter((b) => !b.managed).length;
  const parts = [
    `${used.length} builder${used.length === 1 ? '' : 's'} Nix uses, ${hand === 0 ? 'all set up by nixremote' : hand === used.length ? 'all set up by hand' : `${used.length - hand} set up by nixremote, ${hand} by hand`}`,
  ];
  const off = bs.filter((b) => b.disabled).length;
  if (off) parts.push(`${off} disabled`);
  const waiting = bs.filter((b) => !b.active && !b.disabled).length;
  if (waiting) parts.push(`${waiting} not active until the rebuild`);
  const unpinned = used.filter((b) => b.pin === null).map((b) => b.name);
  if (unpinned.length) parts.push(`no pinned host key: ${unpinned.join(', ')}`);
  return parts.join('; ');
}

/** A Mac builder as list shows it: what it is, what it serves, where it is set. */
export function macJson(m: MacBuilder) {
  return m.kind === 'vm'
    ? {
        name: m.name,
        what: m.what,
        systems: m.machine?.systems ?? [],
        source: m.machine ? `${m.machine.source.file}:${m.machine.source.line}` : `${m.plist} (no machine line)`,
        launchd: m.label,
      }
    : { name: m.name, what: m.what, systems: m.systems, source: `external-builders, ${m.where}`, launchd: null };
}

/** The names of every builder, for shell completion: nothing at all when they cannot be read. */
export function builderNames(): string[] {
  try {
    return readRegistry(realRegistryCtx(detectInstall())).builders.map((b) => b.name);
  } catch {
    return [];
  }
}

export function toJson(b: BuilderEntry) {
  return {
    name: b.name,
    uri: b.uri,
    systems: b.systems,
    maxJobs: b.maxJobs,
    speedFactor: b.speedFactor,
    supportedFeatures: b.supportedFeatures,
    mandatoryFeatures: b.mandatoryFeatures,
    source: `${b.source.file}:${b.source.line}`,
    managed: b.managed,
    active: b.active,
    hostName: b.hostName,
    port: b.port,
    user: b.user,
    key: b.keyPath,
    hostKeyPinned: b.pin !== null,
    hostKeyPinnedIn:
      b.pin === null ? null : b.pin.where === 'machine-line' ? 'machine line' : `${b.pin.file}:${b.pin.line}`,
    hostBlock: b.hostBlock === null ? null : `${b.hostBlock.file}:${b.hostBlock.line}`,
    hostBlockManaged: b.hostBlock?.managed ?? false,
    access: b.access,
    disabled: b.disabled,
  };
}

/** The builders as a table, then where each is defined. */
export function renderList(reg: Registry): string[] {
  const rows = [
    ['NAME', 'STORE URI', 'SYSTEMS', 'JOBS', 'SPEED', 'FEATURES', 'ACCESS', 'SET UP BY', 'HOST KEY', 'SSH HOST BLOCK'],
  ];
  for (const b of reg.builders) {
    const features = [
      b.supportedFeatures.join(',') || '-',
      ...(b.mandatoryFeatures.length ? [`(mandatory: ${b.mandatoryFeatures.join(',')})`] : []),
    ].join(' ');
    const pin =
      b.pin === null ? 'NOT PINNED' : b.pin.where === 'machine-line' ? 'machine line' : `known_hosts (${b.pin.as})`;
    const block = b.hostBlock === null ? 'none' : b.hostBlock.managed ? 'nixremote' : 'your own';
    rows.push([
      b.name,
      b.uri,
      b.systems.join(',') || '(any)',
      String(b.maxJobs),
      String(b.speedFactor),
      features,
      b.access,
      b.managed ? 'nixremote' : 'hand',
      pin,
      block,
    ]);
  }
  const lines = formatTable(rows);
  lines.push('');
  for (const b of reg.builders) {
    const notes = [`${b.source.file}:${b.source.line}`];
    if (b.disabled) notes.push(`disabled by ${b.disabled.by} at ${b.disabled.at}: ${b.disabled.why}`);
    else if (!b.active) notes.push('not active until nixos-rebuild switch');
    if (b.hostBlock) notes.push(`Host block ${b.hostBlock.file}:${b.hostBlock.line}`);
    lines.push(`${b.name}: ${notes.join('; ')}`);
  }
  return lines;
}
