// For the bundled CLI front: commander requires node:child_process when it loads, only to
// run executable subcommands, which nixremote has none of. Loading it pulls in net, stream
// and dgram, a third of --help's time over bare node; here it loads on first use instead.
let real;
function load() {
  if (!real) real = require('node:child_process');
  return real;
}
module.exports = new Proxy({}, { get: (_, key) => load()[key] });
