// A build's output, read for what the build hook did: which builder took which derivation,
// and every remote-build failure with its builder, cause and fix through the same
// catalogue doctor uses. What the catalogue does not know is left out, never guessed at.
// The lines are Nix's (build-remote.cc, derivation-goal.cc, worker.cc): "building '…' on
// 'URI'" (2.3+), "cannot build on 'URI': …" (2.3+), "build of '…' on 'URI' failed: …"
// (2.3+), "Failed to find a machine for remote build!" (2.4+), "unable to start any build"
// (2.3-2.20, Lix) / "Unable to start any build" (2.21+); a message goes on over the lines
// indented under it.
import { diagnose } from '../path/catalogue.js';
import { cannotTake } from '../path/facts.js';
import { uriHost } from '../nix/machines-file.js';

export interface Finding {
  /** 1-based line of the log where it starts. */
  line: number;
  /** 'sent': the hook sent a derivation to a builder; 'failed': a remote-build failure explained. */
  kind: 'sent' | 'failed';
  /** The builder's name (the store URI's host), when the line names one. */
  builder: string | null;
  uri: string | null;
  derivation: string | null;
  /** The catalogue entry, for a failure. */
  id?: string;
  cause?: string;
  fix?: string;
  /** What Nix printed, whole (the message and the lines under it). */
  said: string;
}

/** How Nix's own lines start; anything else in a build's output is a builder's log or ssh's words. */
const NIX_LINE =
  /^(error|warning|note|trace):|^(building|copying|these|this derivation|Failed to find a machine|cannot build on|waiting|checking|evaluating|fetching|downloading|unpacking) /;

interface Record {
  line: number;
  text: string;
  /** The lines around it that are not Nix's (ssh's words, a build's log): read with it. */
  around: string[];
}

/** Nix's messages, each with the lines indented under it, and the other lines around it. */
function records(text: string): Record[] {
  const out: Record[] = [];
  let orphans: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const l = raw.replace(/\r$/, '');
    const last = out[out.length - 1];
    if (l.trim() === '') return;
    // An indented line, or one of the "Failed to find a machine" block, continues the message.
    if (last && !orphans.length && (/^\s/.test(l) || /^(derivation|required|\d+ available machines|\()/.test(l)))
      last.text += `\n${l}`;
    else if (NIX_LINE.test(l)) {
      // What came between two of Nix's lines belongs to both: ssh prints before or after Nix's line.
      if (last) last.around.push(...orphans);
      out.push({ line: i + 1, text: l, around: orphans });
      orphans = [];
    } else orphans.push(l);
  });
  const last = out[out.length - 1];
  if (last) last.around.push(...orphans);
  return out;
}

const BUILDING = /building '([^']+\.drv)' on '([^']+)'/;
const ON_URI = /(?:cannot build on|build of '([^']+\.drv)' on) '([^']+)'(?: failed)?: ?/;

/**
 * "Failed to find a machine for remote build!": the derivation's system and features and
 * every machine the hook had, in its own listing ("(x86_64-linux, [big-parallel])" from
 * 2.12, "(x86_64-linux, big-parallel)" before); why each could not take it.
 */
function noMachine(text: string): string | null {
  const list = (s: string) =>
    s
      .replace(/^\[|\]$/g, '')
      .split(/[,\s]+/)
      .filter(Boolean);
  const req = /required \(system, features\): \(([^,]+), \[?([^\])]*)\]?\)/.exec(text);
  if (!req) return null;
  const system = req[1]!.trim();
  const features = list(req[2]!);
  const machines = [...text.matchAll(/^\((\[[^\]]*\]|[^,]*), (\d+), (\[[^\]]*\]|[^,]*), (\[[^\]]*\]|[^)]*)\)$/gm)].map(
    (m) => ({
      systems: list(m[1]!),
      supportedFeatures: list(m[3]!),
      mandatoryFeatures: list(m[4]!),
    }),
  );
  const listed = Number(/(\d+) available machines/.exec(text)?.[1] ?? machines.length);
  const wants = `${system}${features.length ? ` with ${features.join(', ')}` : ''}`;
  if (listed === 0) return `no builder is configured for the build hook, and it needs ${wants}`;
  // Before 2.12 the listing joins every list with ", ", so its fields cannot be told apart.
  if (machines.length !== listed)
    return `none of the ${listed} builders the build hook had was free and able to take ${wants}; this Nix lists them in a form that cannot be read back (before 2.12), so which rule each failed is not said here`;
  const why = machines.map((m) => cannotTake(m, system, features)).map((w, i) => (w ? `machine ${i + 1}: ${w}` : null));
  const able = why.filter((w) => w === null).length;
  if (able === 0) return `none of the ${machines.length} builders can take ${wants}: ${why.join('; ')}`;
  return `${able} of the ${machines.length} builders could take ${wants}, but none was free or reachable when asked${why.some(Boolean) ? ` (${why.filter(Boolean).join('; ')})` : ''}`;
}

