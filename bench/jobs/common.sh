# Shared by bench/jobs/run.sh and bench/jobs/worker.sh (sourced from the repository root):
# a throwaway PostgreSQL on CPU 0, graphile-worker installed, a release build of weir, a
# work directory, and the helpers both scripts use.

source scripts/postgres.sh
# The server and every backend it forks stay on CPU 0.
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

# fresh_database: creates an empty database; prints its URL.
base_url=${WEIR_TEST_DATABASE_URL%/*}
fresh_database() {
    local name="bench_$(date +%s%N)"
    psql -q "$WEIR_TEST_DATABASE_URL" -c "CREATE DATABASE $name" >/dev/null
    echo "$base_url/$name"
}

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

field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
