# Helpers every benchmark script uses, written once. Sourced from the repository root
# (`source bench/common.sh`, after the script's `cd`), directly or through a benchmark's own
# common.sh; it only defines functions (and an empty $server_pid), so sourcing it starts,
# builds and installs nothing.

# --- tools -------------------------------------------------------------------------------

# need COMMAND PACKAGE: installs Debian's PACKAGE when COMMAND is missing; fails (and so
# stops the script) when it cannot.
need() {
    command -v "$1" >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
}

# want COMMAND PACKAGE: as need, but only as root and never failing: the script does
# without COMMAND, or says it is missing (see require). COMMAND may be a path
# (/usr/bin/time, where `time` alone is the shell's keyword).
want() {
    command -v "$1" >/dev/null || [ "$(id -u)" != 0 ] \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; } \
        || true
}

# require WHO COMMAND...: exits with "WHO needs COMMAND" at the first COMMAND missing.
require() {
    local who=$1 tool
    shift
    for tool; do
        command -v "$tool" >/dev/null || { echo "$who needs $tool" >&2; exit 1; }
    done
}

# --- processes ---------------------------------------------------------------------------

# wait_port PORT [SECONDS]: returns once something listens on 127.0.0.1:PORT; after SECONDS
# (default 10) without, says so and exits.
wait_port() {
    local seconds=${2:-10}
    for _ in $(seq $(( seconds * 20 ))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
        sleep 0.05
    done
    echo "nothing listens on port $1 after $seconds s" >&2; exit 1
}

# stop_pids PID...: stops each process (SIGTERM) and waits for it to end. An empty PID, or
# one already gone, is skipped: safe in an EXIT trap whatever state the script died in.
stop_pids() {
    local pid
    for pid; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# The benchmark's server, for scripts that run one at a time: started in the background
# with `server_pid=$!`, stopped (when one runs) by stop_server.
server_pid=
stop_server() {
    stop_pids "$server_pid"
    server_pid=
}

# --- PostgreSQL --------------------------------------------------------------------------

# start_postgres: a throwaway PostgreSQL (scripts/postgres.sh: it exports
# WEIR_TEST_DATABASE_URL and defines stop_postgres, for the caller's EXIT trap), the server
# and every backend it forks kept on CPU 0.
start_postgres() {
    local pid
    source scripts/postgres.sh
    for pid in $(pgrep -f "$WEIR_TEST_PG_DIR/data"); do taskset -a -cp 0 "$pid" >/dev/null; done
}

# fresh_database: creates an empty database on that PostgreSQL; prints its URL. Fails,
# printing nothing, when it cannot (`set -e` does not reach into `$(fresh_database)`).
fresh_database() {
    local name="bench_$(date +%s%N)"
    psql -q "$WEIR_TEST_DATABASE_URL" -c "CREATE DATABASE $name" >/dev/null || return
    echo "${WEIR_TEST_DATABASE_URL%/*}/$name"
}

# --- numbers -----------------------------------------------------------------------------

# now: seconds since the epoch, to the nanosecond.
now() { date +%s.%N; }

# field KEY: the number after `"KEY":` in the JSON lines on stdin (the last one's, when
# several lines have it).
field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p" | tail -n 1; }

# median: the median of the numbers on stdin, one a line; the mean of the middle two when
# their count is even.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# median_low: the lower of the middle two instead, so always one of the numbers given.
median_low() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# div A B: A / B to two decimals.
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# ratio A B: A / B to two decimals with an x ("1.25x"); "0.00x" when B is not above zero.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }'; }

# machine: the line a benchmark's output ends with: cores, CPU model and today's date.
machine() {
    echo "machine: $(nproc) cores, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | sed 's/^ *//'); $(date -u +%Y-%m-%d)"
}
