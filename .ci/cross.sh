#!/usr/bin/env bash
# Raspberry Pi builds, proved: inside the trixie root (.ci/trixie-root.sh), with Debian's Rust
# 1.85 and cross gcc as linker, `cargo build --release` for the Pi target, then the library's
# unit tests and a stated subset of the integration tests built for that target and run under
# qemu-user. Puts the stripped release binary in ci-artifacts/wschat-<target>.
#
# Usage: .ci/cross.sh aarch64|armv7 [--no-tests]
#
# Under emulation every instruction is translated (qemu TCG, ~5-20x slower than native), so the
# subset below covers every server part (relay, echo, chat, history with kill -9, parking, slow
# consumers, shutdown, the RFC 6455 conformance sweep, the page) and leaves out, on purpose:
#   capacity, idle_cost, chat_flood: thousands of connections or messages, sized for native
#     speed; minutes under qemu and they measure the host's emulator, not the Pi;
#   fuzz_frames, fuzz_handshake, chat_fuzz: CPU-bound random sweeps of the same parsing code the
#     conformance sweep and the lib unit tests (frame lengths at 32-bit usize included) run;
#   examples: starts the examples' own binaries (built for the host by cargo run --example);
#   embed: covered natively (the library embedded in a host program; nothing per-arch that the
#     in-process tests above do not already run).
# The lib unit tests (`--lib`) all run: they hold the frame codec, config and sys wrappers,
# which is where 32-bit widths (usize, rlim_t, time_t, epoll_event layout) would show.
#
# Tests that start the real binary (chat_persistence's kill -9, shutdown, admission_tokens'
# SIGHUP) exec an ARM program from an ARM test; the kernel runs it through qemu only with a
# binfmt_misc entry, so this script registers one for the run (named wschat-ci-*, removed on
# exit) unless the machine already has one for that architecture.
#
# Cost measured on this machine (2 cores, shared with others, cold): aarch64 ~400 s release +
# 575 s tests (build and run), armv7 428 s + 142 s; the emulated runs alone take ~2 min
# (conformance and slow_consumer ~30 s each). Every step's time is printed; see .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

# The integration tests run under emulation: test file stems, which are also the module names
# of the single test binary tests/it/ once the suite is merged into it. Edit here only.
# Not here: cluster and cluster_outage (they need a redis-server in the root, and their point,
# three nodes and a Redis, is not architecture-bound); the Redis client is still built for the
# target and its unit tests (log entries, relay wire format) run in the --lib step below.
EMULATED_TESTS="relay echo chat_rooms chat_dm chat_history chat_persistence chat_presence \
chat_half_close chat_malformed chat_names chat_order chat_ref parking slow_consumer shutdown \
conformance http_page protocol_errors handshake_errors subprotocols admission_origin \
admission_tokens api_publish prune tokens_fail_closed chat_identity chat_bytes proxy_admission"

arch=${1:?usage: .ci/cross.sh aarch64|armv7 [--no-tests]}
run_tests=yes
[ "${2:-}" = "--no-tests" ] && run_tests=no
case "$arch" in
  aarch64)
    TARGET=aarch64-unknown-linux-gnu
    GCC=aarch64-linux-gnu-gcc
    STRIP=aarch64-linux-gnu-strip
    QEMU=qemu-aarch64
    SYSROOT=/usr/aarch64-linux-gnu
    # ELF magic and mask for EM_AARCH64 (0xb7), as in Debian's qemu-user-binfmt.
    MAGIC='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
    MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
    ;;
  armv7)
    TARGET=armv7-unknown-linux-gnueabihf
    GCC=arm-linux-gnueabihf-gcc
    STRIP=arm-linux-gnueabihf-strip
    QEMU=qemu-arm
    SYSROOT=/usr/arm-linux-gnueabihf
    # EM_ARM (0x28), 32-bit little-endian.
    MAGIC='\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00'
    MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
    ;;
  *) echo "usage: .ci/cross.sh aarch64|armv7 [--no-tests]" >&2; exit 2 ;;
esac
T_UPPER=$(echo "$TARGET" | tr 'a-z-' 'A-Z_')

