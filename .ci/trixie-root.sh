#!/usr/bin/env bash
# A Debian trixie root (debootstrap minbase) with Debian's own Rust (1.85, what `apt install
# cargo` gives on Raspberry Pi OS), the arm64/armhf standard libraries, the cross linkers,
# qemu-user, systemd (for `systemd-analyze verify`) and dpkg-dev tools, for .ci/msrv.sh,
# .ci/cross.sh and .ci/deb.sh.
#
# Cached outside the clone so CI runs on the same machine reuse it: $WSCHAT_CI_CACHE/trixie
# (default /var/cache/wschat-ci/trixie). It is rebuilt when missing or when the stamp (a hash
# of this file's package list, suite and mirror) changes. Built in a temporary folder and moved
# into place only when complete, so a killed run never leaves a half root that looks cached.
#
# Cost measured on this machine (2 cores, shared): a fresh root 147-197 s (debootstrap 39-115 s,
# apt 82-108 s, network-bound); a changed package list 31 s; a cached root < 1 s.
#
# Usage: .ci/trixie-root.sh            (prints the root's path on its last line)
# Source .ci/lib.sh for `in_root` to run commands inside it with /proc, /dev mounted.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

SUITE=trixie
# What the CI steps need inside the root, one place. ca-certificates: apt over https mirrors and
# anything a test fetches from a loopback TLS server; systemd: systemd-analyze verify; curl:
# the /healthz check of the installed package; procps: /bin/kill, which tests run to signal
# the server (SIGHUP for tokens, SIGKILL for history); passwd: useradd in the package postinst.
PACKAGES="procps passwd rustc cargo gcc libc6-dev libstd-rust-dev:arm64 libstd-rust-dev:armhf \
gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user libc6:arm64 libc6:armhf \
ca-certificates systemd curl binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf"

# The Debian mirror this machine's apt already uses (the reachable one), else deb.debian.org.
MIRROR=$(grep -rhoE '(URIs:|deb)[[:space:]]+https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | awk '{print $2}' | head -n1 || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MIRROR=${MIRROR%/}

BASE_STAMP=$(printf '%s\n' "v1" "$SUITE" "$MIRROR" | sha256sum | cut -c1-16)
STAMP=$(printf '%s\n' "$BASE_STAMP" "$PACKAGES" | sha256sum | cut -c1-16)

t0=$(date +%s)
if [ -f "$ROOT/.wschat-ci-stamp" ] && [ "$(cat "$ROOT/.wschat-ci-stamp")" = "$STAMP" ]; then
  echo "trixie root: cached at $ROOT (stamp $STAMP)"
  echo "$ROOT"
  exit 0
fi
# Same suite and mirror, another package list: install into the cached root (seconds, not
# minutes). A package dropped from the list stays until the root is rebuilt (rm -rf it).
if [ -f "$ROOT/.wschat-ci-base" ] && [ "$(cat "$ROOT/.wschat-ci-base")" = "$BASE_STAMP" ]; then
  echo "trixie root: package list changed; installing into the cached root"
  in_root sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PACKAGES \
    && apt-get clean" >"$CACHE/apt.log" 2>&1 || { tail -n 30 "$CACHE/apt.log" >&2; exit 1; }
  _wschat_umount_all
  echo "$STAMP" >"$ROOT/.wschat-ci-stamp"
  echo "trixie root: updated in $(($(date +%s) - t0)) s"
  echo "$ROOT"
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  echo "installing debootstrap from Debian"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
fi

mkdir -p "$CACHE"
TMP="$ROOT.tmp"
# A previous run killed mid-build may have left mounts in its temporary root.
[ -d "$TMP" ] && unmount_below "$TMP"
rm -rf "$TMP"

echo "trixie root: debootstrap --variant=minbase $SUITE from $MIRROR"
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$TMP" "$MIRROR" \
  >"$CACHE/debootstrap.log" 2>&1 || { tail -n 30 "$CACHE/debootstrap.log" >&2; exit 1; }
t1=$(date +%s)
echo "trixie root: debootstrap took $((t1 - t0)) s"

cat >"$TMP/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
EOF
# Nothing in the root is a service; keep apt lean.
cat >"$TMP/etc/apt/apt.conf.d/90wschat-ci" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
EOF
# Maintainer scripts must not try to start services inside the root.
printf '#!/bin/sh\nexit 101\n' >"$TMP/usr/sbin/policy-rc.d"
chmod +x "$TMP/usr/sbin/policy-rc.d"

ROOT_SAVED=$ROOT
ROOT=$TMP
in_root sh -c "dpkg --add-architecture arm64 && dpkg --add-architecture armhf \
  && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PACKAGES \
  && apt-get clean" >"$CACHE/apt.log" 2>&1 || { tail -n 30 "$CACHE/apt.log" >&2; exit 1; }
_wschat_umount_all
ROOT=$ROOT_SAVED
t2=$(date +%s)
echo "trixie root: apt-get install took $((t2 - t1)) s"

echo "$STAMP" >"$TMP/.wschat-ci-stamp"
echo "$BASE_STAMP" >"$TMP/.wschat-ci-base"
if [ -d "$ROOT" ]; then
  unmount_below "$ROOT"
  # The build caches (vendored crates, target dirs) outlive a new root: they only speed builds.
  [ -d "$ROOT/build" ] && mv "$ROOT/build" "$TMP/build"
  rm -rf "$ROOT"
fi
unmount_below "$TMP"
mv "$TMP" "$ROOT"
echo "trixie root: ready at $ROOT in $((t2 - t0)) s"
echo "$ROOT"
