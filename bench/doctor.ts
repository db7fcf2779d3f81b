// doctor's wall time on 1 and 8 real builders (sshd + Nix on 127.0.0.1, as in the
// end-to-end tests), next to the bare minimum on the same builders: `ssh NAME true` plus a
// store ping, each builder in parallel. Needs root (mount namespaces, a builder user).
import { Builder, Client } from '../test/e2e/harness.js';
import { medianMs, runs } from './measure.js';

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
    const bare = (n: number) =>
      client.run(
        names(n)
          .map(
            (x) =>
              `(ssh -o BatchMode=yes ${x} true && nix --extra-experimental-features nix-command store ping --store ssh://${x} >/dev/null 2>&1) &`,
          )
          .join(' ') + ' wait',
      );
    console.log(`doctor on real builders, median of ${runs} runs`);
    for (const n of [1, 8]) {
      const base = await medianMs(() => bare(n));
      const quick = await medianMs(() => must(client.nixremote(['doctor', '--no-build', ...names(n)]), 'doctor'));
      const full = await medianMs(() => must(client.nixremote(['doctor', ...names(n)]), 'doctor'));
      console.log(
        `  ${n} builder${n > 1 ? 's' : ' '}  ssh true + store ping (baseline) ${base.toFixed(0).padStart(6)} ms   1.00x`,
      );
      console.log(
        `             doctor --no-build                 ${quick.toFixed(0).padStart(6)} ms   ${(quick / base).toFixed(2)}x`,
      );
      console.log(
        `             doctor (with a real build each)   ${full.toFixed(0).padStart(6)} ms   ${(full / base).toFixed(2)}x`,
      );
    }
  } finally {
    client.destroy();
    await Promise.all(builders.map((b) => b.destroy()));
  }
}
