// The builder probe: one POSIX sh script, run in the same login as Nix's would be, that
// gathers every fact the checks judge. It starts as `sh -c '...'` so that a login shell
// that is not sh-like still runs it; every answer is a line starting NIXREMOTE:, so that
// nothing a startup file prints is taken for one, and its first line marks where the
// shell's own output ends. It starts few processes (each is one more on a busy builder):
// nix-store, nix config, id, uname, ls, df and a daemon check where there is a daemon.
import { shellQuote } from '../io/exec.js';

/** Usual places of nix-store when it is not on the non-interactive PATH. */
export const NIX_STORE_CANDIDATES = [
  '/nix/var/nix/profiles/default/bin/nix-store',
  '/run/current-system/sw/bin/nix-store',
  '$HOME/.nix-profile/bin/nix-store',
  '/etc/profiles/per-user/$USER/bin/nix-store',
  '/usr/local/bin/nix-store',
  '/opt/homebrew/bin/nix-store',
];

/** The nix.conf settings that decide whether and where a build sent to the builder runs. */
export const PROBED_SETTINGS = [
  'system',
  'extra-platforms',
  'system-features',
  'trusted-users',
  'trusted-public-keys',
  'allowed-users',
  'max-jobs',
  'sandbox',
  'build-dir',
] as const;

/** A path in the store nobody has: asking the daemon about it proves that the daemon answers. */
const NO_SUCH_PATH = '/nix/store/00000000000000000000000000000000-nixremote-daemon-check';

/** The probe's first line: where what the shell printed ends. */
export const PROBE_BEGIN = 'NIXREMOTE:begin';

export const PROBE_SCRIPT = `
echo "${PROBE_BEGIN}"
nl='
'
p=$(command -v nix-store 2>/dev/null)
# The last line of --version: warnings about nix.conf come before it.
if [ -n "$p" ] && ! v=$("$p" --version 2>&1); then echo "NIXREMOTE:broken=$p: \${v##*"$nl"}"; p=; v=; fi
echo "NIXREMOTE:path=$p"
if [ -z "$p" ]; then
  for c in ${NIX_STORE_CANDIDATES.map((c) => `"${c}"`).join(' ')}; do
    if [ -x "$c" ]; then echo "NIXREMOTE:found=$c"; p=$c; break; fi
  done
fi
mm=0
bd=
if [ -n "$p" ]; then
  [ -n "$v" ] || v=$("$p" --version 2>&1)
  v=\${v##*"$nl"}
  echo "NIXREMOTE:version=$v"
  # 2.20 and later: nix config show; before: nix show-config (without the flag before 2.4).
  # The likely one first, so that a builder runs one nix, not a failing one and then another.
  for w in $v; do
    case $w in [0-9]*.[0-9]*) r=\${w#*.}; mm=$(( \${w%%.*} * 1000 + \${r%%[!0-9]*} )); break ;; esac
  done
  d=\${p%/*}
  if [ -x "$d/nix" ]; then
    x="--extra-experimental-features nix-command"
    if [ "$mm" -ge 2020 ]; then
      conf=$("$d/nix" $x config show 2>/dev/null || "$d/nix" $x show-config 2>/dev/null)
    else
      conf=$("$d/nix" $x show-config 2>/dev/null || "$d/nix" show-config 2>/dev/null)
    fi
    # Read in this shell, no awk: each process started here is one more on a busy builder.
    while IFS= read -r line; do
      case $line in
        ${PROBED_SETTINGS.map((s) => `"${s} = "*`).join(' | ')}) echo "NIXREMOTE:\${line%% = *}=\${line#* = }" ;;
      esac
      case $line in "build-dir = "*) bd=\${line#* = } ;; esac
    done <<NIXREMOTE_CONF
$conf
NIXREMOTE_CONF
  fi
fi
echo "NIXREMOTE:daemon-path=$(command -v nix-daemon 2>/dev/null)"
echo "NIXREMOTE:uname=$(uname -sm)"
echo "NIXREMOTE:shell=$SHELL"
echo "NIXREMOTE:home=$HOME"
# sshd sets USER from the account it logged in (session.c); id only where it did not.
echo "NIXREMOTE:user=\${USER:-$(id -un)}"
echo "NIXREMOTE:groups=$(id -Gn)"
if [ -w /nix/store ]; then echo "NIXREMOTE:store-writable=1"; fi
if [ -S /nix/var/nix/daemon-socket/socket ]; then
  echo "NIXREMOTE:daemon-socket=1"
  # A multi-user store: does a daemon answer on the socket, and does it let this user in?
  if [ -n "$p" ] && [ ! -w /nix/store ]; then
    if a=$("$p" --store daemon --check-validity --print-invalid ${NO_SUCH_PATH} 2>&1); then echo "NIXREMOTE:daemon=ok"
    else echo "NIXREMOTE:daemon-error=$(printf '%s' "$a" | tr '\\n' ' ')"; fi
  fi
fi
if [ -r /proc/loadavg ]; then read l1 rest < /proc/loadavg; echo "NIXREMOTE:load=$l1"; fi
echo "NIXREMOTE:cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null)"
if [ -e /dev/kvm ]; then echo "NIXREMOTE:kvm=1"; fi
# Where builds write: build-dir (a setting from Nix 2.22, Lix 2.91), by default TMPDIR (else
# /tmp), from Nix 2.30 /nix/var/nix/builds, from Lix 2.94 /nix/var/nix/b.
case $v in
  *Lix*) if [ "$mm" -ge 2094 ]; then bd=\${bd:-/nix/var/nix/b}; fi ;;
  *) if [ "$mm" -ge 2030 ]; then bd=\${bd:-/nix/var/nix/builds}; fi ;;
esac
bd=\${bd:-\${TMPDIR:-/tmp}}
[ -d "$bd" ] || bd=\${bd%/*}
echo "NIXREMOTE:build-dir-used=$bd"
# GNU df tells space and inodes in one run; BSD's (macOS) in two.
if s=$(df -k --output=size,avail,iavail,itotal,target /nix/store /nix/var/nix "$bd" 2>/dev/null); then
  while IFS= read -r l; do echo "NIXREMOTE:dfo=$l"; done <<NIXREMOTE_DF
$s
NIXREMOTE_DF
else
  df -Pk /nix/store /nix/var/nix "$bd" 2>/dev/null | while IFS= read -r l; do echo "NIXREMOTE:df=$l"; done
  df -Pi /nix/store /nix/var/nix "$bd" 2>/dev/null | while IFS= read -r l; do echo "NIXREMOTE:dfi=$l"; done
fi
# sshd's StrictModes judges these: owner and mode of each.
ls -ldn "$HOME" "$HOME/.ssh" "$HOME/.ssh/authorized_keys" 2>/dev/null | while IFS= read -r l; do echo "NIXREMOTE:ls=$l"; done
# The lines of authorized_keys that hold this machine's key ($1, its base64), for their options.
if [ -n "$1" ] && [ -r "$HOME/.ssh/authorized_keys" ]; then
  while IFS= read -r l; do case $l in *"$1"*) echo "NIXREMOTE:keyline=$l" ;; esac; done < "$HOME/.ssh/authorized_keys"
fi
echo "NIXREMOTE:end"
`;

