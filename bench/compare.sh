#!/usr/bin/env bash
# Measures wschat against the Node.js `ws` tutorial server and a tokio-tungstenite server with
# the same `wschat bench` scenarios, alternating servers, and prints a Markdown table of medians.
#
#   bench/compare.sh                      # everything, 3 runs each
#   RUNS=5 SERVERS="wschat tokio" SCENARIOS="echo fanout100" bench/compare.sh
#
# Environment (defaults in brackets):
#   RUNS       runs per scenario and server [3]
#   SERVERS    any of: wschat node tokio tokio-send [wschat node tokio tokio-send; a server
#              that does not start is skipped]. tokio batches its writes (feed + one flush);
#              tokio-send writes each message with send().await, as tokio-tungstenite's examples.
#              uws: a uWebSockets server, when UWS_BIN names one (see below).
#   UWS_BIN    the uWebSockets server (bench/uws-server: `/` publishes every message to a topic
#              all clients subscribe to, everyone but the sender; `/echo` echoes), built by
#              bench/uws-server/build.sh from uWebSockets' and uSockets' public source trees,
#              which this repository does not hold [target/uws-server/uws-server when built].
#              With a binary there, `uws` joins SERVERS.
#   SCENARIOS  any of: fanout100 fanout1000 fanout1000x500 idle10k idle19k echo echo50
#              [fanout100 fanout1000 idle10k echo]
#   DURATION   seconds of sending per fanout/echo run [10]
#   HOLD       seconds the idle connections are held [5]
#   PAUSE      seconds between runs, for the previous run's sockets to settle [2]
#   PORT       first port; each run gets a fresh one [9300]
#   BENCH      client command [target/release/wschat bench, else the bench example]
#   WSCHAT_CMD server command, {port} replaced [target/release/wschat --addr 127.0.0.1:{port}]
#   OUT        directory for raw JSON lines and server logs [target/bench-compare]
#   NO_BUILD=1 skip the builds
#
# Every client run is bounded by `timeout` (SIGINT first: the client then prints what it has);
# every server is started fresh for each run and stopped by its PID.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
UWS_BIN=${UWS_BIN:-$ROOT/target/uws-server/uws-server}
[[ -x $UWS_BIN ]] || UWS_BIN=
SERVERS=${SERVERS:-"wschat node tokio tokio-send${UWS_BIN:+ uws}"}
SCENARIOS=${SCENARIOS:-"fanout100 fanout1000 idle10k echo"}
DURATION=${DURATION:-10}
HOLD=${HOLD:-5}
PAUSE=${PAUSE:-2}
PORT=${PORT:-9300}
OUT=${OUT:-$ROOT/target/bench-compare}
WSCHAT_CMD=${WSCHAT_CMD:-"$ROOT/target/release/wschat --addr 127.0.0.1:{port}"}
TOKIO_BIN=$ROOT/bench/tokio-server/target/release/wschat-bench-tokio-server

command -v jq >/dev/null || { echo "compare.sh needs jq" >&2; exit 1; }
mkdir -p "$OUT"
RESULTS=$OUT/results-$(date +%Y%m%d-%H%M%S).jsonl
: >"$RESULTS"

log() { echo "compare: $*" >&2; }

# --- build -------------------------------------------------------------------------------
if [[ -z ${NO_BUILD:-} ]]; then
  log "building wschat (release)"
  (cd "$ROOT" && cargo build --release --quiet)
  log "building the tokio server (release, its own Cargo.lock)"
  cargo build --release --quiet --manifest-path "$ROOT/bench/tokio-server/Cargo.toml"
  if [[ " $SERVERS " == *" node "* && ! -d $ROOT/bench/node-ws/node_modules ]]; then
    log "installing ws for the node server"
    (cd "$ROOT/bench/node-ws" && npm ci --no-audit --no-fund --silent)
  fi
fi
BENCH=${BENCH:-"$ROOT/target/release/wschat bench"}
log "client: $BENCH"