BINFMT=/proc/sys/fs/binfmt_misc
BINFMT_NAME=wschat-ci-$arch
_binfmt_mounted=no
_binfmt_registered=no
cleanup_binfmt() {
  if [ "$_binfmt_registered" = yes ] && [ -e "$BINFMT/$BINFMT_NAME" ]; then
    echo -1 >"$BINFMT/$BINFMT_NAME" || true
  fi
  if [ "$_binfmt_mounted" = yes ]; then umount "$BINFMT" || true; fi
}
# The interpreter path is looked up when an ARM program is exec'd, in that process's root: the
# tests run inside the trixie root, where /usr/bin/qemu-* is (no F flag, so nothing of the root
# is pinned by the kernel after the run).
register_binfmt() {
  if [ ! -e "$BINFMT/register" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT"
    _binfmt_mounted=yes
  fi
  if grep -qs "^interpreter .*$QEMU" "$BINFMT"/* 2>/dev/null \
    && grep -qs '^enabled' "$BINFMT/status"; then
    echo "binfmt_misc: this machine already runs $arch programs through qemu"
    return
  fi
  # The kernel decodes the \xHH escapes itself: pass them literally (decoded here, the NUL
  # bytes would cut the magic short and make it match every 64-bit ELF, host programs too).
  printf '%s' ":$BINFMT_NAME:M::$MAGIC:$MASK:/usr/bin/$QEMU:" >"$BINFMT/register"
  _binfmt_registered=yes
  # Check, with shell builtins only (no program runs before this passes), that the kernel
  # holds exactly this magic; otherwise remove the entry at once.
  local line want="magic ${MAGIC//\\x/}" want_mask="mask ${MASK//\\x/}" ok=0
  while read -r line; do
    if [ "$line" = "$want" ] || [ "$line" = "$want_mask" ]; then ok=$((ok + 1)); fi
  done <"$BINFMT/$BINFMT_NAME"
  if [ "$ok" != 2 ]; then
    echo -1 >"$BINFMT/$BINFMT_NAME"
    _binfmt_registered=no
    echo "binfmt_misc entry for $arch was not as meant; removed" >&2
    exit 1
  fi
  echo "binfmt_misc: $BINFMT_NAME registered for this run ($want)"
}

root_mounts
trap 'cleanup_binfmt; _wschat_umount_all' EXIT
vendor_crates

# Inside the root: the linker for the target, the runner for tests (qemu with the target's
# libraries, so nothing depends on binfmt_misc for the test binaries themselves).
ENVS=(
  "CARGO_TARGET_${T_UPPER}_LINKER=$GCC"
  "CARGO_TARGET_${T_UPPER}_RUNNER=$QEMU -L $SYSROOT"
  "CARGO_TARGET_DIR=/build/target-cross"
  # A test's wschat child and its threads, emulated: allow for slower starts.
  "RUST_TEST_THREADS=2"
)

t=$(date +%s)
in_root env "${ENVS[@]}" sh -c "cd $SRC_IN_ROOT && cargo build --release --locked --target $TARGET --bin wschat"
mkdir -p ci-artifacts
in_root "$STRIP" "/build/target-cross/$TARGET/release/wschat" -o "/build/wschat-$TARGET"
cp "$ROOT/build/wschat-$TARGET" "ci-artifacts/wschat-$TARGET"
machine=$(in_root "${STRIP%strip}readelf" -h "/build/wschat-$TARGET" | sed -n 's/^ *Machine: *//p')
echo "$TARGET: $(stat -c %s "ci-artifacts/wschat-$TARGET") bytes stripped, machine: $machine"
step_time "cross release build $TARGET" "$t"

# The binary itself under qemu: it starts and says its version.
in_root "$QEMU" -L "$SYSROOT" "/build/wschat-$TARGET" --version

[ "$run_tests" = yes ] || exit 0

register_binfmt

t=$(date +%s)
if [ -d tests/it ]; then
  filters=()
  for m in $EMULATED_TESTS; do filters+=("$m::"); done
  TEST_ARGS="--test it -- ${filters[*]}"
else
  TEST_ARGS=""
  for m in $EMULATED_TESTS; do TEST_ARGS="$TEST_ARGS --test $m"; done
fi
in_root env "${ENVS[@]}" sh -c "cd $SRC_IN_ROOT && cargo test --locked --target $TARGET --lib --bins"
in_root env "${ENVS[@]}" sh -c "cd $SRC_IN_ROOT && cargo test --locked --target $TARGET $TEST_ARGS"
step_time "emulated tests $TARGET" "$t"
