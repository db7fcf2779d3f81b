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