# --- servers -----------------------------------------------------------------------------
SERVER_PID=
start_server() { # name port logfile
  local name=$1 port=$2 logfile=$3
  case $name in
    wschat) [[ -x $ROOT/target/release/wschat ]] || return 1
            ${WSCHAT_CMD//\{port\}/$port} >"$logfile" 2>&1 & ;;
    node)   node "$ROOT/bench/node-ws/server.js" "$port" >"$logfile" 2>&1 & ;;
    tokio)  "$TOKIO_BIN" "$port" >"$logfile" 2>&1 & ;;
    tokio-send) SEND=each "$TOKIO_BIN" "$port" >"$logfile" 2>&1 & ;;
    uws)    [[ -n ${UWS_BIN:-} && -x $UWS_BIN ]] || return 1
            "$UWS_BIN" "$port" >"$logfile" 2>&1 & ;;
    *)      log "unknown server $name"; return 1 ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 100); do # up to 10 s
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { SERVER_PID=; return 1; }
    sleep 0.1
  done
  stop_server
  return 1
}

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 50); do # up to 5 s, then SIGKILL
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
trap 'stop_server' EXIT
trap 'stop_server; exit 130' INT TERM

# --- scenarios ---------------------------------------------------------------------------
scenario_args() { # name port -> client arguments
  local url=ws://127.0.0.1:$2
  case $1 in
    fanout100)  echo "fanout --url $url/ -c 100 -s 10 --rate max -p 64 -d $DURATION" ;;
    fanout1000) echo "fanout --url $url/ -c 1000 -s 1 --rate 200 -p 64 -d $DURATION" ;;
    fanout1000x500) echo "fanout --url $url/ -c 1000 -s 1 --rate 500 -p 64 -d $DURATION" ;;
    idle19k)    echo "idle --url $url/ -c 19000 -k 64 -d $HOLD" ;;
    idle10k)    echo "idle --url $url/ -c 10000 -k 64 -d $HOLD" ;;
    echo)       echo "echo --url $url/echo -c 1 -p 64 -d $DURATION" ;;
    echo50)     echo "echo --url $url/echo -c 50 -p 64 -d $DURATION" ;;
    *)          return 1 ;;
  esac
}

ulimit -n 20000 2>/dev/null || true
log "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(ulimit -n) open files"
awk '$1 > 0.5 { print "compare: WARNING: load average " $1 " - other processes compete for the cores" }' \
  /proc/loadavg >&2

