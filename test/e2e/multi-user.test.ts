// A multi-user install (a nix-daemon with its socket, in the client's namespace) and a
// builder whose sshd offers only keyboard-interactive through PAM.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Builder, Client, CLI, q, withRig, initCommand } from './harness.js';

const initArgs = (b: Builder, name: string) => [...initCommand(b, name), '--password-stdin'];
const cli = (args: string[]) => `${CLI} ${args.map(q).join(' ')}`;

describe('a builder that offers only keyboard-interactive (PAM)', () => {
  test('the password goes in by keyboard-interactive', async () => {
    await withRig({ pamOnly: true }, async (b, c) => {
      const r = await c.nixremote(initArgs(b, 'pambox'), { input: b.password + '\n' });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(
        fs.readFileSync(path.join(b.dir, 'sshd.log'), 'utf8'),
        /Accepted keyboard-interactive\/pam for nixremote-e2e/,
      );
    });
  });
});

describe('a multi-user install', () => {
  test('init as root: detected, the restart is left to the user, the proof passes the builder itself', async () => {
    const b = await Builder.create();
    const c = new Client({ multiUser: true });
    try {
      const r = await c.withDaemon(cli(initArgs(b, 'multi')), { input: b.password + '\n' });
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(
        String(r.stdout),
        /Nix install: multi-user \(the daemon socket \/nix\/var\/nix\/daemon-socket\/socket exists\); builds run as root/,
      );
      assert.match(String(r.stdout), /Restart the nix-daemon yourself: restart nix-daemon with your service manager/);
      assert.match(String(r.stdout), /--builders '<multi's line>'/);

      // A daemon started after the change has read it; one started before has not.
      const fresh = await c.withDaemon(cli(['doctor', '--json', '--no-build']));
      const freshCheck = JSON.parse(String(fresh.stdout)).local.find((x: { id: string }) => x.id === 'daemon-fresh');
      assert.equal(freshCheck.status, 'pass', JSON.stringify(freshCheck));
      assert.equal(fresh.exitCode, 0, String(fresh.stdout));
      const stale = await c.withDaemon(`sleep 0.3; touch /etc/nix/nix.conf; ${cli(['doctor', '--no-build'])}`);
      assert.equal(stale.exitCode, 1);
      assert.match(String(stale.stdout), /\/etc\/nix\/nix\.conf changed after the nix-daemon \(pid \d+\) started/);
      assert.match(String(stale.stdout), /fix: +restart it/);
    } finally {
      c.destroy();
      await b.destroy();
    }
  });

  test('not root: init and doctor say to use sudo, and change nothing', async () => {
    const b = await Builder.create();
    const c = new Client({ multiUser: true });
    try {
      const before = c.snapshot();
      const asUser = (args: string[]) => `su -s /bin/sh ${b.user} -c ${q(`NO_COLOR=1 ${cli(args)}`)}`;
      const init = await c.withDaemon(asUser(initArgs(b, 'nope')), { input: b.password + '\n' });
      assert.equal(init.exitCode, 1, `${init.stdout}\n${init.stderr}`);
      assert.match(String(init.stderr), /the nix-daemon builds as root.*re-run with sudo/);
      const doc = await c.withDaemon(asUser(['doctor']));
      assert.equal(doc.exitCode, 1, `${doc.stdout}\n${doc.stderr}`);
      assert.match(String(doc.stdout), /fix: +run it as root: sudo nixremote doctor/);
      assert.deepEqual(c.snapshot(), before);
    } finally {
      c.destroy();
      await b.destroy();
    }
  });
});
