// Shell run on the builder to change authorized_keys (the probe that reads the builder is
// src/path/probe.ts). Everything is POSIX sh and is started as `sh -c '...'` so a
// builder whose login shell is not sh-like still runs it; data (the public key) goes on
// standard input, never inside the command string. Lines meant for nixremote start with
// NIXREMOTE: so that anything a startup file prints cannot be mistaken for an answer.
import { shellQuote } from '../io/exec.js';

export const asShCommand = (script: string) => `sh -c ${shellQuote(script)}`;

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
 * Make the key read from stdin stand in ~/.ssh/authorized_keys as exactly that line, its
 * options included (a forced command, say): appended when no line holds it; replaced,
 * where the first such line stood, when lines hold it with other options (the rest of the
 * file, comments included, kept); untouched when it is already so. By rename, as the removal.
 */
export const SET_KEY_SCRIPT = `${READ_KEY}${LOCK_KEY_FILE}
n=$(awk -v b="$blob" "$COUNT_KEY" "$f")
if [ "$n" = 0 ]; then
  if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then printf '\\n' >&9; fi
  printf '%s\\n' "$line" >&9 || exit 1
  echo "NIXREMOTE:added"; exit 0
fi
if [ "$n" = 1 ] && grep -qxF -- "$line" "$f"; then echo "NIXREMOTE:present"; exit 0; fi
t="$f.nixremote-$$"
L="$line" awk -v b="$blob" '/^[ \t]*#/ { print; next } { for (i = 1; i <= NF; i++) if ($i == b) { if (!done) print ENVIRON["L"]; done = 1; next } } { print }' "$f" > "$t" && chmod 600 "$t" && mv -f "$t" "$f" || { rm -f "$t"; exit 1; }
echo "NIXREMOTE:replaced=$n"
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

/** The markers of the block nixremote keeps in a builder's nix.conf (signed access). */
export const TRUSTED_KEYS_BEGIN = '# BEGIN nixremote trusted keys (managed by nixremote; edits inside are replaced)';
export const TRUSTED_KEYS_END = '# END nixremote trusted keys';

/**
 * Run as root on the builder (sudo), with a public key as $1 and "add" or "remove" as $2:
 * the key in, or out of, a nixremote block of extra-trusted-public-keys at the end of the
 * nix.conf its nix-daemon reads (Determinate's nix.custom.conf where nix.conf includes it),
 * a backup beside the file before it changes, written by rename; then the daemon restarted
 * where systemd or launchd runs it. A NixOS or nix-darwin builder's nix.conf is generated:
 * it is left alone and said so. Answers: NIXREMOTE:declarative, present=FILE, added=FILE,
 * absent=FILE, removed=FILE, backup=FILE, restarted=HOW or restart=unknown.
 */
export const BUILDER_TRUST_SCRIPT = `set -u
key=$1 what=$2 conf=/etc/nix/nix.conf
b='${TRUSTED_KEYS_BEGIN}'
e='${TRUSTED_KEYS_END}'
if [ -e /etc/NIXOS ] || [ -d /run/current-system/sw ]; then echo "NIXREMOTE:declarative"; exit 0; fi
if [ -L "$conf" ]; then case "$(readlink -f "$conf")" in /nix/store/*|/etc/static/*) echo "NIXREMOTE:declarative"; exit 0;; esac; fi
if [ -f /etc/nix/nix.custom.conf ] && grep -q 'nix.custom.conf' "$conf" 2>/dev/null; then conf=/etc/nix/nix.custom.conf; fi
mkdir -p "$(dirname "$conf")"
[ -f "$conf" ] || : > "$conf"
keys=$(awk -v b="$b" -v e="$e" '$0 == b { i = 1; next } $0 == e { i = 0; next } i && sub(/^extra-trusted-public-keys = /, "") { print }' "$conf" | tr ' ' '\\n' | grep -v '^$' || true)
has=no
for k in $keys; do [ "$k" = "$key" ] && has=yes; done
if [ "$what" = add ] && [ $has = yes ]; then echo "NIXREMOTE:present=$conf"; exit 0; fi
if [ "$what" = remove ] && [ $has = no ]; then echo "NIXREMOTE:absent=$conf"; exit 0; fi
keep=
for k in $keys; do [ "$k" = "$key" ] || keep="$keep $k"; done
[ "$what" = add ] && keep="$keep $key"
t="$conf.nixremote-$$"
{
  awk -v b="$b" -v e="$e" '$0 == b { i = 1; next } $0 == e { i = 0; next } !i' "$conf"
  if [ -n "$keep" ]; then printf '%s\\nextra-trusted-public-keys =%s\\n%s\\n' "$b" "$keep" "$e"; fi
} > "$t" || { rm -f "$t"; exit 1; }
bak="$conf.nixremote-$(date +%Y%m%dT%H%M%S)-$$.bak"
cp -p "$conf" "$bak" && echo "NIXREMOTE:backup=$bak"
chmod 644 "$t" && mv -f "$t" "$conf" || { rm -f "$t"; exit 1; }
if [ "$what" = add ]; then echo "NIXREMOTE:added=$conf"; else echo "NIXREMOTE:removed=$conf"; fi
# The daemon reads nix.conf at start only.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nix-daemon 2>/dev/null; then
  systemctl restart nix-daemon && echo "NIXREMOTE:restarted=systemctl restart nix-daemon"
elif [ "$(uname)" = Darwin ]; then
  launchctl kickstart -k system/org.nixos.nix-daemon && echo "NIXREMOTE:restarted=launchctl kickstart -k system/org.nixos.nix-daemon"
else
  echo "NIXREMOTE:restart=unknown"
fi
`;

/** A command that runs BUILDER_TRUST_SCRIPT as root through sudo, the password on stdin (-S), no prompt text. */
export function sudoTrustCommand(key: string, what: 'add' | 'remove'): string {
  return `sudo -S -p '' sh -c ${shellQuote(BUILDER_TRUST_SCRIPT)} sh ${shellQuote(key)} ${what}`;
}
