#!/usr/bin/env bash
# Relay latency with and without chat load while the chat log's disk is slow: every
# fdatasync/fsync of the server is delayed by DELAY_MS (an LD_PRELOAD shim, as in
# tests/slow_disk.rs). Prints one JSON line per run: scenario, relay p50/p99, chat p99.
#
#   bench/slow-disk.sh                  # target/release/wschat, 50 ms, 3 runs each
#   WSCHAT=/path/to/wschat RUNS=5 DELAY_MS=50 bench/slow-disk.sh
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WSCHAT=${WSCHAT:-$repo/target/release/wschat}
RUNS=${RUNS:-3}
DELAY_MS=${DELAY_MS:-50}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/slowsync.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>
static void delay(void) { const char *ms = getenv("SYNC_DELAY_MS"); if (ms) usleep(atoi(ms) * 1000); }
int fdatasync(int fd) { static int (*r)(int); if (!r) r = dlsym(RTLD_NEXT, "fdatasync"); delay(); return r(fd); }
int fsync(int fd) { static int (*r)(int); if (!r) r = dlsym(RTLD_NEXT, "fsync"); delay(); return r(fd); }
C
cc -shared -fPIC -O2 -o "$work/slowsync.so" "$work/slowsync.c" -ldl
server=
run() { # $1 = with_chat (0/1)
  rm -rf "$work/data"; : > "$work/log"
  LD_PRELOAD="$work/slowsync.so" SYNC_DELAY_MS=$DELAY_MS "$WSCHAT" --addr 127.0.0.1:0 \
    --data-dir "$work/data" --relay-rate 0 > "$work/log" 2>/dev/null &
  server=$!
  for _ in $(seq 100); do grep -q http:// "$work/log" && break; sleep 0.05; done
  addr=$(sed -n 's|.*http://\([^ ]*\).*|\1|p' "$work/log" | head -1)
  local chat_pid=
  if [ "$1" = 1 ]; then
    "$WSCHAT" bench fanout --url "ws://$addr/chat" --mode chat -c 20 -s 20 --rate 100 -p 64 \
      -d 12 -q --json > "$work/chat.json" &
    chat_pid=$!
    sleep 1 # the chat clients are connected and posting before the relay run starts
  fi
  "$WSCHAT" bench fanout --url "ws://$addr/" -c 100 -s 10 --rate 1000 -p 64 -d 10 -q \
    --json > "$work/relay.json"
  [ -n "$chat_pid" ] && wait "$chat_pid"
  kill "$server"; wait "$server" 2>/dev/null || true; server=
  python3 - "$1" "$work" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
with_chat, work, load = sys.argv[1] == "1", sys.argv[2], sys.argv[3]
r = json.load(open(f"{work}/relay.json"))
def lat(j, k):
    for key in ("latency_ms", "latency"):
        if key in j and k in j[key]:
            return j[key][k]
    return j.get(f"{k}_ms", j.get(k))
out = {"scenario": "relay+chat" if with_chat else "relay", "load": load,
       "relay_p50_ms": lat(r, "p50"), "relay_p99_ms": lat(r, "p99"), "relay_lost": r.get("lost")}
if with_chat:
    c = json.load(open(f"{work}/chat.json"))
    out.update(chat_p99_ms=lat(c, "p99"), chat_delivered=c.get("delivered"), chat_lost=c.get("lost"))
print(json.dumps(out))
PY
}
for _ in $(seq "$RUNS"); do run 0; run 1; done
