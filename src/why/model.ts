// Where Nix will build each derivation, decided as Nix decides it. Pure: the derivations,
// this machine's settings and the builders' state come in; a verdict per derivation goes out.
//
// From Nix's source (tags 2.8.0 to 2.34.0; the rules hold in Lix too):
// - derivation-goal.cc (derivation-building-goal.cc from 2.29), tryToBuild: a derivation
//   with preferLocalBuild that this machine can build (its system is `system` or in
//   `extra-platforms`, or it is builtin; every required feature in `system-features`;
//   max-jobs not 0) is built here without asking the hook. Otherwise the hook is asked,
//   with amWilling = "fewer local builds run than max-jobs".
// - build-remote.cc: the machines that take it are the enabled ones whose systems include
//   its system (or it is builtin), whose features (supported or mandatory) cover what it
//   requires, and whose mandatory features it all requires. Of those with a free slot
//   (slot N is free when current-load/URI-N can be locked), the first best wins: the lowest
//   load / speed factor, then the higher speed factor, then the lower load. The speed
//   factor is an unsigned int (at least 1) before 2.20, so that division rounds down; a
//   float from 2.20 (0 taken as 1).
// - When none has a free slot: if one would take it and this machine cannot build it now,
//   the hook says "postpone" and the build waits; otherwise it declines and the build is
//   tried here. A machine it cannot connect to ("cannot build on …") is disabled for the
//   rest of that hook process, and the next best is tried. The process ends with the first
//   build it accepts; the next derivation gets a fresh one.
// - Declined: built here if a local slot is free and this machine can build it; with
//   max-jobs 0 and nothing left running, "unable to start any build"; a system or
//   feature this machine lacks fails the build ("a 'S' with features {…} is required").
//
// Where versions differ (read from each one's source; Lix from lix-project/lix 2.90-2.95):
// - Lix asks the hook with amWilling = "this goal holds a local slot" (derivation-goal.cc,
//   tryBuildHook), false at the first ask: with its builders busy, a derivation waits
//   instead of building here. Lix re-reads the machines at every request, so a builder it
//   could not reach is tried again for the next derivation. From 2.95 a preferLocalBuild
//   derivation the hook declines is built here even with max-jobs 0 (extra-local-jobs).
import type { Version } from '../nix/version.js';
import { atLeast, isLix } from '../nix/version.js';

/** The rules of one version, where they differ. */
export interface HookRules {
  lix: boolean;
  /** Before 2.20 the speed factor is a whole number, and load / speed factor rounds down. */
  wholeSpeed: boolean;
  /** Lix 2.95+: preferLocalBuild derivations declined by the hook build here in extra-local-jobs. */
  extraLocalJobs: boolean;
}

export function hookRules(v: Version): HookRules {
  const lix = isLix(v);
  return {
    lix,
    wholeSpeed: !atLeast(v, 2, 20),
    extraLocalJobs: lix && atLeast(v, 2, 95),
  };
}

export interface WhyDrv {
  path: string;
  name: string;
  system: string;
  features: string[];
  preferLocal: boolean;
  /** builder "builtin:…": Nix builds it here whatever its system (fetchurl and the like). */
  builtin: boolean;
  /** The derivations of this set it needs built first. */
  inputs: string[];
}

export interface LocalSide {
  version: Version;
  system: string;
  extraPlatforms: string[];
  systemFeatures: string[];
  maxJobs: number;
  /**
   * external-builders (Nix 2.32+, Determinate Nix 3.8.3+), with the experimental feature
   * on: a derivation for one of their systems is a local build that the program runs
   * (Determinate's native Linux builder: determinate-nixd builder).
   */
  external?: ExternalBuilder[];
}

export interface ExternalBuilder {
  systems: string[];
  program: string;
  args: string[];
}

/**
 * The external builder a local build of this derivation goes to: the first whose systems
 * hold its system, features not looked at (derivation-building-goal.cc, 2.32 on: "see if
 * there is an external builder for a 'semi-local build'"; globals.cc).
 */
export function externalFor(d: WhyDrv, l: LocalSide): ExternalBuilder | null {
  return l.external?.find((e) => e.systems.includes(d.system)) ?? null;
}

const byExternal = (d: WhyDrv, l: LocalSide) => {
  const e = externalFor(d, l);
  return e ? ` by ${[e.program, ...e.args].join(' ')} (external-builders)` : '';
};

/** How the builder answered the cheap checks status runs (null: not looked at). */
export type Reach =
  | { kind: 'up' }
  /** The hook cannot connect: login refused or down, a shell that breaks the protocol, no Nix. */
  | { kind: 'unusable'; why: string }
  /** It connects, but the build will fail there (untrusted, full disk, …). */
  | { kind: 'fails-there'; why: string }
  | null;

