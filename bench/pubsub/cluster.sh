#!/usr/bin/env bash
# Pub/sub across two nodes: Weir against NATS (two nats-server joined by a cluster route),
# in one run, with the same load tool as run.sh (bench/pubsub/load). Weir runs three ways,
# two `weir serve` on one PostgreSQL each time:
#   weir          routes (--route-addr): messages go node to node over TCP;
#   weir-pg       no routes: messages are relayed through PostgreSQL's LISTEN/NOTIFY;
#   weir-durable  routes, and the topic durable: every message is committed to the
#                 shared PostgreSQL log, and the other node reads it from there.
#
#   bash bench/pubsub/cluster.sh [ROUNDS] [MESSAGES] [SUBSCRIBERS]   (defaults 3 20000 10,100)
#
# SUBSCRIBERS is a comma-separated list: each count is measured in turn. The subscribers
# connect to node 2 and the publisher to node 1 (pubsub-load with PUBLISH_ADDR), so every
# message crosses between the nodes once and is fanned out on node 2. Both nodes (and
# PostgreSQL) run on CPU 0, the tool on CPU 1; each cluster is started fresh for every
# measurement, and the rounds alternate the order.
#  1. flood: MESSAGES messages of 100 bytes sent as fast as the publisher can, no window (a
#     burst arrives all at once): deliveries/s, publish→receive p50/p99, and what was lost.
#  2. steady: 2,000 messages/s for 10 s: p50/p99.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
messages=${2:-20000}
subscriber_counts=${3:-10,100}
servers="weir weir-pg weir-durable nats"

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
        weir|weir-pg|weir-durable)
            local database extra=()
            database=$(fresh_database)
            if [ "$1" = weir-durable ]; then extra+=(--durable bench); fi
            for node in 1 2; do
                local routes=()
                if [ "$1" != weir-pg ]; then routes=(--route-addr "127.0.0.1:1709$node"); fi
                taskset -c 0 "$weir" serve --worker-threads 1 --http-addr "127.0.0.1:1707$node" \
                    --line-addr "127.0.0.1:1708$node" --data-dir "$work/weir-$node-$RANDOM" \
                    --database "$database" --log-level warn "${extra[@]}" "${routes[@]}" \
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

# The relay is at most once: what a run lost is printed beside its rate.
lost_of() {
    local delivered expected
    delivered=$(echo "$1" | load_field delivered); expected=$(echo "$1" | load_field expected)
    echo $(( expected - delivered ))
}

# rotate N: the servers, starting at the Nth (the order changes from round to round).
rotate() {
    local list=($servers) n=$(( $1 % 4 ))
    echo "${list[@]:n} ${list[@]:0:n}"
}

# measure SERVER MODE ARGS...: one measurement on a fresh cluster; sets $line to the
# tool's line (not in a subshell, so that the EXIT trap knows the cluster's processes).
measure() {
    local server=$1; shift
    start_cluster "$server"
    line=$(PUBLISH_ADDR=$publish_addr taskset -c 1 "$load" "$1" "${server%%-*}" "$subscribe_addr" "${@:2}")
    stop_cluster
}

declare -A rates p50s p99s lost steady_p50 steady_p99
for subscribers in ${subscriber_counts//,/ }; do
    echo "== flood across nodes: $subscribers subscribers, $messages messages of 100 bytes, no window, $rounds rounds"
    for round in $(seq "$rounds"); do
        for server in $(rotate "$round"); do
            measure "$server" flood "$subscribers" "$messages" 100 "$messages"
            echo "round $round $server: $line"
            key="$server/$subscribers"
            rates[$key]+="$(echo "$line" | load_field deliveries_per_sec) "
            p50s[$key]+="$(echo "$line" | load_field p50_us) "
            p99s[$key]+="$(echo "$line" | load_field p99_us) "
            lost[$key]+="$(lost_of "$line") "
        done
    done
    echo "== steady across nodes: 2,000 messages/s to $subscribers subscribers for 10 s, $rounds rounds"
    for round in $(seq "$rounds"); do
        for server in $(rotate "$round"); do
            measure "$server" steady "$subscribers" 2000 10 100
            echo "round $round $server: $line"
            key="$server/$subscribers"
            steady_p50[$key]+="$(echo "$line" | load_field p50_us) "
            steady_p99[$key]+="$(echo "$line" | load_field p99_us) "
            lost[$key]+="$(lost_of "$line") "
        done
    done
done

echo
echo "== summary (medians over $rounds rounds; both nodes on one core; lost: summed over every run)"
for subscribers in ${subscriber_counts//,/ }; do
    printf '%-13s %6s %14s %10s %10s %14s %14s %8s\n' server subs deliveries/s p50_ms p99_ms steady_p50_ms steady_p99_ms lost
    declare -A median_rate median_steady_p99
    for server in $servers; do
        key="$server/$subscribers"
        median_rate[$server]=$(echo ${rates[$key]} | tr ' ' '\n' | median)
        median_steady_p99[$server]=$(echo ${steady_p99[$key]} | tr ' ' '\n' | median)
        printf '%-13s %6s %14.0f %10s %10s %14s %14s %8s\n' "$server" "$subscribers" "${median_rate[$server]}" \
            "$(div "$(echo ${p50s[$key]} | tr ' ' '\n' | median)" 1000)" \
            "$(div "$(echo ${p99s[$key]} | tr ' ' '\n' | median)" 1000)" \
            "$(div "$(echo ${steady_p50[$key]} | tr ' ' '\n' | median)" 1000)" \
            "$(div "${median_steady_p99[$server]}" 1000)" \
            "$(echo ${lost[$key]} | awk '{for (i = 1; i <= NF; i++) s += $i; print s + 0}')"
    done
    for server in weir weir-pg weir-durable; do
        echo "$subscribers subscribers, flood ratio $server / nats: $(div "${median_rate[$server]}" "${median_rate[nats]}") (goal >= 1.0 for weir and weir-durable)"
    done
    echo "$subscribers subscribers, steady p99 ratio weir / nats: $(div "${median_steady_p99[weir]}" "${median_steady_p99[nats]}")"
    unset median_rate median_steady_p99
done
machine