/** The probe as one command for ssh: `sh -c SCRIPT sh KEYBLOB`. */
export function probeCommand(keyBlob: string | null): string {
  return `sh -c ${shellQuote(PROBE_SCRIPT)} sh${keyBlob ? ` ${shellQuote(keyBlob)}` : ''}`;
}

/** One filesystem as df saw it, for one of the places Nix writes. */
export interface Space {
  /** What Nix keeps there. */
  role: 'store' | 'state' | 'build';
  path: string;
  mount: string;
  availKb: number;
  sizeKb: number;
  /** Null where df -i does not say (BSD df has other columns). */
  inodesFree: number | null;
  inodes: number | null;
}

export interface FileMode {
  path: string;
  mode: string;
  uid: number;
}

export interface ProbeResult {
  /** The probe's first line came back: the command sent is what ran. */
  began: boolean;
  /** Its last line came back: it ran to the end. */
  ended: boolean;
  nixStorePath: string | null; // on the non-interactive PATH
  nixStoreFound: string | null; // elsewhere, when not on PATH
  /** On the PATH but failing to run: the path and what it said. */
  nixStoreBroken: string | null;
  nixStoreVersion: string | null;
  /** nix-daemon on the non-interactive PATH, what ssh-ng:// runs there. */
  nixDaemonPath: string | null;
  system: string | null;
  extraPlatforms: string[];
  systemFeatures: string[] | null;
  /** The builder's nix.conf settings as its Nix reads them (null: not readable). */
  settings: Map<string, string> | null;
  uname: string | null;
  cores: number | null;
  /** The 1-minute load average, where /proc/loadavg says it. */
  load: number | null;
  kvm: boolean;
  shell: string | null;
  home: string | null;
  user: string | null;
  groups: string[];
  /** null when the builder's nix could not tell. */
  trustedUsers: string[] | null;
  /** The keys the builder's Nix takes signed paths by (its nix.conf, as the ssh user reads it). */
  trustedPublicKeys: string[];
  storeWritable: boolean;
  daemonSocket: boolean;
  /** Whether a daemon answered on the socket ('ok'), what it said instead, or null: not asked. */
  daemon: { ok: true } | { ok: false; said: string } | null;
  space: Space[];
  sshFiles: FileMode[];
  /** The lines of authorized_keys holding this machine's key, whole (options first). */
  keyLines: string[];
}

function dfRows(lines: string[]): { mount: string; total: number; free: number }[] {
  // Skip the header; the mount point is the last field, the numbers 2nd and 4th.
  return lines.slice(1).map((l) => {
    const f = l.trim().split(/\s+/);
    return { mount: f[f.length - 1] ?? '', total: Number(f[1]), free: Number(f[3]) };
  });
}

