#!/usr/bin/env bash
# Two Weir binaries side by side (a change against the commit before it), with the load
# tool of run.sh: flood and steady, the two binaries alternating in every round (ABBA), one
# core for the server and one for the tool, as run.sh does. Prints each round and the
# per-round ratios new / old.
#
#   bash bench/pubsub/ab.sh OLD_WEIR NEW_WEIR [ROUNDS] [MESSAGES]   (AB_MODES=steady: one mode)
set -euo pipefail
cd "$(dirname "$0")/../.."
old=$1 new=$2
rounds=${3:-6}
messages=${4:-10000}
modes=${AB_MODES:-flood steady}

source bench/pubsub/common.sh
(cd bench/pubsub/load && cargo build -q --release)
load=bench/pubsub/load/target/release/pubsub-load
work=$(mktemp -d)
trap 'stop_server; rm -rf "$work"' EXIT

start() { # binary
    rm -rf "$work/data"
    # Binaries from before the per-address limits have no such flags.
    local limits=()
    if "$1" serve --help | grep -q -- --max-connections-per-address; then
        limits=(--max-connections-per-address 0 --line-max-connections-per-address 0)
    fi
    taskset -c 0 "$1" serve --worker-threads 1 --http-addr 127.0.0.1:17070 \
        --line-addr 127.0.0.1:17071 --data-dir "$work/data" --log-level warn \
        --max-connections 30000 --line-max-connections 30000 "${limits[@]}" \
        >"$work/weir.log" 2>&1 &
    server_pid=$!
    wait_port 17071
}

for mode in $modes; do
    declare -A rate=() p99=()
    ratios=""
    for round in $(seq "$rounds"); do
        if (( round % 2 )); then order="old new"; else order="new old"; fi
        for side in $order; do
            if [ "$side" = old ]; then start "$old"; else start "$new"; fi
            if [ "$mode" = flood ]; then
                line=$(taskset -c 1 "$load" flood weir 127.0.0.1:17071 1000 "$messages" 100 "$messages")
            else
                line=$(taskset -c 1 "$load" steady weir 127.0.0.1:17071 1000 2000 10 100)
            fi
            stop_server
            echo "$mode round $round $side: $line"
            rate[$side]=$(echo "$line" | load_field deliveries_per_sec)
            p99[$side]=$(echo "$line" | load_field p99_us)
        done
        if [ "$mode" = flood ]; then
            ratios+="$(div "${rate[new]}" "${rate[old]}") "
        else
            ratios+="$(div "${p99[new]}" "${p99[old]}") "
        fi
    done
    what=$([ "$mode" = flood ] && echo "deliveries/s" || echo "p99")
    echo "$mode: per-round $what ratios new/old: $ratios"
    echo "$mode: median ratio $(echo $ratios | tr ' ' '\n' | median)"
done
echo "machine: $(machine)"
