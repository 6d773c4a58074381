#!/usr/bin/env bash
# The .deb a Pi owner installs: wschat_VERSION_{amd64,arm64,armhf}.deb in ci-artifacts/, built
# with dpkg-deb (no cargo-deb: it would be one more crate tree to build in CI for what thirty
# lines of shell do) from packaging/: the stripped binary, the systemd unit, /etc/default/wschat
# (a conffile) and the maintainer scripts. Then checks, for each: `dpkg -c` lists exactly the
# intended files; and, for arm64, in the trixie root: `systemd-analyze verify` accepts the unit,
# `apt install ./wschat_*_arm64.deb` works, and the unit's ExecStart, run as the unit would (its
# user, its environment file, its state directory; under qemu-aarch64), serves /healthz.
#
# Needs the binaries: ci-artifacts/wschat-<target> for the two ARM targets (.ci/cross.sh) and
# builds the amd64 one in the root (same rustc 1.85 as the others).
#
# Usage: .ci/deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
OUT=ci-artifacts
mkdir -p "$OUT"
root_mounts
vendor_crates

t=$(date +%s)
in_root env CARGO_TARGET_DIR=/build/target-cross sh -c \
  "cd $SRC_IN_ROOT && cargo build --release --locked --bin wschat && strip -o /build/wschat-x86_64-unknown-linux-gnu /build/target-cross/release/wschat"
cp "$ROOT/build/wschat-x86_64-unknown-linux-gnu" "$OUT/wschat-x86_64-unknown-linux-gnu"
step_time "amd64 release build (root)" "$t"

# The lowest glibc the binary needs, from its versioned symbols (what dpkg-shlibdeps would find).
glibc_needed() {
  in_root sh -c "$1 -T --wide /build/$(basename "$2") | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1"
}

# The files each package must hold, and nothing else (dpkg -c checks it below).
EXPECTED="./etc/default/wschat
./usr/bin/wschat
./usr/lib/systemd/system/wschat.service
./usr/share/doc/wschat/README.md
./usr/share/doc/wschat/copyright"

build_deb() {
  local debarch=$1 target=$2 objdump=$3
  local bin="$OUT/wschat-$target" pkg deb libc
  pkg=$(mktemp -d)
  install -D -m 0755 "$bin" "$pkg/usr/bin/wschat"
  install -D -m 0644 packaging/wschat.service "$pkg/usr/lib/systemd/system/wschat.service"
  install -D -m 0644 packaging/default "$pkg/etc/default/wschat"
  install -D -m 0644 README.md "$pkg/usr/share/doc/wschat/README.md"
  install -D -m 0644 packaging/copyright "$pkg/usr/share/doc/wschat/copyright"
  install -d -m 0755 "$pkg/DEBIAN"
  install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$pkg/DEBIAN/"
  echo /etc/default/wschat >"$pkg/DEBIAN/conffiles"
  libc=$(glibc_needed "$objdump" "$bin")
  cat >"$pkg/DEBIAN/control" <<CONTROL
Package: wschat
Version: $VERSION
Architecture: $debarch
Maintainer: wschat maintainers <wschat@localhost>
Depends: libc6 (>= $libc), passwd
Section: net
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Description: WebSocket chat and broadcast server without an async runtime
 One small binary that serves a chat page, JSON chat with rooms and history,
 a WebSocket relay and echo, /healthz and /metrics. Runs as the wschat
 systemd service; settings in /etc/default/wschat.
CONTROL
  deb="$OUT/wschat_${VERSION}_${debarch}.deb"
  dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
  rm -rf "$pkg"
  # Only the intended files (directories aside), owned by root.
  local listed
  listed=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $NF}' | sort)
  if [ "$listed" != "$EXPECTED" ]; then
    echo "$deb holds other files than intended:" >&2
    diff <(echo "$EXPECTED") <(echo "$listed") >&2 || true
    exit 1
  fi
  if dpkg-deb -c "$deb" | awk '{print $2}' | grep -v '^root/root$'; then
    echo "$deb has files not owned by root" >&2
    exit 1
  fi
  echo "$deb: $(stat -c %s "$deb") bytes, needs libc6 >= $libc; dpkg -c lists only the intended files"
}

