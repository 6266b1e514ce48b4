#!/usr/bin/env bash
# bench/http: weir-http against hyper 1.x, hello world, under wrk.
#
# Both servers run at once, each on one thread pinned to CPU 0; wrk runs pinned to CPU 1 and
# loads one server at a time (the idle one sleeps in epoll and costs nothing). Two modes, as
# TechEmpower's plaintext test: keep-alive (-c64) and pipelined (16 requests per write).
#
# This VM drifts by ±20% over tens of seconds, so the servers are measured in short slices
# that alternate hyper, weir, weir, hyper, ... (each pair of rounds is ABBA): a linear drift
# hits both sides alike. Each round's ratio is weir / hyper from two back-to-back slices;
# their median and spread are the claim.
#
# Besides requests/s and latency it prints each side's CPU use during its slices: the
# server's time per request, and the busy share of the server's and of wrk's core. When wrk
# is near 100% of its core it, not the server, sets the throughput, and the ratio of
# requests/s cannot show a difference between servers.
#
# Usage: bash bench/http/run.sh [ROUNDS] [SECONDS]   (defaults: 10 rounds of 3 s)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-10}
SECONDS_PER_RUN=${2:-3}
CONNECTIONS=64

source bench/common.sh
need wrk wrk
echo "building (release)..." >&2
cargo build --release -q -p weir-http --example hello
cargo build --release -q --manifest-path bench/http/hyper-hello/Cargo.toml
declare -A BIN=([hyper]=bench/http/hyper-hello/target/release/hyper-hello [weir]=target/release/examples/hello)
declare -A PORT=([hyper]=7080 [weir]=7081)
declare -A PID

CPUS=$(nproc)
SERVER_CPU=0
LOAD_CPU=$(( CPUS > 1 ? 1 : 0 ))
HZ=$(getconf CLK_TCK)

start_server() { # name
  local name=$1 port=${PORT[$1]}
  taskset -c "$SERVER_CPU" "${BIN[$name]}" "127.0.0.1:$port" 2>/dev/null &
  PID[$name]=$!
  wait_port "$port" 5
}

stop_servers() { stop_pids "${PID[@]}"; }
trap stop_servers EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Prints "requests_per_second p50_ms p99_ms server_cpu_us_per_request server_busy wrk_busy"
# for one wrk run against server `name` (busy: the share of one core, 0 to 1).
measure() { # name mode
  local name=$1 mode=$2 out ticks_before ticks_after wrk_cpu start end
  local args=(-t1 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency)
  if [ "$mode" = pipelined ]; then args+=(-s bench/http/pipeline.lua); fi
  args+=("http://127.0.0.1:${PORT[$name]}/")
  if [ "$mode" = pipelined ]; then args+=(-- 16); fi
  ticks_before=$(cpu_ticks "${PID[$name]}")
  start=$(date +%s.%N)
  # bash's `time` reports the child's user and system seconds: wrk's own CPU.
  out=$( { TIMEFORMAT='wrk-cpu %U %S'; time taskset -c "$LOAD_CPU" wrk "${args[@]}"; } 2>&1 )
  end=$(date +%s.%N)
  ticks_after=$(cpu_ticks "${PID[$name]}")
  local rps p50 p99 requests
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  wrk_cpu=$(awk '$1=="wrk-cpu" {print $2 + $3}' <<<"$out")
  awk -v rps="$rps" -v p50="$(to_ms "$p50")" -v p99="$(to_ms "$p99")" -v n="$requests" \
    -v t=$((ticks_after - ticks_before)) -v hz="$HZ" -v w="$wrk_cpu" -v wall="$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')" \
    'BEGIN { printf "%s %s %s %.3f %.2f %.2f\n", rps, p50, p99, t / hz * 1e6 / n, t / hz / wall, w / wall }'
}

to_ms() { # wrk prints 1.23ms, 456.00us or 1.02s
  awk -v v="$1" 'BEGIN {
    if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
    else if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
    else print v }'
}

# Medians here are median_low: with an even number of rounds, a measured value rather than
# the mean of the middle two.
column_median() { awk -v c="$2" 'NF {print $c}' <<<"$1" | median_low; } # rows column
# The lowest and highest of a column: the spread of the per-round ratios.
range() { sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.2f-%.2f", lo, hi}'; }

for server in hyper weir; do start_server "$server"; done
# Warm-up: connections, caches, the CPU clock.
for server in hyper weir; do
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:${PORT[$server]}/" >/dev/null
done

declare -A RESULTS ROUND_RATIOS
for mode in keepalive pipelined; do
  for round in $(seq "$ROUNDS"); do
    if (( round % 2 )); then order="hyper weir"; else order="weir hyper"; fi
    for server in $order; do
      result=$(measure "$server" "$mode")
      echo "$mode round $round $server: $result" >&2
      RESULTS[$mode,$server]+="$result"$'\n'
      eval "round_${server}=${result%% *}"
    done
    ROUND_RATIOS[$mode]+="$(awk -v w="$round_weir" -v h="$round_hyper" 'BEGIN { printf "%.3f", w / h }') "
  done
done

printf '\n%-10s %-6s %12s %8s %8s %11s %12s %9s\n' mode server "requests/s" "p50 ms" "p99 ms" "cpu us/req" "server busy" "wrk busy"
for mode in keepalive pipelined; do
  for server in hyper weir; do
    rows=${RESULTS[$mode,$server]}
    rps=$(column_median "$rows" 1); p99=$(column_median "$rows" 3); cpu=$(column_median "$rows" 4)
    printf '%-10s %-6s %12.0f %8.3f %8.3f %11.3f %12.2f %9.2f\n' "$mode" "$server" "$rps" \
      "$(column_median "$rows" 2)" "$p99" "$cpu" "$(column_median "$rows" 5)" "$(column_median "$rows" 6)"
    eval "${server}_rps=$rps; ${server}_p99=$p99; ${server}_cpu=$cpu"
  done
  # wrk reports no per-request latency in pipelined mode (it prints 0): the ratio is n/a then.
  awk -v w="$weir_rps" -v h="$hyper_rps" -v wp="$weir_p99" -v hp="$hyper_p99" -v wc="$weir_cpu" -v hc="$hyper_cpu" -v m="$mode" \
    'BEGIN { printf "%-10s ratio weir/hyper: requests/s %.2fx, p99 %s, cpu per request %.2fx\n", m, w / h, (hp > 0 && wp > 0 ? sprintf("%.2fx", wp / hp) : "n/a"), wc / hc }'
  ratios=${ROUND_RATIOS[$mode]}
  printf '%-10s per-round requests/s ratios: %s\n' "$mode" "$ratios"
  printf '%-10s per-round ratio median %s, range %s\n' "$mode" \
    "$(tr ' ' '\n' <<<"$ratios" | awk NF | median_low)" "$(tr ' ' '\n' <<<"$ratios" | awk NF | range)"
done
echo
machine
