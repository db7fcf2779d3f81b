#!/usr/bin/env bash
# Debian trees with other Nix and OpenSSH versions, for the end-to-end version matrix
# (../shared/TESTING.md): trixie (Nix 2.26, OpenSSH 10.0) and sid (Nix 2.34, OpenSSH 10.6).
# Made once with debootstrap and kept under $NIXREMOTE_TREES (default /srv/nixremote-trees);
# a tree that finished has a .ready file and is not made again.
set -euo pipefail
ROOT=${NIXREMOTE_TREES:-/srv/nixremote-trees}
MIRROR=${NIXREMOTE_MIRROR:-http://deb.debian.org/debian}
SUITES=${*:-trixie sid}
export DEBIAN_FRONTEND=noninteractive
command -v debootstrap >/dev/null || apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
mkdir -p "$ROOT"

# What a tree holds: Nix and OpenSSH of that release, Node.js to run nixremote as a client, and
# sudo for a builder user allowed to change the builder's own nix.conf (init --builder-sudo).
PACKAGES="libdbi-perl nix-bin openssh-server openssh-client procps passwd util-linux nodejs sudo"

make_tree() {
  local suite=$1 dir=$ROOT/$1
  if [ -e "$dir/.ready" ] && grep -qxF "packages: $PACKAGES" "$dir/.ready"; then echo "tree $suite: ready ($(head -n 1 "$dir/.ready"))"; return 0; fi
  if [ ! -e "$dir/.base" ]; then
    echo "tree $suite: making it in $dir"
    rm -rf "$dir"
    debootstrap --variant=minbase "$suite" "$dir" "$MIRROR" >"$ROOT/$suite.log" 2>&1 || { tail -20 "$ROOT/$suite.log"; return 1; }
    touch "$dir/.base"
  fi
  # The tree's own /dev and /proc while apt runs in it; unmounted whatever happens.
  mount --rbind /dev "$dir/dev" && mount --make-rslave "$dir/dev"
  mount -t proc proc "$dir/proc"
  trap 'umount -R "$dir/dev" 2>/dev/null || true; umount "$dir/proc" 2>/dev/null || true' RETURN
  cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
  # sid's Release file on the mirror may be past its validity date.
  chroot "$dir" apt-get -o Acquire::Check-Valid-Until=false update -qq >>"$ROOT/$suite.log" 2>&1
  # bookworm's debootstrap leaves nix-bin's dependencies unresolved (perl-dbdabi-94); -f finishes it.
  chroot "$dir" apt-get install -y -qq -f >>"$ROOT/$suite.log" 2>&1
  # shellcheck disable=SC2086
  chroot "$dir" apt-get install -y -qq --no-install-recommends $PACKAGES >>"$ROOT/$suite.log" 2>&1 ||
    { tail -20 "$ROOT/$suite.log"; return 1; }
  mkdir -p "$dir/etc/nix" "$dir/nix" "$dir/run/sshd"
  printf 'substituters =\n' > "$dir/etc/nix/nix.conf"
  local versions
  versions="$(chroot "$dir" nix-store --version | head -n 1); $(chroot "$dir" ssh -V 2>&1 | head -n 1); node $(chroot "$dir" node --version)"
  printf '%s\npackages: %s\n' "$versions" "$PACKAGES" > "$dir/.ready"
  echo "tree $suite: $versions"
}

for s in $SUITES; do make_tree "$s"; done