# The binaries must be in the root for objdump; the ARM ones were left there by cross.sh.
build_deb amd64 x86_64-unknown-linux-gnu objdump
build_deb arm64 aarch64-unknown-linux-gnu aarch64-linux-gnu-objdump
build_deb armhf armv7-unknown-linux-gnueabihf arm-linux-gnueabihf-objdump

# --- The unit, verified, and the arm64 package installed and started in the trixie root.
t=$(date +%s)
cp "$OUT/wschat_${VERSION}_arm64.deb" "$ROOT/tmp/"
in_root sh -c "DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/wschat_${VERSION}_arm64.deb" >"$OUT/deb-install.log" 2>&1 \
  || { tail -n 20 "$OUT/deb-install.log" >&2; exit 1; }
# After the install, so that the ExecStart binary exists where the unit says.
in_root systemd-analyze verify /usr/lib/systemd/system/wschat.service
echo "systemd-analyze verify: the unit is accepted"

# As the unit would: read its ExecStart, User=, StateDirectory= and Environment= from the
# installed file (not from packaging/), its EnvironmentFile with the owner's one edit (a free
# port), the state directory made and owned by the service user as systemd makes it.
unit="$ROOT/usr/lib/systemd/system/wschat.service"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
user=$(sed -n 's/^User=//p' "$unit")
state=$(sed -n 's/^StateDirectory=//p' "$unit")
unit_env=$(sed -n 's/^Environment=//p' "$unit")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -i "s/^WSCHAT_ADDR=.*/WSCHAT_ADDR=127.0.0.1:$port/" "$ROOT/etc/default/wschat"
in_root sh -c "install -d -o $user -g $user -m 0750 /var/lib/$state"
# The environment file's assignments, without comments, as systemd reads them.
file_env=$(grep -E '^[A-Z_][A-Z0-9_]*=' "$ROOT/etc/default/wschat" | tr '\n' ' ')
# setpriv: the unit's user and NoNewPrivileges; qemu-aarch64 runs the arm64 binary (what a Pi
# does natively) with the root's own arm64 libc, as installed by the package's dependency.
# chroot directly (not in_root, a shell function that would run in a subshell), so that $! is
# the service's own PID: chroot, env and setpriv exec into qemu-aarch64.
# shellcheck disable=SC2086
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin $unit_env $file_env setpriv --reuid="$user" --regid="$user" --init-groups --no-new-privs \
  qemu-aarch64 $exec_start >"$OUT/deb-service.log" 2>&1 &
pid=$!
ok=no
# Up to 30 s for an emulated start (it takes ~1 s here); then give up and say so.
for _ in $(seq 1 150); do
  if body=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null); then ok=yes; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
page=$(curl -fsS --max-time 5 "http://127.0.0.1:$port/" 2>/dev/null | grep -c '<html' || true)
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" || true
cat "$OUT/deb-service.log"
if [ "$ok" != yes ] || [ "$page" -lt 1 ]; then
  echo "the installed arm64 service did not serve /healthz and / on port $port" >&2
  exit 1
fi
echo "installed arm64 package, ExecStart '$exec_start' as $user under qemu-aarch64: /healthz says: $body; / serves the page"
# Owned by the service user inside the root, and holding the history file: WSCHAT_DATA_DIR
# from the unit's Environment= reached the server.
in_root sh -c "ls -la /var/lib/$state" | tail -n +2 | head -5
# Leave the cached root as it was.
in_root sh -c "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q wschat >/dev/null && rm -f /tmp/wschat_*.deb"
step_time "deb install + service check (arm64, qemu)" "$t"
