// What would change where the derivations go: one line per change, each said once, naming
// the derivations it would move. Read from the verdicts and the rules that made them.
import { lineRefuses, localCannot, type LocalSide, type Verdict, type WhyMachine } from './model.js';

export function changes(verdicts: Verdict[], machines: WhyMachine[], local: LocalSide): string[] {
  if (!machines.length) return verdicts.length ? ['no builder is configured: add one with `sudo nixremote init`'] : [];
  const said = new Map<string, string[]>();
  const add = (change: string, who: string) => {
    const names = said.get(change);
    if (names) names.push(who);
    else said.set(change, [who]);
  };
  for (const x of verdicts) {
    const d = x.drv;
    const takers = machines.filter((m) => lineRefuses(m, d) === null);
    for (const name of x.tried)
      add(`${name} cannot be reached: \`nixremote doctor ${name}\` names what is broken`, d.name);
    if (x.failsThere)
      add(`${x.builder} takes builds that then fail: \`nixremote doctor ${x.builder}\` (${x.failsThere})`, d.name);
    if (x.where === 'builder') continue;
    if (x.where === 'here' && d.preferLocal && x.rule.startsWith('preferLocalBuild')) {
      if (takers.length)
        add('max-jobs = 0 (or --max-jobs 0) would send preferLocalBuild derivations to a builder', d.name);
      continue;
    }
    if (takers.length === 0) {
      // No line takes it: name the nearest line, the one that fails on features alone.
      const sameSystem = machines.filter((m) => d.system === 'builtin' || m.systems.includes(d.system));
      if (!sameSystem.length)
        add(`no builder offers ${d.system}: add one that builds it, or add it to the systems of one that can`, d.name);
      for (const m of sameSystem) {
        const missing = d.features.filter((f) => !m.supportedFeatures.includes(f) && !m.mandatoryFeatures.includes(f));
        if (missing.length) add(`add ${missing.join(', ')} to ${m.name}'s supported features, if it has them`, d.name);
        const unmet = m.mandatoryFeatures.filter((f) => !d.features.includes(f));
        if (!missing.length && unmet.length)
          add(
            `${m.name} takes only derivations that require ${unmet.join(', ')}: drop that mandatory feature to let it take others`,
            d.name,
          );
      }
    } else if (x.where === 'waits' || x.where === 'here') {
      const busy = takers.filter((m) => !x.tried.includes(m.name)).map((m) => m.name);
      if (busy.length)
        add(
          `${x.where === 'waits' ? 'it starts' : 'it would go to a builder'} once a slot frees on ${busy.join(' or ')} (or with more max-jobs there)`,
          d.name,
        );
    }
    if (x.where === 'waits' && local.maxJobs === 0 && localCannot(d, local) === null)
      add('with max-jobs above 0 here, this machine would build it instead of waiting', d.name);
    if (x.where === 'fails' && local.maxJobs === 0 && localCannot(d, local) === null)
      add('max-jobs = auto here would let this machine build what no builder takes', d.name);
  }
  return [...said].map(([change, who]) => `${change} (${[...new Set(who)].join(', ')})`);
}