export interface WhyMachine {
  name: string;
  uri: string;
  /** As Nix read them: an unset systems field is this machine's system. */
  systems: string[];
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  maxJobs: number;
  speedFactor: number;
  /** Slots other builds hold now. */
  held: number;
  reach: Reach;
}

export type Where = 'builder' | 'here' | 'waits' | 'fails';

export interface Verdict {
  drv: WhyDrv;
  where: Where;
  builder: string | null;
  /** The rule that decided it, in one line. */
  rule: string;
  /** For a builder the build will fail on: why. */
  failsThere: string | null;
  /** Builders the hook would try first and fail to connect to, in order. */
  tried: string[];
  /** For every builder not chosen, why not. */
  others: { name: string; why: string }[];
  /**
   * Where it would go if it were asked before the others of its wave, when that differs:
   * Nix asks about derivations that start together in no fixed order.
   */
  firstWould: string | null;
  /** Whether this machine could build it at all, and if not, why. */
  local: { could: boolean; why: string | null };
}

const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
const featureList = (f: string[]) => (f.length ? f.join(', ') : 'none');

/** Why this machine cannot build it (null: it can, max-jobs aside). */
export function localCannot(d: WhyDrv, l: LocalSide, external = true): string | null {
  if (external && externalFor(d, l)) return null;
  if (!d.builtin && d.system !== l.system && !l.extraPlatforms.includes(d.system))
    return `it needs ${d.system}; this machine is ${l.system}${l.extraPlatforms.length ? ` (extra-platforms: ${l.extraPlatforms.join(', ')})` : ''}`;
  const missing = d.features.filter((f) => !l.systemFeatures.includes(f));
  if (missing.length)
    return `it requires ${missing.join(', ')}, which this machine's system-features (${featureList(l.systemFeatures)}) lack`;
  return null;
}

/** Why a machine's line does not take it (null: it does). build-remote.cc's filter, in words. */
export function lineRefuses(m: WhyMachine, d: WhyDrv): string | null {
  if (d.system !== 'builtin' && !m.systems.includes(d.system))
    return `wrong system: it needs ${d.system}, ${m.name} offers ${m.systems.join(', ') || 'none'}`;
  const offered = new Set([...m.supportedFeatures, ...m.mandatoryFeatures]);
  const missing = d.features.filter((f) => !offered.has(f));
  if (missing.length)
    return `missing feature: it requires ${missing.join(', ')}; ${m.name} offers ${featureList([...offered])}`;
  const unmet = m.mandatoryFeatures.filter((f) => !d.features.includes(f));
  if (unmet.length) return `mandatory feature: ${m.name} takes only derivations that require ${unmet.join(', ')}`;
  return null;
}

/** load / speed factor as this Nix computes it: whole numbers before 2.20. */
function perSpeed(v: Version, load: number, m: WhyMachine): number {
  if (!hookRules(v).wholeSpeed) return load / (m.speedFactor === 0 ? 1 : m.speedFactor);
  return Math.floor(load / Math.max(1, Math.floor(m.speedFactor)));
}

/** The hook's comparison: is `m` at `load` better than the best so far? */
function better(v: Version, m: WhyMachine, load: number, best: { m: WhyMachine; load: number } | null): boolean {
  if (!best) return true;
  const a = perSpeed(v, load, m);
  const b = perSpeed(v, best.load, best.m);
  if (a !== b) return a < b;
  if (m.speedFactor !== best.m.speedFactor) return m.speedFactor > best.m.speedFactor;
  return load < best.load;
}

/** Derivations in waves: each after everything it needs from the set; a wave starts together. */
export function waves(drvs: WhyDrv[]): WhyDrv[][] {
  const byPath = new Map(drvs.map((d) => [d.path, d]));
  const level = new Map<string, number>();
  const depth = (d: WhyDrv, seen: Set<string>): number => {
    const known = level.get(d.path);
    if (known !== undefined) return known;
    if (seen.has(d.path)) return 0;
    seen.add(d.path);
    let n = 0;
    for (const i of d.inputs) {
      const dep = byPath.get(i);
      if (dep) n = Math.max(n, depth(dep, seen) + 1);
    }
    level.set(d.path, n);
    return n;
  };
  const out: WhyDrv[][] = [];
  for (const d of drvs) {
    const n = depth(d, new Set());
    const wave = out[n] ?? [];
    wave.push(d);
    out[n] = wave;
  }
  return out.filter(Boolean);
}

/**
 * Every derivation's verdict, wave by wave: the derivations of a wave start together, so
 * the slots they take add up; a later wave starts when the one before has finished. It
 * assumes nothing else is building here, and the builders' slots stay as they are now.
 */
