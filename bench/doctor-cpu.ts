// Not part of npm run bench (node dist/bench/doctor-cpu.js [doctor flags], as root):
// machine-wide CPU time (from /proc/stat) spent by doctor on 8 builders against the by-hand
// baseline, with the client side's share, and a CPU profile of one doctor run in
// /tmp/dprof8 (node --cpu-prof), to see where doctor's time goes on a loaded machine.
import * as fs from 'node:fs';
import { type Builder, Client, q, REPO } from '../test/e2e/harness.js';
import { byHand, setUpBuilders } from './rig.js';

const busy = () => {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]!) * 10; // user nice system irq softirq, ms
};
const c = new Client();
let builders: Builder[] = [];
try {
  const rig = await setUpBuilders(c, 8, 'b');
  builders = rig.builders;
  const doctor = `node ${q(`${REPO}/bin/nixremote`)} doctor ${process.argv.slice(2).join(' ')} ${rig.names.join(' ')}`;
  await c.run(`rm -rf /tmp/dprof8; ${doctor.replace(/^node /, 'node --cpu-prof --cpu-prof-dir=/tmp/dprof8 ')}`);
  // The CPU of a command and the programs it waited for, on the client's side (bash's time).
  const timed = (cmd: string) =>
    c.run(`bash -c ${q(`TIMEFORMAT='client side: %U s user, %S s sys'; { time ( ${cmd} >/dev/null 2>&1 ); } 2>&1`)}`);
  for (let i = 0; i < 3; i++) {
    for (const [what, cmd] of [
      ['by hand', `sh -c ${q(byHand(c, rig.names, true))}`],
      ['doctor', doctor],
    ] as const) {
      const c0 = busy();
      const t = performance.now();
      const r = await timed(cmd);
      const wall = (performance.now() - t).toFixed(0);
      console.log(
        `${what.padEnd(8)} wall ${wall} ms  cpu ${busy() - c0} ms  exit ${r.exitCode}  ${String(r.stdout).trim()}`,
      );
    }
  }
} finally {
  c.destroy();
  await Promise.all(builders.map((b) => b.destroy()));
}
