#!/usr/bin/env bash
# bench/http: weir-http against hyper 1.x, hello world, under wrk.
#
# Each server runs pinned to CPU 0 on one thread; wrk runs pinned to CPU 1. Two modes, as
# TechEmpower's plaintext test: keep-alive (-c64) and pipelined (16 requests per write).
# Rounds alternate the servers so drift (thermal, other load) hits both alike; the median
# round is reported with the ratio Weir / hyper.
#
# Usage: bash bench/http/run.sh [ROUNDS] [SECONDS]   (defaults: 3 rounds of 10 s)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
CONNECTIONS=64

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
echo "building (release)..." >&2
cargo build --release -q -p weir-http --example hello
cargo build --release -q --manifest-path bench/http/hyper-hello/Cargo.toml
WEIR_BIN=target/release/examples/hello
HYPER_BIN=bench/http/hyper-hello/target/release/hyper-hello

CPUS=$(nproc)
SERVER_CPU=0
LOAD_CPU=$(( CPUS > 1 ? 1 : 0 ))

start_server() { # name port
  local bin=$1 port=$2
  taskset -c "$SERVER_CPU" "$bin" "127.0.0.1:$port" 2>/dev/null &
  SERVER_PID=$!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "server $bin did not start" >&2; exit 1
}

stop_server() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Prints "requests_per_second p50_ms p99_ms server_cpu_us_per_request" for one wrk run.
# The CPU column is the server's own user+system time per request: when wrk, not the
# server, is the bottleneck, it still shows which server does less work per request.
measure() { # port mode
  local port=$1 mode=$2 out ticks_before ticks_after
  local args=(-t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency)
  if [ "$mode" = pipelined ]; then args+=(-s bench/http/pipeline.lua); fi
  args+=("http://127.0.0.1:$port/")
  if [ "$mode" = pipelined ]; then args+=(-- 16); fi
  ticks_before=$(cpu_ticks "$SERVER_PID")
  out=$(taskset -c "$LOAD_CPU" wrk "${args[@]}")
  ticks_after=$(cpu_ticks "$SERVER_PID")
  local rps p50 p99 requests cpu_us
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu_us=$(awk -v t=$((ticks_after - ticks_before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN { printf "%.3f", t / hz * 1e6 / n }')
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $cpu_us"
}

to_ms() { # wrk prints 1.23ms, 456.00us or 1.02s
  awk -v v="$1" 'BEGIN {
    if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
    else if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
    else print v }'
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A RESULTS ROUND_RATIOS
for mode in keepalive pipelined; do
  for round in $(seq "$ROUNDS"); do
    # Odd rounds run hyper first, even rounds weir first, so a drift inside a round favours
    # neither side.
    if (( round % 2 )); then order="hyper weir"; else order="weir hyper"; fi
    for server in $order; do
      if [ "$server" = hyper ]; then bin=$HYPER_BIN; port=7080; else bin=$WEIR_BIN; port=7081; fi
      start_server "$bin" "$port"
      # Warm-up: connections, caches, the CPU clock.
      taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$port/" >/dev/null
      result=$(measure "$port" "$mode")
      stop_server
      echo "$mode round $round $server: $result" >&2
      RESULTS[$mode,$server]+="$result"$'\n'
      eval "round_${server}=${result%% *}"
    done
    # Servers run back to back within a round, so the round's ratio is less exposed to the
    # machine's drift than the ratio of medians.
    ROUND_RATIOS[$mode]+="$(awk -v w="$round_weir" -v h="$round_hyper" 'BEGIN { printf "%.3f", w / h }') "
  done
done

printf '\n%-10s %-6s %14s %9s %9s %12s\n' mode server "requests/s" "p50 ms" "p99 ms" "cpu us/req"
for mode in keepalive pipelined; do
  for server in hyper weir; do
    rows=${RESULTS[$mode,$server]}
    rps=$(awk 'NF {print $1}' <<<"$rows" | median)
    p50=$(awk 'NF {print $2}' <<<"$rows" | median)
    p99=$(awk 'NF {print $3}' <<<"$rows" | median)
    cpu=$(awk 'NF {print $4}' <<<"$rows" | median)
    printf '%-10s %-6s %14.0f %9.3f %9.3f %12.3f\n' "$mode" "$server" "$rps" "$p50" "$p99" "$cpu"
    eval "${server}_rps=$rps; ${server}_p99=$p99; ${server}_cpu=$cpu"
  done
  # wrk reports no per-request latency in pipelined mode (it prints 0): the ratio is n/a then.
  awk -v w="$weir_rps" -v h="$hyper_rps" -v wp="$weir_p99" -v hp="$hyper_p99" -v wc="$weir_cpu" -v hc="$hyper_cpu" -v m="$mode" \
    'BEGIN { printf "%-10s ratio weir/hyper: requests/s %.2fx, p99 %s, cpu per request %.2fx\n", m, w / h, (hp > 0 && wp > 0 ? sprintf("%.2fx", wp / hp) : "n/a"), wc / hc }'
  ratios=${ROUND_RATIOS[$mode]}
  printf '%-10s per-round requests/s ratios: %s(median %s)\n' "$mode" "$ratios" "$(tr ' ' '\n' <<<"$ratios" | awk NF | median)"
done
echo
echo "machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | sed 's/^ *//'); $(date -u +%Y-%m-%d)"