declare -A DEAD=()
n=0
for run in $(seq "$RUNS"); do
  for sc in $SCENARIOS; do
    for server in $SERVERS; do
      [[ -z ${DEAD[$server]:-} ]] || continue
      port=$((PORT + n % 500))
      n=$((n + 1))
      logfile=$OUT/$server-$sc-$run.log
      if ! start_server "$server" "$port" "$logfile"; then
        log "$server did not start (see $logfile); skipping it"
        DEAD[$server]=1
        continue
      fi
      # shellcheck disable=SC2046 # word splitting of the argument list is intended
      args=$(scenario_args "$sc" "$port")
      load1=$(cut -d' ' -f1 /proc/loadavg)
      log "run $run/$RUNS $sc on $server (pid $SERVER_PID, load $load1): bench $args"
      limit=$((DURATION + HOLD + 90))
      if line=$(timeout -s INT -k 10 "$limit" $BENCH $args --json -q --server-pid "$SERVER_PID" \
                2>>"$OUT/client.log" | tail -n 1) && [[ -n $line ]]; then
        jq -c --arg server "$server" --arg case "$sc" --argjson run "$run" --argjson load1 "$load1" \
          '. + {server: $server, case: $case, run: $run, load1: $load1}
           + (if (.server_cpu_pct // 0) > 0 and .deliveries_per_sec then
                {per_cpu_s: (.deliveries_per_sec / (.server_cpu_pct / 100))} else {} end)' <<<"$line" >>"$RESULTS"
      else
        log "client failed on $server $sc (see $OUT/client.log)"
      fi
      stop_server
      sleep "$PAUSE"
    done
  done
done

# --- table -------------------------------------------------------------------------------
log "raw results: $RESULTS"
jq -rs --arg servers "$SERVERS" --argjson nruns "$RUNS" '
  def median: sort | if length == 0 then null
    elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def fmt($d): if . == null then "-" elif $d == 0 then (round | tostring)
    else ((. * pow(10; $d) | round) / pow(10; $d) | tostring) end;
  ($servers | split(" ") | map(select(length > 0))) as $cols
  | [
      ["fanout100",  "fanout 100 conns, 10 senders, max rate, 64 B", "deliveries/s", ["deliveries_per_sec"], 0],
      ["fanout100",  "", "latency p50 ms", ["latency_ms", "p50"], 2],
      ["fanout100",  "", "latency p99 ms", ["latency_ms", "p99"], 2],
      ["fanout100",  "", "sent msg/s", ["sent_per_sec"], 0],
      ["fanout100",  "", "lost %", ["loss_pct"], 2],
      ["fanout100",  "", "server CPU %", ["server_cpu_pct"], 0],
      ["fanout100",  "", "deliveries per server CPU-s", ["per_cpu_s"], 0],
      ["fanout1000", "fanout 1000 conns, 1 sender, 200 msg/s, 64 B", "deliveries/s", ["deliveries_per_sec"], 0],
      ["fanout1000", "", "latency p50 ms", ["latency_ms", "p50"], 2],
      ["fanout1000", "", "latency p99 ms", ["latency_ms", "p99"], 2],
      ["fanout1000", "", "lost %", ["loss_pct"], 2],
      ["fanout1000", "", "server CPU %", ["server_cpu_pct"], 0],
      ["fanout1000x500", "fanout 1000 conns, 1 sender, 500 msg/s, 64 B", "deliveries/s", ["deliveries_per_sec"], 0],
      ["fanout1000x500", "", "latency p99 ms", ["latency_ms", "p99"], 2],
      ["fanout1000x500", "", "lost %", ["loss_pct"], 2],
      ["fanout1000x500", "", "server CPU %", ["server_cpu_pct"], 0],
      ["fanout1000x500", "", "deliveries per server CPU-s", ["per_cpu_s"], 0],
      ["idle10k",    "10,000 idle connections", "server KiB per connection", ["bytes_per_conn"], -1],
      ["idle10k",    "", "handshakes/s", ["handshakes_per_sec"], 0],
      ["idle10k",    "", "connect failures", ["connect_failures"], -2],
      ["idle19k",    "19,000 idle connections", "server KiB per connection", ["bytes_per_conn"], -1],
      ["idle19k",    "", "handshakes/s", ["handshakes_per_sec"], 0],
      ["idle19k",    "", "connect failures", ["connect_failures"], -2],
      ["echo",       "echo, 1 client, 64 B", "round trips/s", ["deliveries_per_sec"], 0],
      ["echo",       "", "latency p50 ms", ["latency_ms", "p50"], 3],
      ["echo",       "", "latency p99 ms", ["latency_ms", "p99"], 3],
      ["echo",       "", "server CPU %", ["server_cpu_pct"], 0],
      ["echo50",     "echo, 50 clients, 64 B", "round trips/s", ["deliveries_per_sec"], 0],
      ["echo50",     "", "latency p99 ms", ["latency_ms", "p99"], 3],
      ["echo50",     "", "server CPU %", ["server_cpu_pct"], 0],
      ["echo50",     "", "round trips per server CPU-s", ["per_cpu_s"], 0],
      ["all",        "machine", "load average at run start", ["load1"], 2]
    ] as $rows
  | . as $all
  | ($all | map(.case) | unique + ["all"]) as $cases
  | "| scenario | metric | " + ($cols | join(" | ")) + " |",
    "|---|---|" + ($cols | map("---:") | join("|")) + "|",
    ($rows[] | select(.[0] as $c | $cases | index($c)) as [$case, $title, $metric, $path, $d]
      | "| " + $title + " | " + $metric + " | "
        + ($cols | map(. as $s
            | [$all[] | select((.case == $case or $case == "all") and .server == $s)] as $runs
            | if $d == -1 then [$runs[] | getpath($path) | select(. != null) / 1024] | median | fmt(1)
              elif $d == -2 then [$runs[] | getpath($path) | to_entries | map(.value) | add // 0] | median | fmt(0)
              else [$runs[] | getpath($path) | select(. != null)] | median | fmt($d) end
            + (if $case != "all" and ($runs | length) < $nruns then " (" + ($runs | length | tostring) + " runs)" else "" end)
          ) | join(" | ")) + " |"),
    "",
    "Medians of \($nruns) runs per cell; raw JSON lines in the results file."
' "$RESULTS"
