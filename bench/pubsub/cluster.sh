#!/usr/bin/env bash
# Pub/sub across two nodes: Weir (two `weir serve` on one PostgreSQL, relayed with
# LISTEN/NOTIFY) against NATS (two nats-server joined by a cluster route), in one run, with
# the same load tool as run.sh (bench/pubsub/load).
#
#   bash bench/pubsub/cluster.sh [ROUNDS] [MESSAGES] [SUBSCRIBERS]   (defaults 3 20000 100)
#
# The subscribers connect to node 2 and the publisher to node 1 (pubsub-load with
# PUBLISH_ADDR), so every message crosses between the nodes once and is fanned out on node 2.
# Both nodes (and PostgreSQL) run on CPU 0, the tool on CPU 1; each cluster is started
# fresh for every measurement, and the rounds alternate the order.
#  1. flood: MESSAGES messages of 100 bytes, at most 500 in flight to the slowest
#     subscriber: deliveries/s and publish→receive p50/p99.
#  2. steady: 2,000 messages/s for 10 s: p50/p99.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
messages=${2:-20000}
subscribers=${3:-100}

source bench/pubsub/common.sh
need nats-server nats-server
need psql postgresql-client
start_postgres

cargo build -q --release -p weir
(cd bench/pubsub/load && cargo build -q --release)
load=bench/pubsub/load/target/release/pubsub-load
weir=target/release/weir

work=$(mktemp -d)
pids=()
stop_cluster() {
    stop_pids "${pids[@]}"
    pids=()
}
trap 'stop_cluster; rm -rf "$work"; stop_postgres' EXIT


# start_cluster NAME: two nodes on CPU 0; sets $subscribe_addr and $publish_addr.
start_cluster() {
    stop_cluster
    case "$1" in
        nats)
            for node in 1 2; do
                taskset -c 0 nats-server -a 127.0.0.1 -p "1422$node" --cluster_name bench \
                    --cluster "nats://127.0.0.1:1624$node" --routes "nats://127.0.0.1:16241,nats://127.0.0.1:16242" \
                    >"$work/nats-$node.log" 2>&1 &
                pids+=($!)
            done
            subscribe_addr=127.0.0.1:14222; publish_addr=127.0.0.1:14221 ;;
        weir)
            local database
            database=$(fresh_database)
            for node in 1 2; do
                taskset -c 0 "$weir" serve --worker-threads 1 --http-addr "127.0.0.1:1707$node" \
                    --line-addr "127.0.0.1:1708$node" --data-dir "$work/weir-$node-$RANDOM" \
                    --database "$database" --log-level warn \
                    >"$work/weir-$node.log" 2>&1 &
                pids+=($!)
                wait_port "1708$node"
            done
            subscribe_addr=127.0.0.1:17082; publish_addr=127.0.0.1:17081 ;;
    esac
    wait_port "${subscribe_addr##*:}"; wait_port "${publish_addr##*:}"
}

# The relay is at most once: a run that lost deliveries is reported, not averaged in silently.
check_complete() {
    local delivered expected
    delivered=$(echo "$1" | load_field delivered); expected=$(echo "$1" | load_field expected)
    if [ "$delivered" != "$expected" ]; then echo "warning: delivered $delivered of $expected" >&2; fi
}

declare -A rates p50s p99s steady_p50 steady_p99
echo "== flood across nodes: $subscribers subscribers, $messages messages of 100 bytes, $rounds rounds"
for round in $(seq "$rounds"); do
    if (( round % 2 )); then order="weir nats"; else order="nats weir"; fi
    for server in $order; do
        start_cluster "$server"
        line=$(PUBLISH_ADDR=$publish_addr taskset -c 1 "$load" flood "$server" "$subscribe_addr" "$subscribers" "$messages" 100 500)
        stop_cluster
        echo "round $round $server: $line"
        check_complete "$line"
        rates[$server]+="$(echo "$line" | load_field deliveries_per_sec) "
        p50s[$server]+="$(echo "$line" | load_field p50_us) "
        p99s[$server]+="$(echo "$line" | load_field p99_us) "
    done
done
echo "== steady across nodes: 2,000 messages/s to $subscribers subscribers for 10 s, $rounds rounds"
for round in $(seq "$rounds"); do
    if (( round % 2 )); then order="weir nats"; else order="nats weir"; fi
    for server in $order; do
        start_cluster "$server"
        line=$(PUBLISH_ADDR=$publish_addr taskset -c 1 "$load" steady "$server" "$subscribe_addr" "$subscribers" 2000 10 100)
        stop_cluster
        echo "round $round $server: $line"
        check_complete "$line"
        steady_p50[$server]+="$(echo "$line" | load_field p50_us) "
        steady_p99[$server]+="$(echo "$line" | load_field p99_us) "
    done
done

echo
echo "== summary (medians over $rounds rounds; both nodes on one core)"
printf '%-6s %14s %10s %10s %14s %14s\n' server deliveries/s p50_ms p99_ms steady_p50_ms steady_p99_ms
declare -A median_rate median_steady_p99
for server in weir nats; do
    median_rate[$server]=$(echo ${rates[$server]} | tr ' ' '\n' | median)
    median_steady_p99[$server]=$(echo ${steady_p99[$server]} | tr ' ' '\n' | median)
    printf '%-6s %14.0f %10s %10s %14s %14s\n' "$server" "${median_rate[$server]}" \
        "$(div "$(echo ${p50s[$server]} | tr ' ' '\n' | median)" 1000)" \
        "$(div "$(echo ${p99s[$server]} | tr ' ' '\n' | median)" 1000)" \
        "$(div "$(echo ${steady_p50[$server]} | tr ' ' '\n' | median)" 1000)" \
        "$(div "${median_steady_p99[$server]}" 1000)"
done
echo "flood ratio weir / nats: $(div "${median_rate[weir]}" "${median_rate[nats]}")"
echo "steady p99 ratio weir / nats: $(div "${median_steady_p99[weir]}" "${median_steady_p99[nats]}")"
machine
