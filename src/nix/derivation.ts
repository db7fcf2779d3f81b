// A .drv file read as Nix writes it: the ATerm `Derive(outputs, inputDrvs, inputSrcs,
// system, builder, args, env)` (src/libstore/derivations.cc, printDerivation/parseDerivation).
// Read from the file itself rather than through `nix show-derivation`, whose name (2.15:
// `nix derivation show`) and JSON layout (2.33 drops the store directory from the keys)
// differ between versions. Newer Nix can write `DrvWithVersion("xp-dyn-drv", …)` for
// dynamic derivations; its input derivations then carry nested output maps, read here too.

export interface Derivation {
  path: string;
  /** The name, from the store path (hash and .drv dropped). */
  name: string;
  outputs: { name: string; path: string }[];
  inputDrvs: string[];
  system: string;
  builder: string;
  env: Record<string, string>;
}

/** What the build hook and the local scheduler read of a derivation (Nix's ParsedDerivation). */
export interface DrvNeeds {
  system: string;
  /** requiredSystemFeatures, plus what Nix adds itself (ca-derivations for a floating output). */
  features: string[];
  /** preferLocalBuild: built here without asking the hook, when this machine can. */
  preferLocal: boolean;
}

type Term = string | Term[] | { ctor: string; args: Term[] };

/** An ATerm as Nix writes it: strings, lists [..], tuples (..) and constructors Name(..). */
export function parseATerm(text: string): Term {
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`not a derivation: ${what} at offset ${i}`);
  };
  const expect = (c: string) => {
    if (text[i] !== c) fail(`expected '${c}'`);
    i++;
  };
  // A string is taken a run at a time between escapes, not a character at a time: a
  // closure of many derivations is hundreds of files, and nixpkgs' carry long environments.
  const str = (): string => {
    expect('"');
    let out = '';
    let run = i;
    for (;;) {
      const c = text.charCodeAt(i);
      if (Number.isNaN(c)) fail('unterminated string');
      if (c === 34 /* " */) {
        out += text.slice(run, i++);
        return out;
      }
      if (c === 92 /* \\ */) {
        out += text.slice(run, i);
        const e = text[i + 1];
        out += e === 'n' ? '\n' : e === 'r' ? '\r' : e === 't' ? '\t' : (e ?? '');
        i += 2;
        run = i;
      } else i++;
    }
  };
  const seq = (close: string): Term[] => {
    const items: Term[] = [];
    if (text[i] === close) {
      i++;
      return items;
    }
    for (;;) {
      items.push(term());
      if (text[i] === ',') i++;
      else if (text[i] === close) {
        i++;
        return items;
      } else fail(`expected ',' or '${close}'`);
    }
  };
  const term = (): Term => {
    const c = text[i];
    if (c === '"') return str();
    if (c === '[') {
      i++;
      return seq(']');
    }
    if (c === '(') {
      i++;
      return { ctor: '', args: seq(')') };
    }
    const m = /^[A-Za-z]+/.exec(text.slice(i, i + 32));
    if (!m) return fail('unexpected character');
    i += m[0].length;
    expect('(');
    return { ctor: m[0], args: seq(')') };
  };
  const t = term();
  if (text.slice(i).trim() !== '') fail('trailing text');
  return t;
}

const isTuple = (t: Term): t is { ctor: string; args: Term[] } => typeof t === 'object' && !Array.isArray(t);

export function parseDerivation(text: string, drvPath: string): Derivation {
  const top = parseATerm(text);
  if (!isTuple(top) || (top.ctor !== 'Derive' && top.ctor !== 'DrvWithVersion'))
    throw new Error('not a derivation: it does not start with Derive(');
  // DrvWithVersion("version", outputs, …): the same fields after the version.
  const a = top.ctor === 'DrvWithVersion' ? top.args.slice(1) : top.args;
  const tuples = (t: Term | undefined) => (Array.isArray(t) ? t.filter(isTuple).map((x) => x.args) : []);
  const env: Record<string, string> = {};
  for (const [k, v] of tuples(a[6])) if (typeof k === 'string' && typeof v === 'string') env[k] = v;
  const base = drvPath.split('/').pop() ?? drvPath;
  return {
    path: drvPath,
    name: base.replace(/^[0-9a-z]{32}-/, '').replace(/\.drv$/, ''),
    outputs: tuples(a[0]).map((o) => ({ name: String(o[0]), path: typeof o[1] === 'string' ? o[1] : '' })),
    inputDrvs: tuples(a[1]).map((d) => String(d[0])),
    system: typeof a[3] === 'string' ? a[3] : '',
    builder: typeof a[4] === 'string' ? a[4] : '',
    env,
  };
}

/**
 * What Nix's ParsedDerivation reads: attributes from `__json` when the derivation has
 * structured attrs, else from its environment, where a true Boolean is "1".
 */
export function drvNeeds(d: Derivation): DrvNeeds {
  let json: Record<string, unknown> | null = null;
  if (d.env.__json !== undefined) {
    try {
      json = JSON.parse(d.env.__json) as Record<string, unknown>;
    } catch {
      json = null;
    }
  }
  const list = (name: string): string[] => {
    if (json) {
      const v = json[name];
      return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
    }
    return (d.env[name] ?? '').split(/\s+/).filter(Boolean);
  };
  const bool = (name: string): boolean => (json ? json[name] === true : d.env[name] === '1');
  const features = list('requiredSystemFeatures');
  // A floating content-addressed output has no path yet; Nix then requires ca-derivations
  // of whoever builds it (derivations.cc, getRequiredSystemFeatures, 2.4 and later).
  if (d.outputs.some((o) => o.path === '') && !features.includes('ca-derivations')) features.push('ca-derivations');
  return { system: d.system, features, preferLocal: bool('preferLocalBuild') };
}
