// The store URI on the machine line, as the build hook reads it, and the mistakes people
// make by hand: another scheme, a doubled scheme, a port Nix does not pass on, an IPv6
// address without brackets, an 8th field that is not a key.
import { atLeast, formatVersion, isLix } from '../../nix/version.js';
import { fail, pass } from '../../doctor/types.js';
import type { PathCheck } from '../check.js';

export const uriCheck: PathCheck = {
  id: 'uri',
  title: 'store URI',
  needs: [],
  tiers: ['status', 'doctor'],
  run: async (f) => {
    const m = f.machine;
    const where = `${m.source.file}:${m.source.line}`;
    if (/^[a-z-]+:\/\/[a-z-]+:\/\//.test(m.uri))
      return fail(
        `${m.uri} has its scheme twice`,
        `Nix reads "${m.uri.slice(m.uri.indexOf('://') + 3)}" as the host, and ssh cannot resolve it`,
        `write it once: ${m.uri.slice(m.uri.indexOf('://') + 3)} (${where})`,
      );
    if (f.scheme !== 'ssh' && f.scheme !== 'ssh-ng')
      return fail(
        `${m.uri} is not an ssh:// or ssh-ng:// store`,
        'nixremote checks builders reached over ssh',
        'use ssh://HOST or ssh-ng://HOST',
      );
    // ssh://fe80::1 : the authority holds colons but no brackets, so Nix's parse and ssh's disagree.
    const authority = m.uri
      .slice(m.uri.indexOf('://') + 3)
      .split('?')[0]!
      .replace(/^[^@]*@/, '');
    if ((authority.match(/:/g) ?? []).length > 1 && !authority.startsWith('['))
      return fail(
        `${m.uri}: an IPv6 address without brackets`,
        'a store URI takes an IPv6 address in brackets, [addr]; without them the address is read as a host and a port',
        `use a Host block with "HostName ${authority}" and its name in the URI (nixremote init writes one), or write ssh://[${authority}] (${where})`,
      );
    const hostBlock = (port: number) =>
      `put "Port ${port}" in a Host block for ${f.uri.host} (nixremote init writes one)`;
    if (f.uri.port !== null) {
      const v = await f.localVersion();
      // Nix 2.31 started passing the URI's port to ssh as -p; before, "host:port" is the host name.
      // Lix never splits it off (store-api.cc: the host is authority + path), at any version.
      if (v && (isLix(v) || !atLeast(v, 2, 31)))
        return fail(
          `${m.uri} holds a port, which ${isLix(v) ? 'Lix' : 'Nix'} ${formatVersion(v)} does not pass to ssh`,
          `${isLix(v) ? 'Lix' : 'Nix before 2.31'} gives ssh "${f.uri.host}:${f.uri.port}" as the host name ("Could not resolve hostname ${f.uri.host}:${f.uri.port}")`,
          `take ":${f.uri.port}" out of the URI and ${isLix(v) && atLeast(v, 2, 93) ? `add ?port=${f.uri.port} (Lix 2.93 on), or ` : ''}${hostBlock(f.uri.port)} (${where})`,
        );
    } else if (f.uri.sshPort !== null) {
      const v = await f.localVersion();
      // ?port=N is a setting of Lix's ssh stores from 2.93 (lix/libstore/ssh-store.hh, -p N); Nix has none.
      if (v && !(isLix(v) && atLeast(v, 2, 93)))
        return fail(
          `${m.uri} sets ?port=${f.uri.sshPort}, which ${isLix(v) ? 'Lix' : 'Nix'} ${formatVersion(v)} does not know`,
          `only Lix 2.93 and later take the port as ?port=; ${isLix(v) ? 'Lix before 2.93 warns "unknown setting \'port\'"' : 'Nix has no such setting'} and ssh goes to port 22`,
          `take "?port=${f.uri.sshPort}" out of the URI and ${hostBlock(f.uri.sshPort)} (${where})`,
        );
    }
    if (f.pinnedBad)
      return fail(
        'the host key (8th field) does not decode to a public key',
        `Nix base64-decodes that field and writes it as the known host key; "${m.hostKey!.slice(0, 24)}..." is not one`,
        `replace it with the output of: base64 -w0 of the builder's /etc/ssh/ssh_host_ed25519_key.pub (${where})`,
      );
    return pass(`${m.uri} (${where})`);
  },
};
