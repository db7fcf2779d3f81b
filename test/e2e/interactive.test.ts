// The wizard through a real terminal: tmux runs it, the test types the answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, CLI, freePort, Terminal, withRig } from './harness.js';

test('the interactive wizard asks 11 questions on a healthy builder and ends with the command that repeats it', async () => {
  await withRig({}, async (b, c) => {
    const t = await Terminal.start(c, `${CLI} init`);
    try {
      let asked = 0;
      const answer = (prompt: RegExp, text: string) => {
        asked++;
        return t.answer(prompt, text);
      };
      await answer(/Builder address/, '127.0.0.1');
      await answer(/SSH port/, String(b.port));
      await answer(/SSH user on the builder/, b.user);
      await answer(/Name for this builder/, 'tty-box');
      await answer(/SSH key for the builder/, '');
      await answer(/Trust this host key for tty-box/, '');
      await answer(/How should the key get onto/, '');
      await answer(/Password for/, b.password);
      await answer(/How should Nix build on tty-box/, '');
      // What it found, confirmed at once.
      await answer(
        /nixremote found on it: x86_64-linux, [^\n]*; features [^\n]*; \d+ jobs; speed factor \d+\. Use these\?/,
        '',
      );
      await answer(/Apply this plan\?/, '');
      const end = await t.waitFor(
        /To do the same again without questions:\s*\n\s*nixremote init --yes [^\n]*/,
        180_000,
      );
      assert.ok(asked <= 11, `${asked} questions`);
      assert.doesNotMatch(
        end,
        /Systems it builds for|Jobs at once|Where should the builder be configured|Let the key only speak Nix/,
      );
      const repeat = /nixremote init --yes [^\n]*/.exec(end)![0];
      assert.match(repeat, new RegExp(`--host 127\\.0\\.0\\.1 --port ${b.port} --user ${b.user} --name tty-box`));
      assert.match(repeat, /--copy-key password --password-stdin/);
      assert.ok(!end.includes(b.password), 'the password is on the screen');
      assert.equal(await t.exitCode(), 0);
      assert.match(end, /tty-box is set up and a build ran on it/);
    } finally {
      await t.close();
    }
  });
});

test('a wrong port and a wrong password are asked again, and the wizard goes on', async () => {
  await withRig({}, async (b, c) => {
    const nothingThere = await freePort();
    const t = await Terminal.start(c, `${CLI} init`);
    try {
      const answer = (prompt: RegExp, text: string) => t.answer(prompt, text);
      await answer(/Builder address/, '127.0.0.1');
      await answer(/SSH port/, String(nothingThere));
      await answer(/SSH user on the builder/, b.user);
      // The default name is one of its own, not the address.
      const named = await t.waitFor(/Name for this builder[^\n]*\(nix-127-0-0-1\)/);
      assert.ok(named);
      await t.type('');
      await answer(/SSH key for the builder/, '');
      const wrong = await t.waitFor(
        /Check the address and port, and answer again:[\s\S]*Builder address[^\n]*\(127\.0\.0\.1\)/,
      );
      assert.match(wrong, new RegExp(`connection to 127\\.0\\.0\\.1:${nothingThere} refused`));
      await t.type('');
      await answer(/answer again:[\s\S]*SSH port[^\n]*\(\d+\)/, String(b.port));
      await answer(/answer again:[\s\S]*SSH user on the builder[^\n]*\(nixremote-e2e\)/, '');
      await answer(/answer again:[\s\S]*Name for this builder/, '');
      await answer(/Trust this host key for nix-127-0-0-1/, '');
      await answer(/How should the key get onto/, '');
      await answer(/Password for/, 'not-the-password');
      await answer(/refused the login[^\n]*; try again[\s\S]*Password for/, b.password);
      await answer(/How should Nix build on/, '');
      // "n": the four questions come back, what was found as their defaults.
      await answer(/nixremote found on it: [^\n]*Use these\?/, 'n');
      await answer(/Systems it builds for[^\n]*\(x86_64-linux/, '');
      await answer(/Supported features[^\n]*\(/, '');
      await answer(/Jobs at once[^\n]*\(\d+\)/, '3');
      await answer(/Speed factor[^\n]*\(\d+\)/, '');
      await answer(/Apply this plan\?/, '');
      const end = await t.waitFor(/nix-127-0-0-1 is set up and a build ran on it/, 180_000);
      assert.ok(!end.includes(b.password) && !end.includes('not-the-password'), 'a password is on the screen');
      assert.equal(await t.exitCode(), 0, end);
      assert.match(
        fs.readFileSync(path.join(c.root, '.ssh/config'), 'utf8'),
        new RegExp(`Host nix-127-0-0-1\n  HostName 127\\.0\\.0\\.1\n  Port ${b.port}\n`),
      );
      assert.match(fs.readFileSync(path.join(c.etcNix, 'machines'), 'utf8'), /^ssh:\/\/nix-127-0-0-1 \S+ \S+ 3 /m);
    } finally {
      await t.close();
    }
  });
});

test('unattended, a wrong port is still exit 1 at once, naming the cause', async () => {
  await withRig({}, async (b, c) => {
    const r = await c.nixremote(
      [
        'init',
        '--host',
        '127.0.0.1',
        '--port',
        String(await freePort()),
        '--user',
        b.user,
        '--yes',
        '--password-stdin',
      ],
      { input: b.password + '\n' },
    );
    assert.equal(r.exitCode, 1);
    assert.match(String(r.stderr), /connection to 127\.0\.0\.1:\d+ refused: nothing listens there/);
  });
});

test('Ctrl-C at a question exits 130 and changes nothing', async () => {
  const c = new Client();
  try {
    const before = c.snapshot();
    const t = await Terminal.start(c, `${CLI} init`);
    try {
      await t.waitFor(/Builder address/, 30_000);
      await t.keys('C-c');
      assert.equal(await t.exitCode(10_000), 130);
      assert.deepEqual(c.snapshot(), before);
    } finally {
      await t.close();
    }
  } finally {
    c.destroy();
  }
});
