// A check of the daemon's path: data plus one function that reads facts and returns a
// verdict. Each says in which tiers it runs: `status` (the cheap ones, from one login),
// `init` (what init must know before it writes anything, from its own session) and
// `doctor` (the whole walk, with the real build).
import type { Check, Result } from '../doctor/types.js';
import type { BuilderFacts } from './facts.js';
import type { ProbeResult } from './probe.js';

export type Tier = 'status' | 'init' | 'doctor';

export interface PathCheck extends Check<BuilderFacts> {
  tiers: readonly Tier[];
}

export const ALL: readonly Tier[] = ['status', 'init', 'doctor'];

/** The checks of one tier, in order; a need on a check outside the tier is dropped. */
export function forTier(checks: PathCheck[], tier: Tier): Check<BuilderFacts>[] {
  const kept = checks.filter((c) => c.tiers.includes(tier));
  const ids = new Set(kept.map((c) => c.id));
  return kept.map((c) => ({ ...c, needs: c.needs.filter((n) => ids.has(n)) }));
}

/** What a check that reads the probe says when the probe could not run (a forced command). */
export const notVisible = (what: string): Result => ({
  status: 'skip',
  summary: `not visible: a forced command answers instead of the shell, so ${what} cannot be read`,
});

/** The probe's answers, or null when the command sent was not what ran. */
export async function probeOf(f: BuilderFacts): Promise<ProbeResult | null> {
  return (await f.login()).probe;
}
