// The local Nix version decides which command pings a store. From Nix's release notes:
// `nix ping-store` up to 2.3; `nix store ping` from 2.4 (the `nix` command became
// experimental and needs nix-command); `nix store info` from 2.19 (ping kept as an alias).
// Lix forked before that rename and has only `nix store ping` (lix/nix/ping-store.cc,
// 2.90.0-2.95.3: registerCommand2<CmdPingStore>({"store", "ping"})).
export type Version = [number, number, number];

/** "nix (Nix) 2.8.0", "nix-store (Nix) 2.18.1", "nix (Lix, like Nix) 2.91.1" → [2, 8, 0]. */
export function parseNixVersion(out: string): Version | null {
  const m = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(out);
  if (!m) return null;
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

export function atLeast(v: Version, major: number, minor: number): boolean {
  return v[0] > major || (v[0] === major && v[1] >= minor);
}

/** Lix numbers its releases from 2.90 ("nix (Lix, like Nix) 2.91.1"); Nix has not got there. */
export const isLix = (v: Version) => v[0] === 2 && v[1] >= 90;

export const formatVersion = (v: Version) => v.join('.');

/** Flags that let the `nix` command run where it is still experimental (2.4 and later). */
export function nixCommandFlags(v: Version): string[] {
  return atLeast(v, 2, 4) ? ['--extra-experimental-features', 'nix-command'] : [];
}

export function storePingArgs(v: Version, storeUri: string): string[] {
  if (!atLeast(v, 2, 4)) return ['ping-store', '--store', storeUri];
  const sub = atLeast(v, 2, 19) && !isLix(v) ? ['store', 'info'] : ['store', 'ping'];
  return [...nixCommandFlags(v), ...sub, '--store', storeUri];
}

/** What a store ping printed: "Store URL:", and where shown "Version:" and "Trusted:". */
export function parseStorePing(out: string): { version: string | null; trusted: boolean | null } {
  const version = /^Version:\s*(\S+)/m.exec(out)?.[1] ?? null;
  const t = /^Trusted:\s*(\S+)/m.exec(out)?.[1];
  return { version, trusted: t === undefined ? null : t === '1' || t === 'true' };
}

/**
 * Why this machine's Nix will not speak the store URI's protocol to the builder's, or null.
 * Lix dropped old protocols: from 2.94 the daemon protocol before 1.35 (Nix 2.18) over
 * ssh-ng:// and the serve protocol before 2.4 (Nix 2.0) over ssh://; at 2.93 the daemon
 * protocol before 1.21 (Nix 2.3) (lix/libstore/remote-store.cc, legacy-ssh-store.cc). A
 * builder that runs Lix is newer than all of them.
 */
export function protocolFloor(local: Version | null, builder: Version | null, scheme: string): string | null {
  if (!local || !builder || !isLix(local) || isLix(builder)) return null;
  const floor =
    scheme === 'ssh-ng'
      ? atLeast(local, 2, 94)
        ? [2, 18]
        : atLeast(local, 2, 93)
          ? [2, 3]
          : null
      : atLeast(local, 2, 94)
        ? [2, 0]
        : null;
  if (!floor || atLeast(builder, floor[0]!, floor[1]!)) return null;
  return `this machine's Lix ${formatVersion(local)} no longer speaks ${scheme}:// to a Nix older than ${floor.join('.')}, and the builder has Nix ${formatVersion(builder)}`;
}
