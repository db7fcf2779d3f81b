// Shell run on the builder. Everything is POSIX sh and is started as `sh -c '...'` so a
// builder whose login shell is not sh-like still runs it; data (the public key) goes on
// standard input, never inside the command string. Lines meant for nixremote start with
// NIXREMOTE: so that anything a startup file prints cannot be mistaken for an answer.
import { shellQuote } from '../io/exec.js';

export const asShCommand = (script: string) => `sh -c ${shellQuote(script)}`;

/** Usual places of nix-store when it is not on the non-interactive PATH. */
export const NIX_STORE_CANDIDATES = [
  '/nix/var/nix/profiles/default/bin/nix-store',
  '/run/current-system/sw/bin/nix-store',
  '$HOME/.nix-profile/bin/nix-store',
  '/etc/profiles/per-user/$USER/bin/nix-store',
  '/usr/local/bin/nix-store',
  '/opt/homebrew/bin/nix-store',
];

export const PROBE_SCRIPT = `
nl='
'
p=$(command -v nix-store 2>/dev/null)
if [ -n "$p" ] && ! v=$("$p" --version 2>&1); then echo "NIXREMOTE:broken=$p: \${v%%"$nl"*}"; p=; v=; fi
echo "NIXREMOTE:path=$p"
if [ -z "$p" ]; then
  for c in ${NIX_STORE_CANDIDATES.map((c) => `"${c}"`).join(' ')}; do
    if [ -x "$c" ]; then echo "NIXREMOTE:found=$c"; p=$c; break; fi
  done
fi
if [ -n "$p" ]; then
  [ -n "$v" ] || v=$("$p" --version 2>&1)
  v=\${v%%"$nl"*}
  echo "NIXREMOTE:version=$v"
  # 2.20 and later: nix config show; before: nix show-config (without the flag before 2.4).
  # The likely one first, so that a builder runs one nix, not a failing one and then another.
  mm=0
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
        "system = "* | "extra-platforms = "* | "system-features = "* | "trusted-users = "*) echo "NIXREMOTE:\${line%% = *}=\${line#* = }" ;;
      esac
    done <<NIXREMOTE_CONF
$conf
NIXREMOTE_CONF
  fi
fi
echo "NIXREMOTE:daemon-path=$(command -v nix-daemon 2>/dev/null)"
echo "NIXREMOTE:uname=$(uname -sm)"
echo "NIXREMOTE:shell=$SHELL"
echo "NIXREMOTE:user=$(id -un)"
echo "NIXREMOTE:groups=$(id -Gn)"
if [ -w /nix/store ]; then echo "NIXREMOTE:store-writable=1"; fi
if [ -S /nix/var/nix/daemon-socket/socket ]; then echo "NIXREMOTE:daemon-socket=1"; fi
echo "NIXREMOTE:cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null)"
if [ -e /dev/kvm ]; then echo "NIXREMOTE:kvm=1"; fi
`;

export interface ProbeResult {
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
  uname: string | null;
  cores: number | null;
  kvm: boolean;
  shell: string | null;
  user: string | null;
  groups: string[];
  /** null when the builder's nix could not tell. */
  trustedUsers: string[] | null;
  storeWritable: boolean;
  daemonSocket: boolean;
}

export function parseProbe(out: string): ProbeResult {
  const kv = new Map<string, string>();
  for (const line of out.split('\n')) {
    const m = /^NIXREMOTE:([a-z-]+)=(.*)$/.exec(line.trim());
    if (m) kv.set(m[1]!, m[2]!.trim());
  }
  const words = (k: string) => (kv.get(k) ?? '').split(/\s+/).filter(Boolean);
  const cores = Number(kv.get('cores'));
  return {
    nixStorePath: kv.get('path') || null,
    nixStoreFound: kv.get('found') || null,
    nixStoreBroken: kv.get('broken') || null,
    nixStoreVersion: kv.get('version') || null,
    nixDaemonPath: kv.get('daemon-path') || null,
    system: kv.get('system') || null,
    extraPlatforms: words('extra-platforms'),
    systemFeatures: kv.has('system-features') ? words('system-features') : null,
    uname: kv.get('uname') || null,
    cores: Number.isInteger(cores) && cores > 0 ? cores : null,
    kvm: kv.get('kvm') === '1',
    shell: kv.get('shell') || null,
    user: kv.get('user') || null,
    groups: words('groups'),
    trustedUsers: kv.has('trusted-users') ? words('trusted-users') : null,
    storeWritable: kv.get('store-writable') === '1',
    daemonSocket: kv.get('daemon-socket') === '1',
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

/**
 * The start both authorized_keys scripts share: the key line from stdin, its base64 blob,
 * an awk program counting the lines that hold that blob as a field (comments skipped),
 * and the file open on fd 9 under flock (where the builder has flock). The removal
 * replaces the file by rename, so a run that waited for the lock checks that fd 9 is still
 * the file at that path (-ef: same device and inode) and opens it again if not.
 */
const READ_KEY = `
umask 077
IFS= read -r line || [ -n "$line" ] || { echo "no key on stdin" >&2; exit 2; }
blob=$(printf '%s\\n' "$line" | awk '{ for (i = 1; i < NF; i++) if ($i ~ /^(ssh-|ecdsa-|sk-)/) { print $(i + 1); exit } }')
[ -n "$blob" ] || { echo "not a public key" >&2; exit 2; }
f="$HOME/.ssh/authorized_keys"
COUNT_KEY='/^[ \t]*#/ { next } { for (i = 1; i <= NF; i++) if ($i == b) { c++; next } } END { print c + 0 }'
`;
const LOCK_KEY_FILE = `
mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh" || exit 1
if [ ! -e "$f" ]; then : > "$f" && chmod 600 "$f" || exit 1; fi
while :; do
  exec 9>>"$f"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  [ "$f" -ef /dev/fd/9 ] && break
done
`;

/** Append the key read from stdin to ~/.ssh/authorized_keys unless a line already holds it. */
export const APPEND_KEY_SCRIPT = `${READ_KEY}${LOCK_KEY_FILE}
if [ "$(awk -v b="$blob" "$COUNT_KEY" "$f")" != 0 ]; then echo "NIXREMOTE:present"; exit 0; fi
if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then printf '\\n' >&9; fi
printf '%s\\n' "$line" >&9 || exit 1
echo "NIXREMOTE:added"
`;

/**
 * Remove the lines of ~/.ssh/authorized_keys that authorize the key read from stdin (its
 * blob as a field of the line; comments are kept), and nothing else: the rest is copied to a file beside it,
 * which is renamed over it, so the file is whole at every moment.
 */
export const REMOVE_KEY_SCRIPT = `${READ_KEY}
[ -e "$f" ] || { echo "NIXREMOTE:absent"; exit 0; }${LOCK_KEY_FILE}
n=$(awk -v b="$blob" "$COUNT_KEY" "$f")
if [ "$n" = 0 ]; then echo "NIXREMOTE:absent"; exit 0; fi
t="$f.nixremote-$$"
awk -v b="$blob" '/^[ \t]*#/ { print; next } { for (i = 1; i <= NF; i++) if ($i == b) next; print }' "$f" > "$t" && chmod 600 "$t" && mv -f "$t" "$f" || { rm -f "$t"; exit 1; }
echo "NIXREMOTE:removed=$n"
`;
