// The npm package as a user gets it: packed from this tree, holding only what runs, then
// installed into a fresh prefix from the tarball (dependencies from npm's cache where `npm
// ci` filled it, else the npm registry) and run from another directory, by path and
// through npx.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';

const REPO = path.resolve('.');
const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
let dir: string;
let tarball: string;
let files: string[];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-package-'));
  // --ignore-scripts: pack the dist this run built, rather than rebuilding it under the
  // feet of the suites running beside this one (prepack cleans and rebuilds for a release).
  const r = await execa('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: REPO });
  const [info] = JSON.parse(r.stdout) as { filename: string; files: { path: string }[] }[];
  tarball = path.join(dir, info!.filename);
  files = info!.files.map((f) => f.path).sort();
});

describe('npm package', () => {
  test('holds only what runs: the program, bin, README, LICENSE, package.json', () => {
    const stray = files.filter(
      (f) =>
        !/^(bin\/nixremote|bin\/load\.cjs|bin\/package\.json|dist\/src\/.+\.c?js(\.cache)?|README\.md|LICENSE|package\.json)$/.test(
          f,
        ),
    );
    assert.deepEqual(stray, []);
    for (const f of files.filter((x) => x.startsWith('dist/src/'))) {
      // Every compiled file has its source, and every code cache its bundle: nothing stale
      // from an old build is shipped. version.cjs is the build's own (scripts/bundle.mjs).
      if (f === 'dist/src/version.cjs') continue;
      if (f.endsWith('.cache')) {
        assert.ok(files.includes(f.replace(/\.cache$/, '')), `${f} has no bundle`);
        continue;
      }
      assert.ok(
        fs.existsSync(path.join(REPO, f.replace(/^dist\//, '').replace(/\.c?js$/, '.ts'))),
        `${f} has no source`,
      );
    }
    assert.ok(files.includes('dist/src/cli.cjs') && files.includes('bin/package.json') && files.includes('LICENSE'));
    assert.ok(
      files.includes('dist/src/cli.cjs.cache') &&
        files.includes('dist/src/version.cjs') &&
        files.includes('bin/load.cjs'),
    );
  });

  test('installed from the tarball into a fresh prefix, it runs from any directory', async () => {
    const prefix = path.join(dir, 'prefix');
    const away = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-elsewhere-'));
    const i = await execa(
      'npm',
      ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball],
      { cwd: away, reject: false },
    );
    assert.equal(i.exitCode, 0, i.stderr);
    const bin = path.join(prefix, 'bin', 'nixremote');
    const v = await execa(bin, ['--version'], { cwd: away });
    assert.equal(v.stdout.trim(), pkg.version);
    const h = await execa(bin, ['init', '--help'], { cwd: away });
    assert.match(h.stdout, /^Usage: nixremote init \[options\]/m);
    assert.match(h.stdout, /--target <where>/);
    const c = await execa(bin, ['completion', 'bash'], { cwd: away });
    assert.match(c.stdout, /^complete -F _nixremote nixremote$/m);
  });

  test('npx runs it from the tarball', async () => {
    const away = fs.mkdtempSync(path.join(os.tmpdir(), 'nixremote-npx-'));
    const r = await execa('npx', ['--yes', '--prefer-offline', '--package', tarball, '--', 'nixremote', '--version'], {
      cwd: away,
      reject: false,
      env: { ...process.env, npm_config_cache: undefined },
    });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.trim(), pkg.version);
  });
});
