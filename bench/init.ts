// init --yes with its proof build, against the same steps done by hand with stock tools
// on a fresh builder each time: ssh-keygen, ssh-keyscan for the pin, ssh-copy-id with the
// password, the Host block and machine line written, the checks (a login, the store ping)
// and a -j0 build sent to that builder.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Builder, Client, initCommand, PROBE_EXPR, q } from '../test/e2e/harness.js';
import { runs } from './measure.js';

async function timed(fn: () => Promise<{ exitCode?: number; stderr?: unknown }>, what: string): Promise<number> {
  const t = performance.now();
  const r = await fn();
  const ms = performance.now() - t;
  if (r.exitCode !== 0) throw new Error(`${what} failed: ${r.stderr}`);
  return ms;
}

export async function benchInit(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('init: skipped (needs root for the builders in mount namespaces)');
    return;
  }
  const ratios: number[] = [];
  const mine: number[] = [];
  const hand: number[] = [];
  for (let i = 0; i < runs; i++) {
    // Each side gets a builder and a client of its own, fresh, as a new user's would be.
    const [b1, b2] = [await Builder.create(), await Builder.create()];
    const [c1, c2] = [new Client(), new Client()];
    try {
      const byHand = await timed(() => {
        fs.writeFileSync(path.join(c2.root, 'askpass'), `#!/bin/sh\necho '${b2.password}'\n`, { mode: 0o700 });
        const script = [
          'set -e',
          'mkdir -p -m 700 /root/.ssh',
          "ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/nix_remote",
          `ssh-keyscan -p ${b2.port} -t ed25519 127.0.0.1 2>/dev/null | sed 's/^[^ ]*/byhand/' > /root/.ssh/known_hosts`,
          `printf 'Host byhand\\n  HostName 127.0.0.1\\n  Port ${b2.port}\\n  User ${b2.user}\\n  IdentityFile /root/.ssh/nix_remote\\n  IdentitiesOnly yes\\n  HostKeyAlias byhand\\n' > /root/.ssh/config`,
          `SSH_ASKPASS=/root/askpass SSH_ASKPASS_REQUIRE=force setsid ssh-copy-id -i /root/.ssh/nix_remote.pub byhand >/dev/null 2>&1 < /dev/null`,
          `echo 'ssh://byhand x86_64-linux /root/.ssh/nix_remote 1 1' > /etc/nix/machines`,
          'ssh -o BatchMode=yes byhand true',
          'nix --extra-experimental-features nix-command store ping --store ssh://byhand >/dev/null 2>&1',
          `nix-build --no-out-link -j0 --builders @/etc/nix/machines -E ${q(PROBE_EXPR(randomBytes(8).toString('hex')))} >/dev/null 2>&1`,
        ].join('\n');
        return c2.run(script);
      }, 'the steps by hand');
      const init = await timed(
        () => c1.nixremote([...initCommand(b1, 'mine'), '--password-stdin'], { input: `${b1.password}\n` }),
        'init',
      );
      mine.push(init);
      hand.push(byHand);
      ratios.push(init / byHand);
    } finally {
      c1.destroy();
      c2.destroy();
      await Promise.all([b1.destroy(), b2.destroy()]);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`init on a fresh builder, median of ${runs} runs`);
  console.log(`  ${'the same steps by hand (baseline)'.padEnd(40)} ${median(hand).toFixed(0).padStart(6)} ms   1.00x`);
  console.log(
    `  ${'nixremote init --yes (target 1.3x)'.padEnd(40)} ${median(mine).toFixed(0).padStart(6)} ms   ${median(ratios).toFixed(2)}x`,
  );
}
