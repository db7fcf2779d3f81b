// why on a closure of 500 derivations to be built (a tree of small derivations with a fresh
// nonce, so none is in the store), next to `nix build --dry-run` on the same expression,
// which needs the same evaluation and the same "what would be built", with one real builder
// configured by init. Pairs alternate; the ratio is taken pair by pair. Also measured: the
// floor of any program that runs on node, node starting that same dry run and doing nothing
// else, against the dry run alone.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Builder, Client, q } from '../test/e2e/harness.js';
import { paired, runs } from './measure.js';
import { setUpBuilders } from './rig.js';

const N = 500;

/** N derivations: 20 groups of 24 leaves and a root per group, and one top that needs the 20 roots. */
function closure(nonce: string): string {
  return `let
  mk = name: deps: derivation { inherit name deps; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "echo \${name} > $out" ]; nonce = "${nonce}"; };
  group = g: mk "g\${toString g}" (builtins.genList (i: mk "l\${toString g}-\${toString i}" [ ]) 24);
in mk "top" (builtins.genList group 20)
`;
}

export async function benchWhy(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('why: skipped (needs root for the builder in a mount namespace)');
    return;
  }
  const client = new Client();
  let builders: Builder[] = [];
  try {
    const rig = await setUpBuilders(client, 1, 'whybench');
    builders = rig.builders;
    const names = rig.names;
    const file = path.join(client.root, 'closure.nix');
    fs.writeFileSync(file, closure(randomBytes(8).toString('hex')));
    const count = (stderr: unknown) => (String(stderr).match(/^ {2}\/nix\/store\/\S+\.drv$/gm) ?? []).length;
    const dryRun = 'nix --extra-experimental-features nix-command build --dry-run -f /root/closure.nix';
    const dry = async () => {
      const r = await client.run(dryRun);
      if (r.exitCode !== 0 || count(r.stderr) !== N + 1)
        throw new Error(`nix build --dry-run: ${count(r.stderr)} derivations\n${r.stderr}`);
    };
    const floor = async () => {
      const js = `require('node:child_process').execSync(${JSON.stringify(dryRun)}, { stdio: 'ignore' })`;
      const r = await client.run(`node -e ${q(js)}`);
      if (r.exitCode !== 0) throw new Error(`node -e: ${r.stderr}`);
    };
    const why = (args: string[]) => async () => {
      const r = await client.nixremote(['why', '/root/closure.nix', '--json', ...args]);
      if (r.exitCode !== 0) throw new Error(`why: ${r.stdout}\n${r.stderr}`);
    };
    // The builder's state costs one login, which the dry run does not make: that baseline
    // makes it too, side by side with the dry run.
    const withLogin = () => client.run(`${dryRun} 2>/dev/null & ssh -o BatchMode=yes ${names[0]} true; wait`);
    await dry(); // the first evaluation writes the .drv files; every run after finds them
    const least = await paired(floor, dry);
    const bare = await paired(why(['--no-check']), dry);
    const full = await paired(why([]), withLogin);
    const row = (what: string, ms: number, ratio: number) =>
      console.log(`  ${what.padEnd(58)} ${ms.toFixed(0).padStart(6)} ms   ${ratio.toFixed(2)}x`);
    console.log(`why on a closure of ${N + 1} derivations to be built, one builder, ${runs} pairs, medians`);
    row('nix build --dry-run (baseline)', bare.b, 1);
    row('nixremote why --no-check (target 1.2x)', bare.a, bare.ratio);
    row('node -e, starting the same dry run and nothing else (floor)', least.a, least.ratio);
    row('nix build --dry-run and one ssh login, side by side (baseline)', full.b, 1);
    row("nixremote why, the builder's state included (target 1.2x)", full.a, full.ratio);
  } finally {
    client.destroy();
    await Promise.all(builders.map((b) => b.destroy()));
  }
}
