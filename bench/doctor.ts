// doctor's wall time on 1 and 8 real builders (sshd + Nix on 127.0.0.1, as in the
// end-to-end tests), next to the bare minimum on the same builders: `ssh NAME true` plus a
// store ping, each builder in parallel. Needs root (mount namespaces, a builder user).
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Builder, Client, PROBE_EXPR, q } from '../test/e2e/harness.js';
import { median, runs, timeMs } from './measure.js';

async function must(p: Promise<{ exitCode?: number; stdout?: unknown; stderr?: unknown }>, what: string) {
  const r = await p;
  if (r.exitCode !== 0) throw new Error(`${what} failed: ${r.stdout}\n${r.stderr}`);
}

export async function benchDoctor(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('doctor: skipped (needs root for the builders in mount namespaces)');
    return;
  }
  const builders: Builder[] = [];
  const client = new Client();
  try {
    for (let i = 1; i <= 8; i++) {
      const b = await Builder.create();
      builders.push(b);
      await must(
        client.nixremote(
          [
            'init',
            '--host',
            '127.0.0.1',
            '--port',
            String(b.port),
            '--user',
            b.user,
            '--name',
            `bench${i}`,
            '--yes',
            '--password-stdin',
            '--no-test-build',
          ],
          { input: b.password + '\n' },
        ),
        `init bench${i}`,
      );
    }
    const names = (n: number) => builders.slice(0, n).map((_, i) => `bench${i + 1}`);
    const machinesFile = fs.readFileSync(path.join(client.etcNix, 'machines'), 'utf8');
    const line = (name: string) => machinesFile.split('\n').find((l) => l.startsWith(`ssh://${name} `))!;
    // The irreducible work, with stock tools, the way a person would check a builder by
    // hand: log in, ping the store as the build hook opens it, and a -j0 build of a fresh
    // derivation sent to this builder alone. Each builder's steps in turn, the builders side
    // by side.
    const byHand = (n: number, build: boolean) =>
      client.run(
        names(n)
          .map((x) => {
            const steps = [
              `ssh -o BatchMode=yes ${x} true`,
              `nix --extra-experimental-features nix-command store ping --store ssh://${x} >/dev/null 2>&1`,
              ...(build
                ? [
                    `nix-build --no-out-link -j0 --builders ${q(line(x))} -E ${q(PROBE_EXPR(randomBytes(8).toString('hex')))} >/dev/null 2>&1`,
                  ]
                : []),
            ];
            return `(${steps.join(' && ')}) &`;
          })
          .join(' ') + ' wait',
      );
    // By hand and doctor alternate, and the ratio is taken pair by pair (as farm-bench
    // does), so a drift in the machine's speed moves both sides alike.
    const paired = async (a: () => Promise<unknown>, b: () => Promise<unknown>) => {
      const as: number[] = [];
      const bs: number[] = [];
      for (let i = 0; i < runs; i++) {
        bs.push(await timeMs(b));
        as.push(await timeMs(a));
      }
      return { a: median(as), b: median(bs), ratio: median(as.map((x, i) => x / bs[i]!)) };
    };
    console.log(`doctor on real builders, ${runs} pairs, medians`);
    for (const n of [1, 8]) {
      const full = await paired(
        () => must(client.nixremote(['doctor', ...names(n)]), 'doctor'),
        () => byHand(n, true),
      );
      const quick = await paired(
        () => must(client.nixremote(['doctor', '--no-build', ...names(n)]), 'doctor'),
        () => byHand(n, false),
      );
      const row = (what: string, ms: number, ratio: number) =>
        console.log(`  ${what.padEnd(58)} ${ms.toFixed(0).padStart(6)} ms   ${ratio.toFixed(2)}x`);
      const b = `${n} builder${n > 1 ? 's' : ''}`;
      row(`${b}: login + store ping + -j0 build, by hand (baseline)`, full.b, 1);
      row(`${b}: nixremote doctor (target ${n === 1 ? '1.2' : '1.3'}x)`, full.a, full.ratio);
      row(`${b}: login + store ping, by hand (baseline)`, quick.b, 1);
      row(`${b}: nixremote doctor --no-build`, quick.a, quick.ratio);
    }
  } finally {
    client.destroy();
    await Promise.all(builders.map((b) => b.destroy()));
  }
}
