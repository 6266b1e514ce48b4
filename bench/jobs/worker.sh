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

source bench/jobs/common.sh

# run_side NAME: one measurement; prints its JSON line.
run_side() {
    case "$1" in
        graphile) run_graphile ;;
        weir|weir-postgres|weir-no-prefetch|weir-before)
            local bin=$weir extra=() store=()
            [ "$1" = weir-before ] && bin=$WEIR_BEFORE
            [ "$1" = weir-no-prefetch ] && extra=(0)
            [ "$1" = weir-postgres ] && store=(--database "$(fresh_database)")
            start_weir "$bin" "${store[@]}"
            python3 bench/jobs/worker_drive.py "$bin" http://127.0.0.1:17090 "$jobs" "$concurrency" "${extra[@]}"
            stop_server ;;
    esac
}


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
