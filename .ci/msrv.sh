#!/usr/bin/env bash
# The declared rust-version, for real: inside the trixie root (.ci/trixie-root.sh), with
# Debian's rustc 1.85 (what a Raspberry Pi OS owner gets from `apt install cargo`), build every
# target and run the whole test suite. A dependency bump or newer syntax that needs a later
# rustc fails here. Crates come vendored from the host (offline inside; see .ci/lib.sh).
#
# Cost measured on this machine (2 cores shared, loaded): build 467 s cold, tests 29 s; the
# root's /build/target-msrv is cached between runs, so a later run rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/lib.sh

root_mounts
declared=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
have=$(in_root rustc --version)
echo "rust-version in Cargo.toml: $declared; root: $have"
case "$have" in
  "rustc $declared".*) ;;
  *) echo "the root's rustc is not the declared rust-version $declared" >&2; exit 1 ;;
esac

vendor_crates
t=$(date +%s)
in_root sh -c "cd $SRC_IN_ROOT && CARGO_TARGET_DIR=/build/target-msrv cargo build --all-targets --locked"
step_time "msrv cargo build --all-targets" "$t"
t=$(date +%s)
in_root sh -c "cd $SRC_IN_ROOT && CARGO_TARGET_DIR=/build/target-msrv cargo test --locked"
step_time "msrv cargo test" "$t"