/** GNU df --output=size,avail,iavail,itotal,target rows: blocks (at 1) or inodes (at 2). */
function gnuRows(lines: string[], at: 1 | 2): { mount: string; total: number; free: number }[] {
  return lines.slice(1).map((l) => {
    const f = l.trim().split(/\s+/);
    const mount = f.slice(4).join(' ');
    return at === 1
      ? { mount, total: Number(f[0]), free: Number(f[1]) }
      : { mount, total: Number(f[3]), free: Number(f[2]) };
  });
}

export function parseProbe(out: string): ProbeResult {
  const kv = new Map<string, string>();
  const many = new Map<string, string[]>();
  let began = false;
  let ended = false;
  for (const raw of out.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const m = /^NIXREMOTE:([a-z-]+)(?:=(.*))?$/.exec(line.trim());
    if (!m) continue;
    const [, k, v = ''] = m;
    if (k === 'begin') began = true;
    else if (k === 'end') ended = true;
    else if (k === 'df' || k === 'dfi' || k === 'dfo' || k === 'ls' || k === 'keyline')
      many.set(k, [...(many.get(k) ?? []), v]);
    else kv.set(k!, v.trim());
  }
  const words = (k: string) => (kv.get(k) ?? '').split(/\s+/).filter(Boolean);
  const cores = Number(kv.get('cores'));
  const settings = new Map<string, string>();
  for (const s of PROBED_SETTINGS) if (kv.has(s)) settings.set(s, kv.get(s)!);
  const buildDir = kv.get('build-dir-used') ?? '/tmp';
  const dfo = many.get('dfo');
  const df = dfo ? gnuRows(dfo, 1) : dfRows(many.get('df') ?? []);
  const dfi = dfo ? gnuRows(dfo, 2) : dfRows(many.get('dfi') ?? []);
  const roles: [Space['role'], string][] = [
    ['store', '/nix/store'],
    ['state', '/nix/var/nix'],
    ['build', buildDir],
  ];
  const space: Space[] = [];
  roles.forEach(([role, p], i) => {
    const d = df[i];
    if (!d || !Number.isFinite(d.free) || !Number.isFinite(d.total)) return;
    const n = dfi[i];
    const inodesOk = n && Number.isFinite(n.free) && Number.isFinite(n.total) && n.mount === d.mount;
    space.push({
      role,
      path: p,
      mount: d.mount,
      availKb: d.free,
      sizeKb: d.total,
      inodesFree: inodesOk ? n.free : null,
      inodes: inodesOk ? n.total : null,
    });
  });
  const sshFiles: FileMode[] = [];
  for (const l of many.get('ls') ?? []) {
    // "drwx------ 2 1000 1000 4096 Dec  1 19:51 /home/nix/.ssh": mode, links, uid, ..., path.
    const f = /^(\S+)\s+\d+\s+(\d+)\s+\d+\s+\d+\s+\S+\s+\S+\s+\S+\s+(.*)$/.exec(l.trim());
    if (f) sshFiles.push({ mode: f[1]!, uid: Number(f[2]), path: f[3]! });
  }
  const daemonError = kv.get('daemon-error');
  return {
    began,
    ended,
    nixStorePath: kv.get('path') || null,
    nixStoreFound: kv.get('found') || null,
    nixStoreBroken: kv.get('broken') || null,
    nixStoreVersion: kv.get('version') || null,
    nixDaemonPath: kv.get('daemon-path') || null,
    system: kv.get('system') || null,
    extraPlatforms: words('extra-platforms'),
    systemFeatures: kv.has('system-features') ? words('system-features') : null,
    settings: settings.size ? settings : null,
    uname: kv.get('uname') || null,
    cores: Number.isInteger(cores) && cores > 0 ? cores : null,
    load: kv.get('load') && Number.isFinite(Number(kv.get('load'))) ? Number(kv.get('load')) : null,
    kvm: kv.get('kvm') === '1',
    shell: kv.get('shell') || null,
    home: kv.get('home') || null,
    user: kv.get('user') || null,
    groups: words('groups'),
    trustedUsers: kv.has('trusted-users') ? words('trusted-users') : null,
    trustedPublicKeys: words('trusted-public-keys'),
    storeWritable: kv.get('store-writable') === '1',
    daemonSocket: kv.get('daemon-socket') === '1',
    daemon:
      kv.get('daemon') === 'ok' ? { ok: true } : daemonError !== undefined ? { ok: false, said: daemonError } : null,
    space,
    sshFiles,
    keyLines: many.get('keyline') ?? [],
  };
}

/** Nix system name from `uname -sm`, for a builder whose nix cannot tell us. */
export function systemFromUname(uname: string | null): string | null {
  if (!uname) return null;
  const [os, machine] = uname.split(/\s+/);
  const arch = machine === 'arm64' ? 'aarch64' : machine;
  if (os === 'Linux') return `${arch}-linux`;
  if (os === 'Darwin') return `${arch}-darwin`;
  return null;
}

/** What the shell printed before the probe's first line: noise that corrupts Nix's protocol. */
export function shellNoise(stdout: string): string {
  const at = stdout.indexOf(PROBE_BEGIN);
  return at < 0 ? stdout : stdout.slice(0, at);
}