/** Nix's messages grouped: errors one after another are one failure, said in several lines. */
function groups(rs: Record[]): Record[] {
  const out: Record[] = [];
  let prevError = false;
  for (const r of rs) {
    const error = /^error:/.test(r.text) && !/^error: build of '/.test(r.text);
    const last = out[out.length - 1];
    // Over ssh-ng the builder's own error comes first, then the hook's line naming the builder.
    const hookLine = /^cannot build on '/.test(r.text);
    if ((error || hookLine) && prevError && last) {
      last.text += `\n${r.text}`;
      last.around.push(...r.around);
    } else out.push({ ...r, around: [...r.around] });
    prevError = error;
  }
  return out;
}

export function explainLog(text: string): Finding[] {
  const found: Finding[] = [];
  // The builder the hook last sent a derivation to: the one an error right after it is about.
  let sentTo: { uri: string; derivation: string } | null = null;
  for (const r of groups(records(text))) {
    const built = BUILDING.exec(r.text);
    if (built) {
      sentTo = { uri: built[2]!, derivation: built[1]! };
      found.push({
        line: r.line,
        kind: 'sent',
        builder: uriHost(built[2]!),
        uri: built[2]!,
        derivation: built[1]!,
        said: r.text,
      });
      continue;
    }
    if (!/^(error:|cannot build on|Failed to find a machine)/.test(r.text)) {
      if (!/^copying /.test(r.text)) sentTo = null;
      continue;
    }
    const on = ON_URI.exec(r.text);
    const uri = on?.[2] ?? sentTo?.uri ?? null;
    const builder = uri ? uriHost(uri) : null;
    const derivation = on?.[1] ?? /derivation: (\S+)/.exec(r.text)?.[1] ?? sentTo?.derivation ?? null;
    sentTo = null;
    const block = /Failed to find a machine for remote build/.test(r.text) ? noMachine(r.text) : null;
    const context = [r.text, ...r.around].join('\n');
    const d = diagnose(
      { stdout: '', stderr: context, exitCode: 1 },
      'build',
      { name: builder ?? 'the builder' },
      '',
      '',
    );
    // A line the catalogue does not know is left out rather than guessed at.
    if (!d.known && !block) continue;
    // The hook's own verdicts (its machine listing included) after a builder's failure only repeat it.
    const after = found.some((x) => x.kind === 'failed' && x.builder);
    if ((block || (d.known && d.from === 'hook')) && after) continue;
    found.push({
      line: r.line,
      kind: 'failed',
      builder,
      uri,
      derivation,
      id: block ? 'hook.no-machine' : d.id,
      cause: block ?? d.cause,
      fix: block ? 'the lines above, or nixremote doctor, say why the builders that could take it did not' : d.fix,
      said: r.text,
    });
  }
  return found;
}
