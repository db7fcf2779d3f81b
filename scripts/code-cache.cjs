// node scripts/code-cache.cjs: V8's code cache of each bundle, BUNDLE.cache beside it, which
// bin/load.cjs compiles it from. The front's is made as it exits from a run of --help, so the
// functions that help and version run are in it compiled (measured with callgrind: --help
// ran 11% more instructions than bare node without a cache, 7% with it); a command's is
// made from compiling it alone, as running one here would need builders.
const { readdirSync, writeFileSync } = require('node:fs');
const { join, resolve } = require('node:path');
const { compile, run } = require('../bin/load.cjs');

const dist = resolve(__dirname, '../dist/src');
for (const f of readdirSync(join(dist, 'commands')).filter((f) => f.endsWith('.cjs'))) {
  const file = join(dist, 'commands', f);
  writeFileSync(`${file}.cache`, compile(file).createCachedData());
}
const front = join(dist, 'cli.cjs');
const script = compile(front);
process.argv = [process.argv[0], 'nixremote', '--help'];
process.on('exit', () => writeFileSync(`${front}.cache`, script.createCachedData()));
run(script, front);