export function decide(drvs: WhyDrv[], local: LocalSide, machines: WhyMachine[]): Verdict[] {
  const rules = hookRules(local.version);
  const out: Verdict[] = [];
  for (const wave of waves(drvs)) {
    // Slots taken by this wave's own builds, by store URI (lines with one URI share its locks).
    const taken = new Map<string, number>();
    let localRunning = 0;
    // Machines the current hook process could not connect to.
    let disabled = new Set<WhyMachine>();
    for (const d of wave) {
      const cannot = localCannot(d, local);
      const couldHere = cannot === null && local.maxJobs > 0;
      const localInfo = {
        could: couldHere,
        why: cannot ?? (couldHere ? null : 'max-jobs = 0: this machine builds nothing itself'),
      };
      const verdict = (v: Pick<Verdict, 'where' | 'builder' | 'rule'> & Partial<Verdict>) =>
        out.push({ drv: d, local: localInfo, others: [], tried: [], failsThere: null, firstWould: null, ...v });
      // The hook is skipped only while max-jobs is not 0 (derivation-goal.cc, buildLocally).
      if (d.preferLocal && cannot === null && local.maxJobs > 0) {
        localRunning++;
        verdict({
          where: 'here',
          builder: null,
          rule: `preferLocalBuild, and this machine can build it${byExternal(d, local)}: Nix does not ask the build hook`,
          others: machines.map((m) => ({ name: m.name, why: 'not asked (preferLocalBuild)' })),
        });
        continue;
      }
      if (rules.lix) disabled = new Set();
      if (!machines.length) {
        verdict(declined(d, local, rules, localRunning, 'no builder is configured'));
        if (out.at(-1)!.where === 'here') localRunning++;
        continue;
      }
      // Lix asks before the goal holds a local slot, so never as willing.
      const amWilling = !rules.lix && localRunning < local.maxJobs;
      // The hook knows nothing of external builders (build-remote.cc's couldBuildLocally).
      const canHere = amWilling && localCannot(d, local, false) === null && local.maxJobs > 0;
      const tried: string[] = [];
      const held = (m: WhyMachine) => m.held + (taken.get(m.uri) ?? 0);
      for (;;) {
        const { rightType, best } = pick(local.version, machines, d, disabled, held);
        // Asked before the rest of its wave, with only the slots others hold now.
        const alone = pick(local.version, machines, d, disabled, (m) => m.held).best;
        const firstWould = taken.size && alone?.m !== best?.m ? (alone?.m.name ?? 'nowhere free') : null;
        const others = () =>
          machines
            .filter((m) => m !== best?.m)
            .map((m) => ({ name: m.name, why: whyNot(local.version, m, d, held(m), best, disabled) }));
        if (!best) {
          if (rightType && !canHere) {
            verdict({
              where: 'waits',
              builder: null,
              rule: `waits for a builder: ${plural(rightType, 'builder')} can take it, none has a free slot now, and this machine ${cannot ? 'cannot build it' : local.maxJobs === 0 ? 'builds nothing (max-jobs = 0)' : rules.lix ? 'is not offered it (Lix asks the hook before it takes a local slot)' : 'has no free build slot'}`,
              tried,
              others: others(),
              firstWould,
            });
          } else {
            const why =
              rightType > 0
                ? `no builder that takes it has a free slot, and this machine can build it now`
                : tried.length
                  ? `${tried.length === 1 ? `the only builder that takes it, ${tried[0]}, cannot` : `none of the ${tried.length} builders that take it (${tried.join(', ')}) can`} be reached`
                  : `no builder can take ${d.system}${d.features.length ? ` with ${d.features.join(', ')}` : ''}`;
            verdict({ ...declined(d, local, rules, localRunning, why), tried, others: others(), firstWould });
            if (out.at(-1)!.where === 'here') localRunning++;
          }
          break;
        }
        const reach = best.m.reach;
        if (reach?.kind === 'unusable') {
          // The hook prints "cannot build on …", disables it and tries the next.
          disabled.add(best.m);
          tried.push(best.m.name);
          continue;
        }
        taken.set(best.m.uri, (taken.get(best.m.uri) ?? 0) + 1);
        const chosen = best.m;
        const able = machines.filter((m) => !disabled.has(m) && !lineRefuses(m, d));
        const free = able.filter((m) => m === chosen || held(m) < m.maxJobs);
        verdict({
          where: 'builder',
          builder: chosen.name,
          rule:
            chooseRule(local.version, chosen, best.load, free, able, d, tried.length > 0) +
            (tried.length ? `; ${tried.join(', ')} cannot be reached` : ''),
          failsThere: reach?.kind === 'fails-there' ? reach.why : null,
          firstWould,
          tried,
          others: machines
            .filter((m) => m !== chosen)
            .map((m) => ({
              name: m.name,
              why: whyNot(local.version, m, d, held(m) - (m === chosen ? 1 : 0), best, disabled),
            })),
        });
        // The hook process that accepted ends; the next derivation gets a new one.
        disabled = new Set();
        break;
      }
    }
  }
  return out;
}

