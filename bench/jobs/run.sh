#!/usr/bin/env bash
# Background jobs: Weir (SQLite, and PostgreSQL) against graphile-worker 0.17.3 on the same
# PostgreSQL, in one run.
#
#   bash bench/jobs/run.sh [JOBS] [CONCURRENCY] [ROUNDS]
#
# Each side enqueues JOBS (default 100,000) no-op jobs in batches of 1,000, works them with
# CONCURRENCY (default 24) jobs in flight, then measures enqueue→start latency with 1,000
# jobs arriving at 100 per second. PostgreSQL runs on CPU 0; everything else (Weir and its
# load tool, or graphile-worker's Node process) on CPU 1. Both sides ANALYZE the jobs table
# between enqueueing and working. Prints each run's JSON line, then medians and ratios.
# Weir's SQLite side runs twice: with the default `sqlite.synchronous = full` (an answered
# enqueue survives a power cut) and with `normal` (it survives kill -9), to show what the
# durable default costs.
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=${1:-100000}
concurrency=${2:-24}
rounds=${3:-1}

source bench/jobs/common.sh
cargo build -q --release -p weir --example jobs_load
load=target/release/examples/jobs_load

# run_side NAME: one measurement; prints its JSON line.
run_side() {
    case "$1" in
        graphile) run_graphile ;;
        weir-sqlite|weir-sqlite-normal|weir-postgres)
            local args=() analyze=
            if [ "$1" = weir-sqlite-normal ]; then
                args+=(--sqlite-synchronous normal)
            fi
            if [ "$1" = weir-postgres ]; then
                local url; url=$(fresh_database)
                args+=(--database "$url")
                analyze="psql -q '$url' -c 'ANALYZE weir.job'"
            fi
            start_weir "$weir" "${args[@]}"
            # Each runner leases up to 100 jobs ahead of its free slots, as graphile-worker's
            # local queue (500 here) fetches ahead; 100 is the server's most per lease.
            WEIR_BENCH_LOCAL_QUEUE=100 WEIR_BENCH_AFTER_ENQUEUE="$analyze" \
                taskset -c 1 "$load" http://127.0.0.1:17090 "$jobs" "$concurrency"
            stop_server ;;
    esac
}

declare -A work_rate enqueue_rate p50 p99
echo "== $jobs no-op jobs, concurrency $concurrency, $rounds round(s)"
for round in $(seq "$rounds"); do
    if (( round % 2 )); then order="weir-sqlite weir-sqlite-normal weir-postgres graphile"; else order="graphile weir-postgres weir-sqlite-normal weir-sqlite"; fi
    for side in $order; do
        line=$(run_side "$side")
        echo "round $round $side: $line"
        work_rate[$side]+="$(echo "$line" | field work_jobs_per_s) "
        enqueue_rate[$side]+="$(echo "$line" | field enqueue_jobs_per_s) "
        p50[$side]+="$(echo "$line" | field latency_p50_ms) "
        p99[$side]+="$(echo "$line" | field latency_p99_ms) "
    done
done

echo
echo "== summary (medians)"
printf '%-14s %12s %12s %9s %9s\n' side enqueue/s work/s p50_ms p99_ms
declare -A m_work m_p99 m_enqueue
for side in weir-sqlite weir-sqlite-normal weir-postgres graphile; do
    m_work[$side]=$(echo ${work_rate[$side]} | tr ' ' '\n' | median)
    m_enqueue[$side]=$(echo ${enqueue_rate[$side]} | tr ' ' '\n' | median)
    m_p99[$side]=$(echo ${p99[$side]} | tr ' ' '\n' | median)
    printf '%-14s %12s %12s %9s %9s\n' "$side" "$(echo ${enqueue_rate[$side]} | tr ' ' '\n' | median)" \
        "${m_work[$side]}" "$(echo ${p50[$side]} | tr ' ' '\n' | median)" "${m_p99[$side]}"
done
echo
echo "enqueue, weir-postgres / graphile: $(div "${m_enqueue[weir-postgres]}" "${m_enqueue[graphile]}")x (goal >= 1)"
echo "enqueue, weir-sqlite (full) / graphile:   $(div "${m_enqueue[weir-sqlite]}" "${m_enqueue[graphile]}")x (goal >= 1)"
echo "enqueue, weir-sqlite full / normal:  $(div "${m_enqueue[weir-sqlite]}" "${m_enqueue[weir-sqlite-normal]}")x (the cost of surviving a power cut)"
echo "work rate, weir-sqlite full / normal: $(div "${m_work[weir-sqlite]}" "${m_work[weir-sqlite-normal]}")x"
echo "work rate, weir-postgres / graphile: $(div "${m_work[weir-postgres]}" "${m_work[graphile]}")x (goal >= 1.2)"
echo "work rate, weir-sqlite / graphile:   $(div "${m_work[weir-sqlite]}" "${m_work[graphile]}")x (goal >= 2)"
echo "p99 enqueue->start, weir-postgres / graphile: $(div "${m_p99[weir-postgres]}" "${m_p99[graphile]}")x (goal <= 1)"
echo "p99 enqueue->start, weir-sqlite / graphile:   $(div "${m_p99[weir-sqlite]}" "${m_p99[graphile]}")x (goal <= 1)"
