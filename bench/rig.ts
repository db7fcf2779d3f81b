// Builders set up for the doctor benchmarks, and the irreducible work done by hand that
// doctor is measured against.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Builder, type Client, initCommand, PROBE_EXPR, q } from '../test/e2e/harness.js';

/** n fresh builders, each set up with init (no proof build) as NAME1..NAMEn. */
export async function setUpBuilders(
  client: Client,
  n: number,
  prefix: string,
): Promise<{ builders: Builder[]; names: string[] }> {
  const builders: Builder[] = [];
  for (let i = 1; i <= n; i++) {
    const b = await Builder.create();
    builders.push(b);
    const r = await client.nixremote([...initCommand(b, `${prefix}${i}`), '--password-stdin', '--no-test-build'], {
      input: `${b.password}\n`,
    });
    if (r.exitCode !== 0) throw new Error(`init ${prefix}${i} failed: ${r.stdout}\n${r.stderr}`);
  }
  return { builders, names: builders.map((_, i) => `${prefix}${i + 1}`) };
}

/**
 * The irreducible work, with stock tools, the way a person would check a builder by hand:
 * log in, ping the store as the build hook opens it, and (with `build`) a -j0 build of a
 * fresh derivation sent to this builder alone. Each builder's steps in turn, the builders
 * side by side: a shell script for the client.
 */
export function byHand(client: Client, names: string[], build: boolean): string {
  const machines = fs.readFileSync(path.join(client.etcNix, 'machines'), 'utf8');
  const line = (name: string) => machines.split('\n').find((l) => l.startsWith(`ssh://${name} `))!;
  const steps = (x: string) => [
    `ssh -o BatchMode=yes ${x} true`,
    `nix --extra-experimental-features nix-command store ping --store ssh://${x} >/dev/null 2>&1`,
    ...(build
      ? [
          `nix-build --no-out-link -j0 --builders ${q(line(x))} -E ${q(PROBE_EXPR(randomBytes(8).toString('hex')))} >/dev/null 2>&1`,
        ]
      : []),
  ];
  return `${names.map((x) => `(${steps(x).join(' && ')}) &`).join(' ')} wait`;
}
