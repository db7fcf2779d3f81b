// The wizard through a real terminal: tmux runs it, the test types the answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execa } from 'execa';
import { Builder, Client, CLI, q } from './harness.js';

const session = `nixremote-e2e-${process.pid}`;
const tmux = (...args: string[]) => execa('tmux', args, { reject: false });
const screen = async () => String((await tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', session)).stdout);

async function waitFor(re: RegExp, ms = 60_000): Promise<string> {
  const end = Date.now() + ms;
  let s = '';
  while (Date.now() < end) {
    s = await screen();
    if (re.test(s)) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${re}; the screen shows:\n${s}`);
}

async function answer(prompt: RegExp, keys: string): Promise<void> {
  await waitFor(prompt);
  if (keys) await tmux('send-keys', '-t', session, '-l', keys);
  await tmux('send-keys', '-t', session, 'Enter');
}

test('the interactive wizard asks each question and ends with the command that repeats it', async () => {
  const b = await Builder.create();
  const c = new Client();
  const exitFile = path.join(c.root, '..', 'exit-code');
  try {
    const inner = `${CLI} init; echo $? > ${exitFile}; sleep 600`;
    const cmd = c.wrap(inner).map(q).join(' ');
    const r = await tmux('new-session', '-d', '-s', session, '-x', '200', '-y', '50', `env NO_COLOR=1 ${cmd}`);
    assert.equal(r.exitCode, 0, String(r.stderr));
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
    const end = await waitFor(/To do the same again without questions:\s*\n\s*nixremote init --yes [^\n]*/, 180_000);
    const repeat = /nixremote init --yes [^\n]*/.exec(end)![0];
    assert.match(repeat, new RegExp(`--host 127\\.0\\.0\\.1 --port ${b.port} --user ${b.user} --name tty-box`));
    assert.match(repeat, /--copy-key password --password-stdin/);
    assert.ok(!end.includes(b.password), 'the password is on the screen');
    for (let i = 0; i < 50 && !fs.existsSync(exitFile); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(fs.readFileSync(exitFile, 'utf8').trim(), '0');
    assert.match(end, /tty-box is set up and a build ran on it/);
  } finally {
    await tmux('kill-session', '-t', session);
    c.destroy();
    await b.destroy();
  }
});

test('Ctrl-C at a question exits 130 and changes nothing', async () => {
  const c = new Client();
  const exitFile = path.join(c.root, '..', 'exit-code');
  const name = `${session}-int`;
  try {
    const before = c.snapshot();
    const cmd = c.wrap(`${CLI} init; echo $? > ${exitFile}; sleep 600`).map(q).join(' ');
    assert.equal((await tmux('new-session', '-d', '-s', name, '-x', '200', '-y', '50', `env NO_COLOR=1 ${cmd}`)).exitCode, 0);
    const end = Date.now() + 30_000;
    while (Date.now() < end && !/Builder address/.test(String((await tmux('capture-pane', '-p', '-t', name)).stdout))) await new Promise((r) => setTimeout(r, 100));
    await tmux('send-keys', '-t', name, 'C-c');
    for (let i = 0; i < 100 && !fs.existsSync(exitFile); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(fs.readFileSync(exitFile, 'utf8').trim(), '130');
    assert.deepEqual(c.snapshot(), before);
  } finally {
    await tmux('kill-session', '-t', name);
    c.destroy();
  }
});
