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
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=${1:-100000}
concurrency=${2:-24}
rounds=${3:-1}

source scripts/postgres.sh
# The server and every backend it forks stay on CPU 0.
for pid in $(pgrep -f "$WEIR_TEST_PG_DIR/data"); do taskset -a -cp 0 "$pid" >/dev/null; done

if [ ! -d bench/jobs/graphile/node_modules/graphile-worker ]; then
    (cd bench/jobs/graphile && npm ci --no-audit --no-fund --loglevel=error)
fi
cargo build -q --release -p weir --example jobs_load
cargo build -q --release -p weir
weir=target/release/weir
load=target/release/examples/jobs_load

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
        weir-sqlite|weir-postgres)
            local args=(--data-dir "$work/data-$RANDOM") analyze=
            if [ "$1" = weir-postgres ]; then
                local url; url=$(fresh_database)
                args+=(--database "$url")
                analyze="psql -q '$url' -c 'ANALYZE weir.job'"
            fi
            taskset -c 1 "$weir" serve --http-addr 127.0.0.1:17090 --line-addr 127.0.0.1:17091 \
                --log-level warn "${args[@]}" >"$work/weir.log" 2>&1 &
            server_pid=$!
            for _ in $(seq 100); do curl -sf http://127.0.0.1:17090/healthz >/dev/null && break; sleep 0.1; done
            # Each runner leases up to 100 jobs ahead of its free slots, as graphile-worker's
            # local queue (500 here) fetches ahead; 100 is the server's most per lease.
            WEIR_BENCH_LOCAL_QUEUE=100 WEIR_BENCH_AFTER_ENQUEUE="$analyze" \
                taskset -c 1 "$load" http://127.0.0.1:17090 "$jobs" "$concurrency"
            stop_server ;;
    esac
}

field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A work_rate enqueue_rate p50 p99
echo "== $jobs no-op jobs, concurrency $concurrency, $rounds round(s)"
for round in $(seq "$rounds"); do
    if (( round % 2 )); then order="weir-sqlite weir-postgres graphile"; else order="graphile weir-postgres weir-sqlite"; fi
    for side in $order; do
        line=$(run_side "$side")
        echo "round $round $side: $line"
        work_rate[$side]+="$(echo "$line" | field work_jobs_per_s) "
        enqueue_rate[$side]+="$(echo "$line" | field enqueue_jobs_per_s) "
        p50[$side]+="$(echo "$line" | field latency_p50_ms) "
        p99[$side]+="$(echo "$line" | field latency_p99_ms) "
    done
done

div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "== summary (medians)"
printf '%-14s %12s %12s %9s %9s\n' side enqueue/s work/s p50_ms p99_ms
declare -A m_work m_p99
for side in weir-sqlite weir-postgres graphile; do
    m_work[$side]=$(echo ${work_rate[$side]} | tr ' ' '\n' | median)
    m_p99[$side]=$(echo ${p99[$side]} | tr ' ' '\n' | median)
    printf '%-14s %12s %12s %9s %9s\n' "$side" "$(echo ${enqueue_rate[$side]} | tr ' ' '\n' | median)" \
        "${m_work[$side]}" "$(echo ${p50[$side]} | tr ' ' '\n' | median)" "${m_p99[$side]}"
done
echo
echo "work rate, weir-postgres / graphile: $(div "${m_work[weir-postgres]}" "${m_work[graphile]}")x (goal >= 1.2)"
echo "work rate, weir-sqlite / graphile:   $(div "${m_work[weir-sqlite]}" "${m_work[graphile]}")x (goal >= 2)"
echo "p99 enqueue->start, weir-postgres / graphile: $(div "${m_p99[weir-postgres]}" "${m_p99[graphile]}")x (goal <= 1)"
echo "p99 enqueue->start, weir-sqlite / graphile:   $(div "${m_p99[weir-sqlite]}" "${m_p99[graphile]}")x (goal <= 1)"
