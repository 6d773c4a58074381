#!/usr/bin/env bash
# Fan-out across a cluster against one node, in one sitting (issue "Many nodes, one chat"):
# a real redis-server (AOF on, as deployed) and 3 wschat nodes on loopback, the bench client
# spreading its connections over them (`--url` per node), against the same clients on one node
# without Redis, and on one node with Redis (the Redis hop alone). Prints one Markdown row
# per run: deliveries/s, latency p50/p99, lost, CPU of each node and of Redis.
#
#   bench/cluster.sh                         # 3 runs each of the default scenario
#   RUNS=1 CONNS=1000 RATE=200 bench/cluster.sh
#
# Environment: RUNS [3], CONNS [1000], SENDERS [10], RATE [200 msg/s, or max], DURATION [10 s],
# PORT [9500], REDIS [/usr/bin/redis-server], SETUPS [one redis three: which setups to run]. Every process is started here and stopped by its
# PID; the client run is bounded by `timeout`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}; CONNS=${CONNS:-1000}; SENDERS=${SENDERS:-10}; RATE=${RATE:-200}
DURATION=${DURATION:-10}; PORT=${PORT:-9500}; REDIS=${REDIS:-/usr/bin/redis-server}
SETUPS=${SETUPS:-"one redis three"}
want() { [[ " $SETUPS " == *" $1 "* ]]; }
BIN=$ROOT/target/release/wschat
TMP=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
(cd "$ROOT" && cargo build --release --quiet)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, in clock ticks
HZ=$(getconf CLK_TCK)

start_redis() {
  "$REDIS" --port "$1" --bind 127.0.0.1 --dir "$TMP" --appendonly yes --appendfsync everysec \
    --save "" --daemonize no --loglevel warning >/dev/null 2>&1 &
  PIDS+=($!); echo $! >"$TMP/redis.pid"
  for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "redis did not start" >&2; exit 1
}

# start_node PORT [ARGS...]: prints its PID
start_node() {
  local port=$1; shift
  "$BIN" --addr "127.0.0.1:$port" --relay-rate 0 --max-per-ip 0 "$@" >/dev/null 2>&1 &
  PIDS+=($!); echo $! >"$TMP/node-$port.pid"
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
  if [ "$#" -gt 0 ]; then
    for _ in $(seq 200); do curl -fs "http://127.0.0.1:$port/metrics" | grep -qx 'wschat_cluster_redis_up 1' && return; sleep 0.05; done
    echo "node $port did not reach Redis" >&2; exit 1
  fi
}

run() { # run LABEL URLS PIDS...
  local label=$1 urls=$2; shift 2
  local pids=("$@") before=() after=() p
  for p in "${pids[@]}"; do before+=("$(ticks "$p")"); done
  local json
  json=$(timeout -s INT $((DURATION + 60)) "$BIN" bench fanout $urls -c "$CONNS" -s "$SENDERS" \
    --rate "$RATE" -d "$DURATION" -p 64 -q --json 2>/dev/null)
  for p in "${pids[@]}"; do after+=("$(ticks "$p")"); done
  local secs cpu="" i
  secs=$(jq -r .duration_secs <<<"$json")
  for i in "${!pids[@]}"; do
    cpu+="$(awk -v a="${before[$i]}" -v b="${after[$i]}" -v hz="$HZ" -v s="$secs" 'BEGIN {printf "%.0f%%", (b - a) / hz / s * 100}') "
  done
  jq -r --arg l "$label" --arg cpu "$cpu" \
    '"| \($l) | \(.deliveries_per_sec | floor) | \(.latency_ms.p50) | \(.latency_ms.p99) | \(.lost) | \($cpu)|"' <<<"$json"
}

echo "| setup | deliveries/s | p50 ms | p99 ms | lost | CPU (nodes..., redis) over the run |"
echo "|---|---|---|---|---|---|"
for r in $(seq "$RUNS"); do
  # One node, no Redis.
  if want one; then
    start_node $PORT; n=$(cat "$TMP/node-$PORT.pid")
    run "1 node" "--url ws://127.0.0.1:$PORT/" "$n"
    kill "$n"; wait "$n" 2>/dev/null || true
  fi
  # Redis for the next two.
  rport=$((PORT + 10)); rm -f "$TMP"/*.aof "$TMP"/appendonlydir -r
  start_redis $rport; rp=$(cat "$TMP/redis.pid")
  # One node with Redis: every message also goes through Redis (published, nobody else hears).
  if want redis; then
    start_node $((PORT + 1)) --redis "redis://127.0.0.1:$rport/0"; n=$(cat "$TMP/node-$((PORT + 1)).pid")
    run "1 node + Redis" "--url ws://127.0.0.1:$((PORT + 1))/" "$n" "$rp"
    kill "$n"; wait "$n" 2>/dev/null || true
  fi
  # Three nodes.
  ns=()
  want three || { kill "$rp"; wait "$rp" 2>/dev/null || true; PORT=$((PORT + 20)); continue; }
  for i in 2 3 4; do start_node $((PORT + i)) --redis "redis://127.0.0.1:$rport/0"; ns+=("$(cat "$TMP/node-$((PORT + i)).pid")"); done
  run "3 nodes" "--url ws://127.0.0.1:$((PORT + 2))/ --url ws://127.0.0.1:$((PORT + 3))/ --url ws://127.0.0.1:$((PORT + 4))/" "${ns[@]}" "$rp"
  for p in "${ns[@]}" "$rp"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  PORT=$((PORT + 20))
done
