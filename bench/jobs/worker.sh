#!/usr/bin/env bash
# `weir worker`, the worker a user runs, against graphile-worker 0.17.3, in one run.
#
#   bash bench/jobs/worker.sh [JOBS] [CONCURRENCY] [ROUNDS]
#
# run.sh measures the server with a purpose-built load tool; this measures the product's
# worker process: JOBS (default 20,000) `echo` jobs are enqueued first, then
# `weir worker --concurrency CONCURRENCY` (default 24) works them on the embedded SQLite
# default, server and worker on CPU 1 (bench/jobs/worker_drive.py): side `weir` with its
# defaults (it leases up to 100 jobs ahead of its slots when jobs are short), side
# `weir-postgres` the same on PostgreSQL (CPU 0, as graphile-worker's), side
# `weir-no-prefetch` with `--prefetch 0` (leases for free slots only; graphile-worker's
# local queue is 500 here, as in bench/jobs/run.sh). graphile-worker works
# as many no-op jobs with the same concurrency on PostgreSQL (CPU 0), its Node process on
# CPU 1 (bench/jobs/graphile). WEIR_BEFORE=PATH adds a side for another weir binary (an
# older build, to measure a change). Prints each run, then medians and ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=${1:-20000}
concurrency=${2:-24}
rounds=${3:-3}

source scripts/postgres.sh
for pid in $(pgrep -f "$WEIR_TEST_PG_DIR/data"); do taskset -a -cp 0 "$pid" >/dev/null; done
if [ ! -d bench/jobs/graphile/node_modules/graphile-worker ]; then
    (cd bench/jobs/graphile && npm ci --no-audit --no-fund --loglevel=error)
fi
cargo build -q --release -p weir
weir=target/release/weir

work=$(mktemp -d)
server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    server_pid=
}
trap 'stop_server; rm -rf "$work"; stop_postgres' EXIT
base_url=${WEIR_TEST_DATABASE_URL%/*}
fresh_database() {
    local name="bench_$(date +%s%N)"
    psql -q "$WEIR_TEST_DATABASE_URL" -c "CREATE DATABASE $name" >/dev/null
    echo "$base_url/$name"
}

# run_side NAME: one measurement; prints its JSON line.
run_side() {
    case "$1" in
        graphile)
            (cd bench/jobs/graphile && taskset -c 1 node bench.mjs "$(fresh_database)" "$jobs" "$concurrency") ;;
        weir|weir-postgres|weir-no-prefetch|weir-before)
            local bin=$weir extra=() store=()
            [ "$1" = weir-before ] && bin=$WEIR_BEFORE
            [ "$1" = weir-no-prefetch ] && extra=(0)
            [ "$1" = weir-postgres ] && store=(--database "$(fresh_database)")
            taskset -c 1 "$bin" serve --http-addr 127.0.0.1:17090 --line-addr 127.0.0.1:17091 \
                --data-dir "$work/data-$RANDOM" "${store[@]}" --log-level warn >"$work/weir.log" 2>&1 &
            server_pid=$!
            for _ in $(seq 100); do curl -sf http://127.0.0.1:17090/healthz >/dev/null && break; sleep 0.1; done
            python3 bench/jobs/worker_drive.py "$bin" http://127.0.0.1:17090 "$jobs" "$concurrency" "${extra[@]}"
            stop_server ;;
    esac
}

field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

sides="weir weir-postgres weir-no-prefetch graphile"
[ -n "${WEIR_BEFORE:-}" ] && sides="weir-before $sides"
declare -A rate enqueue ratio_before
echo "== $jobs no-op jobs through weir worker, concurrency $concurrency, $rounds round(s)"
for round in $(seq "$rounds"); do
    order=$sides
    (( round % 2 )) || order=$(echo "$sides" | tr ' ' '\n' | tac | tr '\n' ' ')
    declare -A this=()
    for side in $order; do
        line=$(run_side "$side")
        echo "round $round $side: $line"
        this[$side]=$(echo "$line" | field work_jobs_per_s)
        rate[$side]+="${this[$side]} "
        enqueue[$side]+="$(echo "$line" | field enqueue_jobs_per_s) "
    done
    [ -n "${WEIR_BEFORE:-}" ] && ratio_before[$round]=$(div "${this[weir]}" "${this[weir-before]}")
done

echo
echo "== summary (medians of jobs/s)"
printf '%-18s %10s %10s\n' side work enqueue
declare -A m
for side in $sides; do
    m[$side]=$(echo ${rate[$side]} | tr ' ' '\n' | median)
    printf '%-18s %10s %10s\n' "$side" "${m[$side]}" "$(echo ${enqueue[$side]} | tr ' ' '\n' | median)"
done
echo
echo "weir worker (SQLite) / graphile-worker (PostgreSQL): $(div "${m[weir]}" "${m[graphile]}")x"
echo "weir worker (PostgreSQL) / graphile-worker (PostgreSQL): $(div "${m[weir-postgres]}" "${m[graphile]}")x"
echo "weir worker --prefetch 0 / graphile-worker: $(div "${m[weir-no-prefetch]}" "${m[graphile]}")x"
if [ -n "${WEIR_BEFORE:-}" ]; then
    echo "weir / weir-before: $(div "${m[weir]}" "${m[weir-before]}")x (per round: ${ratio_before[*]})"
fi
