// Loads a CommonJS bundle of nixremote's from V8's code cache that the build made of it
// (BUNDLE.cache, scripts/code-cache.cjs), as require would load it but without compiling
// what the cache holds: measured, requiring the status bundle took 18 ms without its cache
// and 8 ms with it. A node whose V8 does not match the cache rejects it and compiles the
// source; without a cache file the bundle is required as usual. Code compiled so has no
// import(): the bundles require what they load late (scripts/bundle.mjs).
const { readFileSync } = require('node:fs');
const Module = require('node:module');
const { dirname } = require('node:path');
const { Script } = require('node:vm');

/** The bundle compiled as require compiles it (its source in the module wrapper). */
function compile(file, cachedData) {
  return new Script(Module.wrap(readFileSync(file, 'utf8')), { filename: file, cachedData });
}

/** Runs a compiled bundle as the module `file`; its exports. */
function run(script, file) {
  const m = new Module(file, module);
  m.filename = file;
  m.paths = Module._nodeModulePaths(dirname(file));
  script.runInThisContext()(m.exports, Module.createRequire(file), m, file, dirname(file));
  return m.exports;
}

function load(file) {
  let cachedData;
  try {
    cachedData = readFileSync(`${file}.cache`);
  } catch {
    return require(file);
  }
  return run(compile(file, cachedData), file);
}

module.exports = { compile, load, run };
