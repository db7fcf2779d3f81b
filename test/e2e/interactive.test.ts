// The wizard through a real terminal: tmux runs it, the test types the answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, CLI, Terminal, withRig } from './harness.js';

test('the interactive wizard asks each question and ends with the command that repeats it', async () => {
  await withRig({}, async (b, c) => {
    const t = await Terminal.start(c, `${CLI} init`);
    try {
      const answer = async (prompt: RegExp, text: string) => {
        await t.waitFor(prompt);
        await t.type(text);
      };
      await answer(/Builder address/, '127.0.0.1');
      await answer(/SSH port/, String(b.port));
      await answer(/SSH user on the builder/, b.user);
      await answer(/Name for this builder/, 'tty-box');
      await answer(/SSH key for the builder/, '');
      await answer(/Trust this host key for tty-box/, '');
      await answer(/How should the key get onto/, '');
      await answer(/Password for/, b.password);
      await answer(/Systems it builds for/, '');
      await answer(/Supported features/, '');
      await answer(/Jobs at once/, '');
      await answer(/Speed factor/, '');
      await answer(/Where should the builder be configured/, '');
      await answer(/Apply this plan\?/, '');
      const end = await t.waitFor(/To do the same again without questions:\s*\n\s*nixremote init --yes [^\n]*/, 180_000);
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
