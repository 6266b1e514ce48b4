# Shared by bench/jobs/run.sh and bench/jobs/worker.sh (sourced from the repository root):
# a throwaway PostgreSQL on CPU 0, graphile-worker installed, a release build of weir, a
# work directory, and the two sides' starters. The helpers every benchmark uses (median,
# div, field, stop_server, fresh_database) are bench/common.sh's.

source bench/common.sh
start_postgres

if [ ! -d bench/jobs/graphile/node_modules/graphile-worker ]; then
    (cd bench/jobs/graphile && npm ci --no-audit --no-fund --loglevel=error)
fi
cargo build -q --release -p weir
weir=target/release/weir

work=$(mktemp -d)
trap 'stop_server; rm -rf "$work"; stop_postgres' EXIT

# start_weir BIN [SERVE ARGS...]: `BIN serve` on CPU 1 at 127.0.0.1:17090, once it answers.
start_weir() {
    local bin=$1; shift
    taskset -c 1 "$bin" serve --http-addr 127.0.0.1:17090 --line-addr 127.0.0.1:17091 \
        --data-dir "$work/data-$RANDOM" --log-level warn "$@" >"$work/weir.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:17090/healthz >/dev/null && break; sleep 0.1; done
}

# run_graphile: one graphile-worker measurement on a fresh database; prints its JSON line.
run_graphile() {
    (cd bench/jobs/graphile && taskset -c 1 node bench.mjs "$(fresh_database)" "$jobs" "$concurrency")
}

