// package.nix and flake.nix, checked as far as can be without nixpkgs: both parse, and
// evaluated against a stub package set (test/fixtures/nix/stub-pkgs.nix) that records
// what it is given, they hand buildNpmPackage the right name, version, source and lock.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execa } from 'execa';

const REPO = path.resolve('.');
const STUB = path.join(REPO, 'test/fixtures/nix/stub-pkgs.nix');
const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  description: string;
};

// biome-ignore lint/suspicious/noExplicitAny: JSON from nix-instantiate, each field checked by the assertions
async function evalJson(expr: string): Promise<any> {
  const r = await execa('nix-instantiate', ['--eval', '--strict', '--json', '-E', expr], { reject: false });
  assert.equal(r.exitCode, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe('Nix packaging', () => {
  for (const f of ['package.nix', 'flake.nix']) {
    test(`${f} parses`, async () => {
      const r = await execa('nix-instantiate', ['--parse', path.join(REPO, f)], { reject: false });
      assert.equal(r.exitCode, 0, r.stderr);
    });
  }

  test('package.nix through callPackage: name and version from package.json, the source and the lock file', async () => {
    const v = await evalJson(`let s = import ${STUB}; in (s.pkgs.callPackage ${REPO}/package.nix { }).buildNpmPackage`);
    assert.equal(v.pname, pkg.name);
    assert.equal(v.version, pkg.version);
    assert.equal(v.meta.description, pkg.description);
    assert.equal(v.meta.mainProgram, 'nixremote');
    assert.equal(v.meta.license, 'mit');
    // The source is the repository, with only what the build reads.
    assert.equal(v.src.fileset.root, REPO);
    const inSource = (v.src.fileset.unions as string[]).map((p) => path.relative(REPO, p)).sort();
    assert.deepEqual(inSource, [
      'LICENSE',
      'README.md',
      'bin',
      'package-lock.json',
      'package.json',
      'src',
      'tsconfig.json',
    ]);
    // Dependencies from package-lock.json, no hash kept by hand.
    assert.deepEqual(v.npmDeps, { importNpmLock: { npmRoot: REPO } });
    assert.equal(v.npmConfigHook, 'importNpmLock.npmConfigHook');
    assert.equal(v.npmDepsHash, undefined);
    assert.ok(fs.existsSync(path.join(REPO, 'package-lock.json')));
    assert.equal(v.npmBuildScript, 'build');
    assert.ok(JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')).scripts.build);
    assert.equal(v.nodejs, '/nix/store/stub-nodejs-20');
  });

  test('flake.nix: packages.default and apps.default for nix run, on Linux and macOS', async () => {
    const v = await evalJson(
      `let s = import ${STUB}; f = import ${REPO}/flake.nix; self = f.outputs { inherit self; nixpkgs = s.nixpkgs; }; in { systems = builtins.attrNames self.packages; pname = self.packages.x86_64-linux.default.buildNpmPackage.pname; app = self.apps.aarch64-darwin.default; }`,
    );
    assert.deepEqual(v.systems, ['aarch64-darwin', 'aarch64-linux', 'x86_64-darwin', 'x86_64-linux']);
    assert.equal(v.pname, 'nixremote');
    assert.deepEqual(v.app, { type: 'app', program: `/nix/store/stub-nixremote-${pkg.version}/bin/nixremote` });
  });
});
