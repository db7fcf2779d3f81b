// The CLI's front, src/cli.ts with commander, as one CommonJS file (dist/src/cli.cjs) for
// bin/nixremote. Measured with node --cpu-prof: --help and --version spent most of their
// time above bare node in the ES module loader (resolving, linking, and parsing commander
// for its exports) rather than in nixremote. The commands stay separate ES modules,
// imported when one runs, so their dependencies cost nothing until then.
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';

const { version } = JSON.parse(readFileSync('package.json', 'utf8'));

await build({
  entryPoints: ['src/cli.ts'],
  outfile: 'dist/src/cli.cjs',
  bundle: true,
  minify: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // The commands, at the same relative paths as in dist/src.
  external: ['./commands/*'],
  alias: { 'node:child_process': './scripts/lazy-child-process.cjs' },
  // The version built in, so that starting reads no package.json; cli.ts then never
  // reaches its import.meta.url, which CommonJS does not have.
  define: { NIXREMOTE_VERSION: JSON.stringify(version), 'import.meta.url': '""' },
  logLevel: 'warning',
});
