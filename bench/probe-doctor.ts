// Not part of npm run bench: one builder, doctor --json, each check's time, to see where
// doctor's wall time goes. node dist/bench/probe-doctor.js
import { Builder, Client } from '../test/e2e/harness.js';

const b = await Builder.create();
const c = new Client();
try {
  const init = await c.nixremote(['init', '--host', '127.0.0.1', '--port', String(b.port), '--user', b.user, '--name', 'one', '--yes', '--password-stdin', '--no-test-build'], { input: `${b.password}\n` });
  if (init.exitCode !== 0) throw new Error(String(init.stderr));
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    const r = await c.nixremote(['doctor', '--json', ...(process.argv[2] ? [process.argv[2]] : [])]);
    const wall = performance.now() - t;
    const j = JSON.parse(String(r.stdout));
    console.log(`wall ${wall.toFixed(0)} ms`);
    for (const x of j.local ?? []) console.log(`  local ${x.id.padEnd(18)} ${x.ms}`);
    for (const x of j.builders[0].checks) console.log(`  ${x.id.padEnd(24)} ${x.ms} ${x.status}`);
  }
} finally {
  c.destroy();
  await b.destroy();
}
