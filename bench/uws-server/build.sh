#!/usr/bin/env bash
# Builds bench/uws-server/server.cpp against uWebSockets' and uSockets' public source, which the
# caller has checked out (this repository holds neither, and this script downloads nothing):
#
#   bench/uws-server/build.sh UWEBSOCKETS_DIR USOCKETS_DIR [OUT]
#   UWS_BIN=target/uws-server/uws-server bench/compare.sh
#
# OUT defaults to target/uws-server/uws-server. Flags as uWebSockets' own GNUmakefile builds its
# examples (-O3 -flto), plus -march=native (the comparison runs on the machine that built it);
# no TLS (LIBUS_NO_SSL) and no zlib (UWS_NO_ZLIB): wschat is measured without either too.
# Needs gcc and g++ with C++20 (Debian's g++ 12 or later).
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,11p' "$0" >&2; exit 2; }
UWS=$(cd "$1" && pwd)
US=$(cd "$2" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${3:-$HERE/../../target/uws-server/uws-server}
[[ -f $UWS/src/App.h ]] || { echo "build.sh: $UWS/src/App.h not found (uWebSockets' tree?)" >&2; exit 1; }
[[ -f $US/src/libusockets.h ]] || { echo "build.sh: $US/src/libusockets.h not found (uSockets' tree?)" >&2; exit 1; }

OBJ=$(mktemp -d)
trap 'rm -rf "$OBJ"' EXIT
FLAGS=(-O3 -march=native -flto -DLIBUS_NO_SSL -DUWS_NO_ZLIB)
(cd "$OBJ" && gcc "${FLAGS[@]}" -I"$US/src" -c "$US"/src/*.c "$US"/src/eventing/*.c "$US"/src/crypto/*.c)
mkdir -p "$(dirname "$OUT")"
g++ -std=c++20 "${FLAGS[@]}" -I"$UWS/src" -I"$US/src" "$HERE/server.cpp" "$OBJ"/*.o -o "$OUT"
echo "built $OUT (uWebSockets $(git -C "$UWS" rev-parse --short=8 HEAD 2>/dev/null || echo '?'), uSockets $(git -C "$US" rev-parse --short=8 HEAD 2>/dev/null || echo '?'))"
