// The CLI as CommonJS bundles, for bin/nixremote: dist/src/cli.cjs (the front: commander,
// help, version) and one bundle per command in dist/src/commands/, required when that
// command runs. Measured with node --cpu-prof: --help and --version spent most of their
// time above bare node in the ES module loader (resolving, linking, and parsing commander
// for its exports), and doctor another tenth of its time loading some sixty modules. The
// plain tsc output in dist/src stays, for the tests.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { build } from 'esbuild';

const { version } = JSON.parse(readFileSync('package.json', 'utf8'));
const common = {
  bundle: true,
  minify: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // ssh2 loads native code when it can; it is required from node_modules as it is. The
  // prompts (with their character-set tables, two thirds of a command's bundle) load from
  // node_modules when a question is asked, as in the plain build.
  external: ['ssh2', '@inquirer/prompts'],
  // The version built in, so that starting reads no package.json; cli.ts then never
  // reaches its import.meta.url, which CommonJS does not have.
  define: { NIXREMOTE_VERSION: JSON.stringify(version), 'import.meta.url': '""' },
  logLevel: 'warning',
};

/**
 * An esbuild plugin: an `import()` of what `filter` matches becomes a module of its own, its
 * text `contents(toPath(spec))` (a require), evaluated when the import runs; what it
 * requires that `external` matches stays outside the bundle.
 */
function lateRequire(name, filter, toPath, contents, external) {
  return {
    name,
    setup(b) {
      b.onResolve({ filter }, (a) =>
        a.kind === 'dynamic-import' ? { path: toPath(a.path), namespace: name } : undefined,
      );
      b.onLoad({ filter: /.*/, namespace: name }, (a) => ({ contents: contents(a.path), loader: 'js' }));
      b.onResolve({ filter: external }, (a) => (a.namespace === name ? { path: a.path, external: true } : undefined));
    },
  };
}

// In the front, `import('./commands/X.js')` becomes a load of './commands/X.cjs', from its
// code cache as the front is (bin/load.cjs, beside bin/nixremote).
const commandsAsRequire = lateRequire(
  'command',
  /^\.\/commands\/[a-z-]+\.js$/,
  (p) => p.replace(/\.js$/, '.cjs'),
  (p) => `module.exports = require('../../bin/load.cjs').load(require.resolve(${JSON.stringify(p)}));`,
  /^(\.\/commands\/[a-z-]+\.cjs|\.\.\/\.\.\/bin\/load\.cjs)$/,
);

await build({
  ...common,
  entryPoints: ['src/cli.ts'],
  outfile: 'dist/src/cli.cjs',
  plugins: [commandsAsRequire],
  alias: { 'node:child_process': './scripts/lazy-child-process.cjs' },
});
// import('@inquirer/prompts') becomes a require of its CommonJS build when a question is
// asked: the bundles are compiled from their code caches by vm (bin/load.cjs), where import()
// has no loader without an experimental option, and require needs none.
const promptsAsRequire = lateRequire(
  'late-require',
  /^@inquirer\/prompts$/,
  (p) => p,
  (p) => `module.exports = require(${JSON.stringify(p)});`,
  /^@inquirer\/prompts$/,
);

await build({
  ...common,
  plugins: [promptsAsRequire],
  entryPoints: readdirSync('src/commands')
    .filter((f) => f.endsWith('.ts'))
    .map((f) => `src/commands/${f}`),
  outdir: 'dist/src/commands',
  outExtension: { '.js': '.cjs' },
});

// What bin/nixremote answers to --version alone.
writeFileSync('dist/src/version.cjs', `module.exports = ${JSON.stringify(version)};\n`);

// The bundles' code caches (scripts/code-cache.cjs), in a node of their own: it runs the front.
const caches = spawnSync(process.execPath, ['scripts/code-cache.cjs'], { stdio: ['ignore', 'ignore', 'inherit'] });
if (caches.status !== 0) throw new Error(`scripts/code-cache.cjs exited ${caches.status}`);
