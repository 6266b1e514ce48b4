#!/usr/bin/env bash
# Pub/sub fan-out: Weir against Redis and NATS, in one run, with one load tool
# (bench/pubsub/load) that speaks each protocol.
#
#   bash bench/pubsub/run.sh [ROUNDS] [MESSAGES]
#
# Each server runs alone on CPU 0 (one core, as in docs/benchmarks.md), the tool on CPU 1,
# and each is restarted for every measurement (Redis varies ~10% between restarts).
#  1. flood: 1,000 subscribers, one publisher sending MESSAGES (default 10,000) of 100 bytes
#     as fast as it can, with no window (a burst arrives all at once; a window that waits
#     for the slowest subscriber would hide what a server drops); ROUNDS (default 3) rounds
#     in alternating order. Deliveries/s, what was delivered of what was expected (a lost
#     message is counted, never hidden), and publish→receive p50/p99.
#  2. steady: 2,000 messages/s to 1,000 subscribers for 10 s, ROUNDS rounds: p50/p99.
#  3. idle: as many idle subscriber connections as the file-descriptor limit allows (20,000
#     when it can be raised; this sandbox's hard limit is 20,000 per process, so 19,000),
#     and the server's resident memory per connection, for Weir over TCP, SSE and WebSocket.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
messages=${2:-10000}

source bench/pubsub/common.sh
need redis-server redis-server
need nats-server nats-server

cargo build -q --release -p weir
(cd bench/pubsub/load && cargo build -q --release)
load=bench/pubsub/load/target/release/pubsub-load
weir=target/release/weir

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
idle_connections=$(( $(ulimit -n) - 1000 ))
[ "$idle_connections" -gt 20000 ] && idle_connections=20000

work=$(mktemp -d)
trap 'stop_server; rm -rf "$work"' EXIT


# start_server NAME: starts it on CPU 0; sets $addr (and $server_pid).
start_server() {
    stop_server
    case "$1" in
        redis)
            taskset -c 0 redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no \
                --maxclients 30000 >"$work/redis.log" 2>&1 &
            server_pid=$!; addr=127.0.0.1:16379 ;;
        nats)
            taskset -c 0 nats-server -a 127.0.0.1 -p 14222 >"$work/nats.log" 2>&1 &
            server_pid=$!; addr=127.0.0.1:14222 ;;
        weir|weir-sse|weir-ws)
            rm -rf "$work/weir-data"
            taskset -c 0 "$weir" serve --worker-threads 1 --http-addr 127.0.0.1:17070 \
                --line-addr 127.0.0.1:17071 --data-dir "$work/weir-data" --log-level warn \
                --max-connections 30000 --line-max-connections 30000 \
                --max-connections-per-address 0 --line-max-connections-per-address 0 >"$work/weir.log" 2>&1 &
            server_pid=$!
            if [ "$1" = weir ]; then addr=127.0.0.1:17071; else addr=127.0.0.1:17070; fi ;;
    esac
    wait_port "${addr##*:}"
}


echo "== flood: 1,000 subscribers, $messages messages of 100 bytes at once per round, $rounds rounds"
declare -A rates p50s p99s lost
for round in $(seq "$rounds"); do
    if (( round % 2 )); then order="weir redis nats"; else order="nats redis weir"; fi
    for server in $order; do
        start_server "$server"
        line=$(taskset -c 1 "$load" flood "$server" "$addr" 1000 "$messages" 100 "$messages")
        stop_server
        echo "round $round $server: $line"
        lost[$server]=$(( ${lost[$server]:-0} + $(echo "$line" | load_field expected) - $(echo "$line" | load_field delivered) ))
        rates[$server]+="$(echo "$line" | load_field deliveries_per_sec) "
        p50s[$server]+="$(echo "$line" | load_field p50_us) "
        p99s[$server]+="$(echo "$line" | load_field p99_us) "
    done
done

echo "== steady: 2,000 messages/s to 1,000 subscribers for 10 s, $rounds rounds"
declare -A steady_p50 steady_p99
for round in $(seq "$rounds"); do
    if (( round % 2 )); then order="weir redis nats"; else order="nats redis weir"; fi
    for server in $order; do
        start_server "$server"
        line=$(taskset -c 1 "$load" steady "$server" "$addr" 1000 2000 10 100)
        stop_server
        echo "round $round $server: $line"
        steady_p50[$server]+="$(echo "$line" | load_field p50_us) "
        steady_p99[$server]+="$(echo "$line" | load_field p99_us) "
    done
done

echo "== idle: $idle_connections subscriber connections"
declare -A idle
for server in redis nats weir weir-sse weir-ws; do
    start_server "$server"
    line=$(taskset -c 1 "$load" idle "$server" "$addr" "$idle_connections" "$server_pid")
    stop_server
    echo "$server: $line"
    idle[$server]=$(echo "$line" | load_field kib_per_connection)
done

echo
echo "== summary (medians over $rounds rounds; server on one core)"
printf '%-6s %16s %12s %12s %14s\n' server deliveries/s p50_ms p99_ms lost_all_rounds
declare -A median_rate
for server in weir redis nats; do
    median_rate[$server]=$(echo ${rates[$server]} | tr ' ' '\n' | median)
    p50=$(echo ${p50s[$server]} | tr ' ' '\n' | median)
    p99=$(echo ${p99s[$server]} | tr ' ' '\n' | median)
    printf '%-6s %16.0f %12s %12s %14s\n' "$server" "${median_rate[$server]}" "$(div "$p50" 1000)" "$(div "$p99" 1000)" "${lost[$server]}"
done
best_anchor=$(printf '%s\n' "${median_rate[redis]}" "${median_rate[nats]}" | sort -g | tail -1)
echo "flood ratio weir / faster anchor: $(div "${median_rate[weir]}" "$best_anchor")"
declare -A steady_p99_median
for server in weir redis nats; do
    p50=$(echo ${steady_p50[$server]} | tr ' ' '\n' | median)
    steady_p99_median[$server]=$(echo ${steady_p99[$server]} | tr ' ' '\n' | median)
    echo "steady $server: p50 $(div "$p50" 1000) ms, p99 $(div "${steady_p99_median[$server]}" 1000) ms (medians; each round: ${steady_p99[$server]}us)"
done
echo "steady p99 ratio weir / redis: $(div "${steady_p99_median[weir]}" "${steady_p99_median[redis]}")"
echo "idle KiB per connection: redis ${idle[redis]}, nats ${idle[nats]}, weir tcp ${idle[weir]}, weir sse ${idle[weir-sse]}, weir ws ${idle[weir-ws]}"
