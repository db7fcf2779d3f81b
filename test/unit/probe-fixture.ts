// What the builder probe prints on a healthy builder (recorded from Nix 2.8 on Debian 12,
// shortened), with the lines a test wants changed or added.
export interface ProbeFixture {
  /** Printed by the shell before the probe's first line. */
  noise?: string;
  /** Lines replacing the ones with the same key (key=value), or added. */
  set?: Record<string, string | null>;
  /** df -Pk and df -Pi rows for the store, the state directory and the build directory. */
  df?: { availKb: number; inodesFree?: number }[];
}

export function probeOutput(o: ProbeFixture = {}): string {
  const lines = new Map<string, string>([
    ['path', '/usr/bin/nix-store'],
    ['version', 'nix-store (Nix) 2.8.0'],
    ['system', 'x86_64-linux'],
    ['system-features', 'benchmark big-parallel nixos-test'],
    ['trusted-users', 'root'],
    ['allowed-users', '*'],
    ['max-jobs', '2'],
    ['daemon-path', '/usr/bin/nix-daemon'],
    ['uname', 'Linux x86_64'],
    ['shell', '/bin/bash'],
    ['home', '/home/nix'],
    ['user', 'nix'],
    ['groups', 'nix users'],
    ['store-writable', '1'],
    ['load', '0.10'],
    ['cores', '4'],
    ['build-dir-used', '/tmp'],
  ]);
  for (const [k, v] of Object.entries(o.set ?? {})) {
    if (v === null) lines.delete(k);
    else lines.set(k, v);
  }
  const df = o.df ?? [{ availKb: 90_000_000 }, { availKb: 90_000_000 }, { availKb: 90_000_000 }];
  const mounts = ['/nix', '/nix', '/'];
  return [
    ...(o.noise ? [o.noise] : []),
    'NIXREMOTE:begin',
    ...[...lines].map(([k, v]) => `NIXREMOTE:${k}=${v}`),
    'NIXREMOTE:df=Filesystem     1024-blocks     Used Available Capacity Mounted on',
    ...df.map((d, i) => `NIXREMOTE:df=/dev/vd${i}  100000000  1000 ${d.availKb}  1% ${mounts[i]}`),
    'NIXREMOTE:dfi=Filesystem       Inodes  IUsed    IFree IUse% Mounted on',
    ...df.map((d, i) => `NIXREMOTE:dfi=/dev/vd${i}  1000000  10 ${d.inodesFree ?? 999990}  1% ${mounts[i]}`),
    'NIXREMOTE:ls=drwxr-xr-x 5 1000 1000 4096 Dec  1 19:51 /home/nix',
    'NIXREMOTE:ls=drwx------ 2 1000 1000 4096 Dec  1 19:51 /home/nix/.ssh',
    'NIXREMOTE:ls=-rw------- 1 1000 1000 100 Dec  1 19:51 /home/nix/.ssh/authorized_keys',
    'NIXREMOTE:end',
    '',
  ].join('\n');
}
