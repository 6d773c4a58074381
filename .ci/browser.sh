#!/usr/bin/env bash
# Browser end-to-end test of the chat page (public/) against the real server, in headless
# Chromium. Called by .ci/run after `cargo test`; can be run by hand from anywhere:
#
#   .ci/browser.sh                              # screenshots in ci-artifacts/
#   UPDATE_DOCS_SCREENSHOT=1 .ci/browser.sh     # also refresh docs/screenshot.png
#
# Steps: Debian's chromium (Playwright's own browser download cannot be used here), `npm ci`
# in tests/browser, `cargo build --release`, then tests/browser/e2e.mjs, which starts the
# server on 127.0.0.1:0, restarts it once on the same port and --data-dir, and stops it,
# always by the PID it spawned. Exit status: 0 when every step passed, non-zero otherwise.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export ARTIFACTS=${ARTIFACTS:-$repo/ci-artifacts}
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
mkdir -p "$ARTIFACTS"

say() { printf '== browser: %s\n' "$*"; }

# --- Chromium -------------------------------------------------------------------------------
if [ ! -x "$CHROMIUM" ]; then
  command -v apt-get >/dev/null || { echo "no $CHROMIUM and no apt-get to install it" >&2; exit 1; }
  say "installing chromium from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # fonts-dejavu-core: without any font the screenshots show boxes instead of letters.
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
"$CHROMIUM" --version 2>/dev/null | head -n1 || true

# --- Node and the test's packages ----------------------------------------------------------------
command -v node >/dev/null || { echo "node is required (>= 20, for playwright-core)" >&2; exit 1; }
# >= 20.19: playwright-core needs 20, and the unit test imports public/*.js, plain ES modules
# without a package.json of their own, which needs module syntax detection (20.19, 22.7).
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "node $(node --version) is too old: need >= 20.19" >&2
  exit 1
fi
say "npm ci (tests/browser)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# --- The server ---------------------------------------------------------------------------------
say "cargo build --release"
cargo build --release --quiet
export WSCHAT_BIN=${WSCHAT_BIN:-$repo/target/release/wschat}

# --- The tests ----------------------------------------------------------------------------------
say "unit tests of the page's modules"
node --test tests/browser/unit.mjs

# e2e.mjs bounds itself (E2E_TIMEOUT_MS, 180 s) and stops its server on SIGTERM; `timeout` is
# the outer guard in case node itself hangs.
say "e2e against $WSCHAT_BIN"
status=0
timeout --kill-after=15 300 node tests/browser/e2e.mjs || status=$?
say "screenshots: $(cd "$ARTIFACTS" && ls -1 ./*.png 2>/dev/null | tr '\n' ' ')"
if [ "$status" -ne 0 ]; then
  say "FAILED (exit $status)"
  exit "$status"
fi
say "passed"