/** build-remote.cc's choice: the machines that take it, and the first best with a free slot. */
function pick(
  v: Version,
  machines: WhyMachine[],
  d: WhyDrv,
  disabled: Set<WhyMachine>,
  held: (m: WhyMachine) => number,
): { rightType: number; best: { m: WhyMachine; load: number } | null } {
  let rightType = 0;
  let best: { m: WhyMachine; load: number } | null = null;
  for (const m of machines) {
    if (disabled.has(m) || lineRefuses(m, d)) continue;
    rightType++;
    const load = held(m);
    if (load >= m.maxJobs) continue;
    if (better(v, m, load, best)) best = { m, load };
  }
  return { rightType, best };
}

/** The hook declined: Nix tries to build it here. */
function declined(
  d: WhyDrv,
  local: LocalSide,
  rules: HookRules,
  localRunning: number,
  why: string,
): Pick<Verdict, 'where' | 'builder' | 'rule'> {
  const cannot = localCannot(d, local);
  if (local.maxJobs === 0 && !cannot && d.preferLocal && rules.extraLocalJobs)
    return { where: 'here', builder: null, rule: `${why}: built here in Lix's extra-local-jobs (preferLocalBuild)` };
  // A local build waits for a slot of max-jobs, builtin or not (tryLocalBuild).
  if (local.maxJobs === 0)
    return {
      where: 'fails',
      builder: null,
      rule: `${why}, and max-jobs = 0: Nix stops with "unable to start any build"`,
    };
  if (cannot)
    return {
      where: 'fails',
      builder: null,
      rule: `${why}, and this machine cannot build it (${cannot}): the build fails here`,
    };
  if (localRunning >= local.maxJobs)
    return {
      where: 'here',
      builder: null,
      rule: `${why}: built here${byExternal(d, local)} once a local build slot frees`,
    };
  return { where: 'here', builder: null, rule: `${why}: built here${byExternal(d, local)}` };
}

function chooseRule(
  v: Version,
  chosen: WhyMachine,
  load: number,
  free: WhyMachine[],
  able: WhyMachine[],
  d: WhyDrv,
  /** Some that take it could not be reached. */
  left: boolean,
): string {
  const wants = `${d.system}${d.features.length ? ` with ${d.features.join(', ')}` : ''}`;
  if (able.length === 1) return `the only builder${left ? ' left' : ''} that takes ${wants}`;
  if (free.length === 1) return `the only one with a free slot of the ${able.length} that take ${wants}`;
  // Before 2.20 the quotient is a whole number: said where it rounds.
  const rounds = hookRules(v).wholeSpeed && free.some((m) => m.held % Math.max(1, m.speedFactor) !== 0);
  return `the lowest load per speed factor (${load}/${chosen.speedFactor}) among the ${free.length} with a free slot that take ${wants}${rounds ? ' (whole numbers before Nix 2.20)' : ''}`;
}

function whyNot(
  v: Version,
  m: WhyMachine,
  d: WhyDrv,
  load: number,
  best: { m: WhyMachine; load: number } | null,
  disabled: Set<WhyMachine>,
): string {
  const down = m.reach && m.reach.kind === 'unusable' ? m.reach.why : null;
  if (disabled.has(m)) return `cannot be reached (${down ?? 'no login'}): the hook tries it first, and goes on`;
  const refuses = lineRefuses(m, d);
  const also = down ? `; it is also unreachable: ${down}` : '';
  if (refuses) return refuses + also;
  if (load >= m.maxJobs) return `no free slot now (${load} of ${m.maxJobs} held)${also}`;
  if (!best) return `not chosen${also}`;
  const a = perSpeed(v, load, m);
  const b = perSpeed(v, best.load, best.m);
  const loads = `${load}/${m.speedFactor} against ${best.load}/${best.m.speedFactor}`;
  if (a !== b) return `higher load per speed factor (${loads})${also}`;
  if (m.speedFactor !== best.m.speedFactor) return `same load per speed factor, lower speed factor (${loads})${also}`;
  if (load !== best.load) return `same speed factor, more load (${loads})${also}`;
  return `as good as ${best.m.name}, which comes first in the list${also}`;
}
