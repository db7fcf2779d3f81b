// What `why` found, said: as text to be read at a glance (each derivation, where it goes
// and the rule; the builders not chosen, one reason a line; a summary and what would change
// it; what was assumed and read), or as JSON.
import type { Output } from '../io/output.js';
import type { BuilderStatus } from '../builders/status.js';
import type { Builders } from '../nix/effective-config.js';
import type { ParsedMachine } from '../nix/machines-file.js';
import { formatVersion, type Version } from '../nix/version.js';
import type { DryRun, LocalSettings } from './gather.js';
import type { Verdict, WhyMachine } from './model.js';

export interface WhyResult {
  version: Version;
  local: LocalSettings;
  builders: Builders;
  machines: WhyMachine[];
  statuses: Map<string, BuilderStatus>;
  checked: boolean;
  /** Builders listed where the daemon ignores them. */
  ignored: ParsedMachine[];
  notes: string[];
  dry: DryRun;
  verdicts: Verdict[];
  changes: string[];
  files: string[];
  assumed: string[];
}

export function whyJson(r: WhyResult): unknown {
  const { local } = r;
  return {
    nixVersion: formatVersion(r.version),
    settings: {
      system: local.system,
      extraPlatforms: local.extraPlatforms,
      systemFeatures: local.systemFeatures,
      maxJobs: local.maxJobs,
      buildersUseSubstitutes: local.buildersUseSubstitutes,
      substituters: local.substituters,
    },
    files: r.files,
    builders: r.machines.map((m) => ({ ...m, state: r.statuses.get(m.uri)?.state ?? null })),
    ignored: r.ignored.map((m) => ({ uri: m.uri, source: `${m.source.file}:${m.source.line}` })),
    derivations: r.verdicts.map((x) => ({
      path: x.drv.path,
      name: x.drv.name,
      system: x.drv.system,
      features: x.drv.features,
      preferLocalBuild: x.drv.preferLocal,
      where: x.where,
      builder: x.builder,
      rule: x.rule,
      failsThere: x.failsThere,
      tried: x.tried,
      firstWould: x.firstWould,
      others: x.others,
      local: x.local,
    })),
    fetched: r.dry.fetch,
    summary: summary(r.verdicts),
    changes: r.changes,
    notes: r.notes,
    assumed: r.assumed,
  };
}

export function printWhy(out: Output, r: WhyResult): void {
  const { local, verdicts, dry } = r;
  printHeader(out, r.version, local, r.builders, r.machines, r.statuses, r.checked);
  for (const n of r.notes) out.warn(n);
  if (!verdicts.length) {
    out.ok(
      `Nothing to build${dry.fetch.length ? `: ${dry.fetch.length} path${dry.fetch.length === 1 ? '' : 's'} would be fetched from substituters` : ': every output is already here'}.`,
    );
    return;
  }
  out.info(
    `${verdicts.length} derivation${verdicts.length === 1 ? '' : 's'} would be built${dry.fetch.length ? `, ${dry.fetch.length} path${dry.fetch.length === 1 ? '' : 's'} fetched from substituters (${local.buildersUseSubstitutes ? 'builders fetch their inputs themselves: builders-use-substitutes' : 'inputs a builder needs are copied from here'})` : ''}:`,
  );
  out.info('');
  for (const x of verdicts) printVerdict(out, x);
  const s = summary(verdicts);
  const per = Object.entries(s.builders)
    .map(([n, k]) => `${n} ${k}`)
    .join(', ');
  out.info(
    `${s.toBuilders} to builders${per ? ` (${per})` : ''}, ${s.here} here, ${s.waits} would wait, ${s.fails} would fail.`,
  );
  if (r.changes.length) {
    out.info('What would change it:');
    for (const a of r.changes) out.info(`  - ${a}`);
  }
  out.info(out.dim(`Assumed: ${r.assumed.join('; ')}. Read: ${r.files.join(', ') || "no nix.conf (Nix's defaults)"}.`));
}

function summary(vs: Verdict[]) {
  const builders: Record<string, number> = {};
  for (const x of vs) if (x.builder) builders[x.builder] = (builders[x.builder] ?? 0) + 1;
  const n = (w: string) => vs.filter((x) => x.where === w).length;
  return { toBuilders: n('builder'), builders, here: n('here'), waits: n('waits'), fails: n('fails') };
}

function printHeader(
  out: Output,
  v: Version,
  l: LocalSettings,
  b: Builders,
  machines: WhyMachine[],
  statuses: Map<string, BuilderStatus>,
  checked: boolean,
): void {
  out.info(
    `Nix ${formatVersion(v)} here: ${l.system}${l.extraPlatforms.length ? ` (also ${l.extraPlatforms.join(', ')})` : ''}, max-jobs ${l.maxJobs}, system-features ${l.systemFeatures.join(' ') || '(none)'}`,
  );
  for (const e of l.external ?? [])
    out.info(
      `External builder (external-builders): ${[e.program, ...e.args].join(' ')} builds ${e.systems.join(', ')} here, as local builds`,
    );
  if (l.substituters.length)
    out.info(
      `Substituters: ${l.substituters.join(' ')}; ${l.buildersUseSubstitutes ? 'builders fetch inputs from them themselves (builders-use-substitutes)' : 'a builder gets its inputs from here (builders-use-substitutes = false)'}`,
    );
  const where = b.source ? `${b.source.file}:${b.source.line}` : b.value;
  if (!machines.length) {
    out.info(
      `No builders (builders = ${b.value || '""'}, from ${where}): Nix builds everything here${l.external?.length ? ', through the external builder where it serves the system' : ''}.`,
    );
    return;
  }
  const states = machines.map((m) => {
    const s = statuses.get(m.uri);
    return `${m.name} ${s ? s.state : checked ? 'not needed' : 'unchecked'} ${m.held}/${m.maxJobs}`;
  });
  out.info(
    `Builders (${machines.length}, from ${b.source ? where : b.value}${checked ? ', logged in to as status does' : ''}; state and slots held): ${states.join(', ')}`,
  );
}

function printVerdict(out: Output, x: Verdict): void {
  const to = x.where === 'builder' ? `→ ${x.builder}` : x.where === 'here' ? '→ here' : x.where;
  const head = `${x.drv.name} ${to}`;
  if (x.where === 'fails') out.fail(head);
  else if (x.where === 'waits' || x.failsThere) out.warn(head);
  else out.ok(head);
  out.info(`    ${x.rule}`);
  if (x.failsThere) out.info(`    but the build will fail there: ${x.failsThere}`);
  if (x.firstWould)
    out.info(`    (after the others that start with it took their slots; asked first, it would go to ${x.firstWould})`);
  // Builders with the same reason on one line: "a, b: not asked (preferLocalBuild)".
  const byWhy = new Map<string, string[]>();
  for (const o of x.others) byWhy.set(o.why, [...(byWhy.get(o.why) ?? []), o.name]);
  for (const [why, names] of byWhy) out.info(out.dim(`    ${names.join(', ')}: ${why}`));
  // Why not here, where the rule has not said it already.
  if ((x.where === 'builder' || x.where === 'waits') && x.local.why) out.info(out.dim(`    here: ${x.local.why}`));
}
