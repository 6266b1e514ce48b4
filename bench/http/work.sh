#!/usr/bin/env bash
# bench/http/work.sh: the work each server does per request, counted rather than timed.
#
# Throughput under wrk on a shared 2-core VM moves by ±20% between runs. Two counts do not:
# user-space instructions (valgrind's callgrind) and system calls (strace -c). Each server
# answers the same exact number of requests from drive.py, once with N and once with 2N
# requests; the difference divided by N is the cost of one request, free of start-up and
# shutdown costs. Instructions are not time (the kernel's work per syscall is not in them),
# which is why both counts are printed.
#
# Usage: bash bench/http/work.sh [N]   (default 20000)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-20000}
CONNECTIONS=8

source bench/common.sh
need valgrind valgrind
need strace strace
cargo build --release -q -p weir-http --example hello
cargo build --release -q --manifest-path bench/http/hyper-hello/Cargo.toml
declare -A BIN=([weir]=target/release/examples/hello [hyper]=bench/http/hyper-hello/target/release/hyper-hello)
declare -A PORT=([weir]=7091 [hyper]=7090)
OUT=$(mktemp -d)

# run TOOL SERVER MODE REQUESTS: runs the server under the tool, drives it, stops it (SIGINT).
run() {
  local tool=$1 server=$2 mode=$3 n=$4 pid
  local out="$OUT/$tool.$server.$mode.$n"
  case $tool in
    callgrind) valgrind --tool=callgrind --callgrind-out-file="$out" "${BIN[$server]}" "127.0.0.1:${PORT[$server]}" 2>/dev/null & ;;
    strace) strace -f -c -o "$out" "${BIN[$server]}" "127.0.0.1:${PORT[$server]}" 2>/dev/null & ;;
  esac
  pid=$!
  wait_port "${PORT[$server]}" 30
  python3 bench/http/drive.py "${PORT[$server]}" "$n" "$mode" "$CONNECTIONS"
  # Under strace the server is strace's child; valgrind runs it in its own process.
  local target=$pid
  if [ "$tool" = strace ]; then target=$(pgrep -P "$pid" | head -1); fi
  kill -INT "$target"; wait "$pid" || true
  case $tool in
    callgrind) awk '/^(summary|totals):/ {print $2; exit}' "$out" ;;
    # The summary's last line: % time, seconds, usecs/call, calls, [errors,] total.
    strace) awk '$NF == "total" {print $4}' "$out" ;;
  esac
}

printf '%-10s %-6s %22s %20s\n' mode server "instructions/request" "syscalls/request"
for mode in keepalive pipelined; do
  for server in hyper weir; do
    i1=$(run callgrind "$server" "$mode" "$N"); i2=$(run callgrind "$server" "$mode" $((2 * N)))
    s1=$(run strace "$server" "$mode" "$N"); s2=$(run strace "$server" "$mode" $((2 * N)))
    ipr=$(( (i2 - i1) / N ))
    spr=$(awk -v a="$s1" -v b="$s2" -v n="$N" 'BEGIN { printf "%.3f", (b - a) / n }')
    printf '%-10s %-6s %22d %20s\n' "$mode" "$server" "$ipr" "$spr"
    eval "${server}_i=$ipr; ${server}_s=$spr"
  done
  awk -v wi="$weir_i" -v hi="$hyper_i" -v ws="$weir_s" -v hs="$hyper_s" -v m="$mode" \
    'BEGIN { printf "%-10s ratio weir/hyper: instructions %.2fx, syscalls %.2fx\n", m, wi / hi, (hs > 0 ? ws / hs : 0) }'
done
rm -rf "$OUT"
