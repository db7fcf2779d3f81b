// node scripts/code-cache.cjs BUNDLE [ARGS...]: runs the bundle as bin/nixremote would with
// ARGS, and as it exits writes BUNDLE.cache, V8's code cache of it, functions compiled on
// that run included. bin/nixremote compiles the bundle from it (measured with callgrind:
// `--help` ran 11% more instructions than bare node without it, 7% with it).
const { readFileSync, writeFileSync } = require('node:fs');
const Module = require('node:module');
const { dirname, resolve } = require('node:path');
const { Script } = require('node:vm');

const file = resolve(process.argv[2]);
const dir = dirname(file);
const script = new Script(Module.wrap(readFileSync(file, 'utf8')), { filename: file });
process.argv = [process.argv[0], 'nixremote', ...process.argv.slice(3)];
process.on('exit', () => writeFileSync(`${file}.cache`, script.createCachedData()));
const m = new Module(file, module);
m.filename = file;
m.paths = Module._nodeModulePaths(dir);
script.runInThisContext()(m.exports, Module.createRequire(file), m, file, dir);
