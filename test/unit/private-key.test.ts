// The private key reader against keys made by the real ssh-keygen: with and without a
// passphrase, ed25519 and RSA, and a PEM key it leaves to ssh-keygen.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { readOpenSshKey } from '../../src/ssh/private-key.js';
import { parseKeyLine } from '../../src/ssh/host-key.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-keys-'));
async function make(name: string, args: string[]): Promise<{ priv: string; pub: string }> {
  const f = path.join(dir, name);
  await execa('ssh-keygen', ['-q', '-f', f, '-C', name, ...args]);
  return { priv: fs.readFileSync(f, 'utf8'), pub: fs.readFileSync(`${f}.pub`, 'utf8') };
}

describe('readOpenSshKey', () => {
  test('no passphrase: cipher none, and the public half equal to the .pub', async () => {
    for (const [name, args] of [
      ['ed', ['-t', 'ed25519', '-N', '']],
      ['rsa', ['-t', 'rsa', '-b', '2048', '-N', '']],
    ] as const) {
      const k = await make(name, [...args]);
      const r = readOpenSshKey(k.priv);
      assert.equal(r?.cipher, 'none', name);
      assert.deepEqual(r?.publicKey, parseKeyLine(k.pub.trim()), name);
    }
  });
  test('a passphrase: the cipher named, the public half still read', async () => {
    const k = await make('locked', ['-t', 'ed25519', '-N', 'secret words']);
    const r = readOpenSshKey(k.priv);
    assert.equal(r?.cipher, 'aes256-ctr');
    assert.deepEqual(r?.publicKey, parseKeyLine(k.pub.trim()));
  });
  test('PEM, damaged and other text: null, so that ssh-keygen judges them', async () => {
    const pem = await make('pem', ['-t', 'rsa', '-b', '2048', '-N', '', '-m', 'PEM']);
    assert.equal(readOpenSshKey(pem.priv), null);
    const ok = (await make('cut', ['-t', 'ed25519', '-N', ''])).priv;
    const lines = ok.split('\n');
    assert.equal(readOpenSshKey([lines[0], lines[1]!.slice(0, 20), lines.at(-2)].join('\n')), null);
    assert.equal(readOpenSshKey('KEY'), null);
  });
});
