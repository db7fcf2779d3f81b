// Not part of npm run bench (node dist/bench/doctor-cpu.js, as root): machine-wide CPU time
// (from /proc/stat) spent by doctor on 8 builders against the by-hand baseline, and a CPU
// profile of one doctor run in /tmp/dprof8 (node --cpu-prof), to see where doctor's time
// goes on a loaded machine.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Builder, Client, PROBE_EXPR, q, REPO } from '../test/e2e/harness.js';

const busy = () => {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]!) * 10; // user nice system irq softirq, ms
};
const bs: Builder[] = [];
const c = new Client();
try {
  for (let i = 1; i <= 8; i++) {
    const b = await Builder.create();
    bs.push(b);
    const r = await c.nixremote(
      [
        'init',
        '--host',
        '127.0.0.1',
        '--port',
        String(b.port),
        '--user',
        b.user,
        '--name',
        `b${i}`,
        '--yes',
        '--password-stdin',
        '--no-test-build',
      ],
      { input: `${b.password}\n` },
    );
    if (r.exitCode !== 0) throw new Error(String(r.stderr));
  }
  const names = bs.map((_, i) => `b${i + 1}`);
  const machines = fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8');
  const line = (n: string) => machines.split('\n').find((l) => l.startsWith(`ssh://${n} `))!;
  const handScript = () =>
    names
      .map(
        (x) =>
          `(ssh -o BatchMode=yes ${x} true && nix --extra-experimental-features nix-command store ping --store ssh://${x} >/dev/null 2>&1 && nix-build --no-out-link -j0 --builders ${q(line(x))} -E ${q(PROBE_EXPR(randomBytes(8).toString('hex')))} >/dev/null 2>&1) &`,
      )
      .join(' ') + ' wait';
  const extra = process.argv.slice(2);
  await c.run(
    `rm -rf /tmp/dprof8; node --cpu-prof --cpu-prof-dir=/tmp/dprof8 ${q(`${REPO}/bin/nixremote`)} doctor ${names.join(' ')}`,
  );
  for (let i = 0; i < 3; i++) {
    // The CPU of doctor and the programs it waited for, on this side (bash's time).
    const timed = (cmd: string) =>
      c.run(`bash -c ${q(`TIMEFORMAT='client side: %U s user, %S s sys'; { time ( ${cmd} >/dev/null 2>&1 ); } 2>&1`)}`);
    for (const [what, fn] of [
      ['by hand', () => timed(`sh -c ${q(handScript())}`)],
      ['doctor', () => timed(`node ${REPO}/bin/nixremote doctor ${extra.join(' ')} ${names.join(' ')}`)],
    ] as const) {
      const c0 = busy();
      const t = performance.now();
      const r = await fn();
      console.log(
        `${what.padEnd(8)} wall ${(performance.now() - t).toFixed(0)} ms  cpu ${busy() - c0} ms  exit ${r.exitCode} ${String(r.stdout).trim()}`,
      );
    }
  }
} finally {
  c.destroy();
  await Promise.all(bs.map((b) => b.destroy()));
}
