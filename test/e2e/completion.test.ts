// Shell completion, run in the real shells: bash's programmable completion, zsh's
// completion function (with compadd and friends recording what they are given, since zsh's
// completion system needs a terminal), and fish's own `complete -C`. Builder names come
// from a machines file, through `nixremote __builders`, as they would on a user's machine.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';

const REPO = path.resolve('.');
let env: NodeJS.ProcessEnv;

before(() => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-completion-'));
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(
    path.join(dir, 'bin/nixremote'),
    `#!/bin/sh\nexec ${process.execPath} ${REPO}/bin/nixremote "$@"\n`,
    { mode: 0o755 },
  );
  fs.mkdirSync(path.join(dir, 'etc'));
  fs.writeFileSync(path.join(dir, 'etc/nix.conf'), `builders = @${dir}/etc/machines\n`);
  fs.writeFileSync(
    path.join(dir, 'etc/machines'),
    'ssh://fastbox x86_64-linux\nssh-ng://nix@bigbox aarch64-linux - 4\n',
  );
  env = { ...process.env, PATH: `${dir}/bin:${process.env.PATH}`, NIX_CONF_DIR: path.join(dir, 'etc') };
});

const lines = (s: string) => s.split('\n').filter(Boolean);

describe('bash', () => {
  const complete = async (...words: string[]) => {
    const script = `source <(nixremote completion bash)\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}\n_nixremote\nprintf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = await execa('bash', ['-c', script], { env });
    return lines(r.stdout);
  };
  test('`nixremote do` completes to doctor; `d`, to disable too', async () => {
    assert.deepEqual(await complete('nixremote', 'do'), ['doctor']);
    assert.deepEqual((await complete('nixremote', 'd')).sort(), ['disable', 'doctor']);
  });
  test('builder names after `doctor `, `status `, `remove `, `disable ` and `enable `, from the machines file', async () => {
    for (const cmd of ['doctor', 'status', 'remove', 'disable', 'enable'])
      assert.deepEqual(await complete('nixremote', cmd, ''), ['fastbox', 'bigbox'], cmd);
    assert.deepEqual(await complete('nixremote', 'doctor', '--no-build', 'b'), ['bigbox']);
  });
  test("flags, and a flag's choices", async () => {
    assert.deepEqual(await complete('nixremote', 'init', '--target', 'nix'), ['nix-conf', 'nixos', 'nix-darwin']);
    assert.deepEqual(await complete('nixremote', 'doctor', '--n'), ['--no-build']);
    assert.deepEqual(await complete('nixremote', 'completion', ''), ['bash', 'zsh', 'fish']);
    assert.deepEqual(await complete('nixremote', 'init', '--host', ''), [], 'a host name is not guessed');
  });
});

describe('zsh', () => {
  // compadd, _describe and _files print what they are offered; zsh's matcher would then keep
  // those starting with the word, which the test does.
  const complete = async (...words: string[]) => {
    const script = [
      'compadd() { local a; for a; do [[ $a == -- ]] && continue; print -r -- $a; done }',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: zsh's own ${(@P)4}, not a template
      '_describe() { local -a d; d=("${(@P)4}"); print -rl -- ${d%%:*} }',
      '_files() { print -r -- FILES }',
      'compdef() { print -r -- "compdef $*" >&2 }',
      'source <(nixremote completion zsh)',
      `words=(${words.map((w) => `'${w}'`).join(' ')}); CURRENT=${words.length}`,
      '_nixremote',
    ].join('\n');
    const r = await execa('zsh', ['-f', '-c', script], { env });
    assert.equal(r.stderr, 'compdef _nixremote nixremote', 'sourced, it registers itself');
    const word = words[words.length - 1]!;
    return lines(r.stdout).filter((c) => c.startsWith(word));
  };
  test('`nixremote do` completes to doctor, and builder names after `doctor `', async () => {
    assert.deepEqual(await complete('nixremote', 'do'), ['doctor']);
    assert.deepEqual(await complete('nixremote', 'doctor', ''), ['fastbox', 'bigbox']);
    assert.deepEqual(await complete('nixremote', 'init', '--protocol', ''), ['ssh', 'ssh-ng']);
    assert.deepEqual(await complete('nixremote', 'init', '--key', ''), ['FILES']);
  });
});

describe('fish', () => {
  const complete = async (line: string) => {
    const r = await execa(
      'fish',
      ['--no-config', '-c', `nixremote completion fish | source; complete -C ${JSON.stringify(line)}`],
      { env },
    );
    return lines(r.stdout).map((l) => l.split('\t')[0]!);
  };
  test('`nixremote do` completes to doctor, and builder names after `doctor `', async () => {
    assert.deepEqual(await complete('nixremote do'), ['doctor']);
    assert.deepEqual((await complete('nixremote doctor ')).sort(), ['bigbox', 'fastbox']);
    assert.deepEqual(await complete('nixremote init --copy-key '), ['manual', 'password', 'skip', 'ssh']);
    assert.ok((await complete('nixremote status --')).includes('--watch'));
  });
});
