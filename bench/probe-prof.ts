// Not part of npm run bench: a CPU profile of doctor on one builder, in /tmp/dprof.
import { Builder, Client, q } from '../test/e2e/harness.js';
import { REPO } from '../test/e2e/harness.js';

const b = await Builder.create();
const c = new Client();
try {
  const init = await c.nixremote(['init', '--host', '127.0.0.1', '--port', String(b.port), '--user', b.user, '--name', 'one', '--yes', '--password-stdin', '--no-test-build'], { input: `${b.password}\n` });
  if (init.exitCode !== 0) throw new Error(String(init.stderr));
  await c.run(`node ${q(`${REPO}/bin/nixremote`)} doctor one`);
  const r = await c.run(`rm -rf /tmp/dprof; node --cpu-prof --cpu-prof-dir=/tmp/dprof ${q(`${REPO}/bin/nixremote`)} doctor one`);
  console.log(r.exitCode);
} finally {
  c.destroy();
  await b.destroy();
}
