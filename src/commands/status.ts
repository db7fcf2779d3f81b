// `nixremote status`: what the builders are doing now, once or (--watch) every few seconds.
// Exit 0 when every builder shown is reachable, 1 otherwise.
import { exec } from '../io/exec.js';
import { makeOutput } from '../io/output.js';
import { detectInstall } from '../init/install.js';
import { readRegistry, selectBuilders } from '../builders/registry.js';
import { realRegistryCtx } from '../builders/context.js';
import { fleetStatus, fleetWidth, realStatusCtx, type BuilderStatus } from '../builders/status.js';
import { formatTable } from '../text/table.js';
import { UsageError, validatePositiveInt } from '../validate.js';

export interface StatusFlags {
  json?: boolean;
  watch?: boolean;
  interval?: string;
  count?: string;
  jobs?: string;
  module?: string;
}

export async function statusCommand(names: string[], flags: StatusFlags): Promise<number> {
  const install = detectInstall();
  if (install.multiUser && install.user.uid !== 0) {
    throw new UsageError(
      "on a multi-user install the build hook connects with root's ssh key and config; re-run with sudo",
    );
  }
  const interval = validatePositiveInt(flags.interval ?? '3', '--interval');
  const width = flags.jobs === undefined ? fleetWidth() : validatePositiveInt(flags.jobs, '--jobs');
  const count = flags.count === undefined ? (flags.watch ? Infinity : 1) : validatePositiveInt(flags.count, '--count');
  const reg = readRegistry(realRegistryCtx(install, flags.module));
  const shown = selectBuilders(
    reg.builders.filter((b) => b.active || b.disabled),
    names,
  );
  // A disabled builder is not logged in to: Nix does not use it; it is shown with who took it out, when and why.
  const chosen = shown.filter((b) => !b.disabled);
  const disabled: BuilderStatus[] = shown
    .filter((b) => b.disabled)
    .map((b) => ({
      name: b.name,
      uri: b.uri,
      state: 'disabled',
      reachable: false,
      latencyMs: null,
      nixVersion: null,
      slotsInUse: 0,
      maxJobs: b.maxJobs,
      load: null,
      cores: null,
      storeFreeBytes: null,
      error: `disabled by ${b.disabled!.by} at ${b.disabled!.at}: ${b.disabled!.why}`,
    }));
  const out = makeOutput();
  if (!chosen.length && !disabled.length) {
    if (flags.json) process.stdout.write(JSON.stringify({ builders: [] }) + '\n');
    else out.info('No builders configured. Add one: sudo nixremote init');
    return 0;
  }
  // The logins run in process groups of their own: Ctrl-C stops nixremote, which then
  // ends them, instead of killing them under a round that would report builders down.
  const abort = new AbortController();
  const ctx = realStatusCtx(exec, install, abort.signal);
  // On a terminal --watch redraws in place, like top; elsewhere each round is appended.
  const redraw = Boolean(flags.watch && !flags.json && process.stdout.isTTY);
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  let last: BuilderStatus[] = [];
  let rounds = 0;
  try {
    for (let round = 0; round < count && !stop; round++) {
      if (round > 0) await sleep(interval * 1000, () => stop);
      if (stop) break;
      const result = [...(await fleetStatus(ctx, chosen, width)), ...disabled];
      // A round cut short by Ctrl-C is not shown or counted: the last whole one stands.
      if (stop) break;
      last = result;
      rounds++;
      const at = new Date();
      if (flags.json)
        process.stdout.write(
          JSON.stringify({ time: at.toISOString(), builders: last }, null, flags.watch ? 0 : 2) + '\n',
        );
      else {
        if (redraw) process.stdout.write('\x1b[H\x1b[2J');
        if (flags.watch) out.info(out.dim(`${at.toLocaleTimeString()}  every ${interval} s, Ctrl-C stops`));
        // The answer first, then the table.
        out.info(statusSummary(last));
        for (const line of renderStatus(last)) out.info(line);
        if (!redraw && flags.watch) out.info('');
      }
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
  if (rounds === 0) return 130;
  return last.every((s) => s.reachable || s.state === 'disabled') ? 0 : 1;
}

function sleep(ms: number, cancelled: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const tick = () => (cancelled() || Date.now() - t0 >= ms ? resolve() : setTimeout(tick, Math.min(100, ms)));
    tick();
  });
}

/** One line: how many answer, how many are busy, and which are down or broken, with why. */
export function statusSummary(list: BuilderStatus[]): string {
  const inUse = list.filter((s) => s.state !== 'disabled');
  const up = inUse.filter((s) => s.reachable).length;
  const busy = inUse.filter((s) => s.state === 'busy' || s.state === 'full').length;
  const bad = (state: string) => inUse.filter((s) => s.state === state);
  const named = (xs: BuilderStatus[]) =>
    xs
      .slice(0, 3)
      .map((s) => `${s.name}${s.error ? ` (${s.error})` : ''}`)
      .join(', ') + (xs.length > 3 ? `, and ${xs.length - 3} more` : '');
  const parts = [`${up} of ${inUse.length} builder${inUse.length === 1 ? '' : 's'} reachable`];
  if (busy) parts.push(`${busy} busy`);
  for (const state of ['down', 'broken']) {
    const xs = bad(state);
    if (xs.length) parts.push(`${xs.length} ${state}: ${named(xs)}`);
  }
  const off = list.length - inUse.length;
  if (off) parts.push(`${off} disabled`);
  return parts.join('; ');
}

export function renderStatus(list: BuilderStatus[]): string[] {
  const rows = [['NAME', 'STATE', 'LOGIN', 'NIX', 'SLOTS', 'LOAD/CORES', 'STORE FREE', '']];
  for (const s of list) {
    rows.push([
      s.name,
      s.state,
      s.latencyMs === null ? '-' : `${s.latencyMs} ms`,
      s.nixVersion ?? '-',
      `${s.slotsInUse}/${s.maxJobs}`,
      s.load === null ? '-' : `${s.load.toFixed(2)}/${s.cores ?? '?'}`,
      s.storeFreeBytes === null ? '-' : bytes(s.storeFreeBytes),
      s.error ?? '',
    ]);
  }
  return formatTable(rows);
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
