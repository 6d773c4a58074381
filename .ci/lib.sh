# Shared by the .ci scripts that use the trixie root (sourced, not run).
#
# CACHE: outside the clone so that CI runs on this machine reuse it (a fresh clone each run).
# ROOT:  the trixie root made by .ci/trixie-root.sh.
# REPO:  this clone.
CACHE=${WSCHAT_CI_CACHE:-/var/cache/wschat-ci}
ROOT=${WSCHAT_CI_ROOT:-$CACHE/trixie}
REPO=$(pwd)
# Where the clone appears inside the root (a bind mount; builds write only to target dirs under
# /build, which live in the cached root so incremental builds survive between runs).
SRC_IN_ROOT=/src

_WSCHAT_MOUNTS=()

_wschat_umount_all() {
  local i
  for ((i = ${#_WSCHAT_MOUNTS[@]} - 1; i >= 0; i--)); do
    umount -R "${_WSCHAT_MOUNTS[$i]}" 2>/dev/null || umount -R -l "${_WSCHAT_MOUNTS[$i]}" 2>/dev/null || true
  done
  _WSCHAT_MOUNTS=()
}

# Unmounts everything mounted below a root folder (left by a killed run), then checks that
# nothing is: `rm -rf` of a root with /dev or the clone still bound inside would delete them.
unmount_below() {
  local dir m
  dir=$(realpath -m "$1")
  for m in $(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -R "$m" 2>/dev/null || umount -R -l "$m"
  done
  if awk -v d="$dir/" 'index($2, d) == 1 {found = 1} END {exit !found}' /proc/self/mounts; then
    echo "still mounted below $dir; not touching it" >&2
    return 1
  fi
}

# Mounts /proc, /dev, /dev/pts and the clone (at /src) into the root unless already mounted;
# they are all unmounted on exit (trap), even when a step fails.
root_mounts() {
  trap _wschat_umount_all EXIT
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  # debootstrap leaves no /etc/hosts; tests and `bench --url ws://localhost:...` resolve it.
  if ! grep -qs localhost "$ROOT/etc/hosts"; then
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
  fi
  mkdir -p "$ROOT/proc" "$ROOT/dev" "$ROOT$SRC_IN_ROOT"
  if ! mountpoint -q "$ROOT/proc"; then
    mount -t proc proc "$ROOT/proc"
    _WSCHAT_MOUNTS+=("$ROOT/proc")
  fi
  if ! mountpoint -q "$ROOT/dev"; then
    mount --rbind /dev "$ROOT/dev"
    mount --make-rslave "$ROOT/dev"
    _WSCHAT_MOUNTS+=("$ROOT/dev")
  fi
  if [ -d "$REPO/.ci" ] && ! mountpoint -q "$ROOT$SRC_IN_ROOT"; then
    # Read-only: builds inside write only under /build; the clone is never changed from there.
    mount --bind "$REPO" "$ROOT$SRC_IN_ROOT"
    _WSCHAT_MOUNTS+=("$ROOT$SRC_IN_ROOT")
    mount -o remount,bind,ro "$ROOT$SRC_IN_ROOT"
  fi
}

# Runs a command inside the root, as root, with a clean environment plus what is passed as
# NAME=VALUE before the command (e.g. in_root env FOO=1 cargo build). Call root_mounts first in
# the script's own shell: a mount made from inside $(in_root ...) would outlive that subshell.
in_root() {
  if ! mountpoint -q "$ROOT/proc"; then
    root_mounts
  fi
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TERM=dumb CARGO_HOME=/build/cargo-home "$@"
}

# Seconds since the script started, for the per-step timings CI prints.
step_time() {
  echo "-- $1: $(($(date +%s) - ${2:-$_WSCHAT_T0})) s"
}
_WSCHAT_T0=$(date +%s)

# Crates for builds inside the root: `cargo vendor` on the host (its cargo reaches crates.io
# and already holds most of them in ~/.cargo/registry) into the root's /build/vendor, and a
# source replacement so cargo inside builds offline from exactly Cargo.lock. Chosen over
# copying the CA bundle in so that the root's cargo never needs the network: the MSRV and cross
# builds use the very crate versions the host build locked, and a run with the vendor dir
# cached downloads nothing. Redone only when Cargo.lock changes.
vendor_crates() {
  local want have
  want=$(sha256sum "$REPO/Cargo.lock" | cut -c1-16)
  have=$(cat "$ROOT/build/vendor/.wschat-lock" 2>/dev/null || true)
  mkdir -p "$ROOT/build/cargo-home"
  if [ "$want" != "$have" ]; then
    rm -rf "$ROOT/build/vendor"
    (cd "$REPO" && cargo vendor --locked --quiet "$ROOT/build/vendor" >/dev/null)
    echo "$want" >"$ROOT/build/vendor/.wschat-lock"
  fi
  cat >"$ROOT/build/cargo-home/config.toml" <<'TOML'
[source.crates-io]
replace-with = "vendored"

[source.vendored]
directory = "/build/vendor"

[net]
offline = true
TOML
}
