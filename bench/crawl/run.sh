#!/usr/bin/env bash
# bench/crawl: `weir crawl` against spider (a Rust crate), Scrapy and wget, on the same local
# site in one run.
#
#   bash bench/crawl/run.sh [PAGES] [HOSTS] [CONCURRENCY] [ROUNDS]   (defaults 5000 5 64 3)
#
# `weir demo-site --profile static` serves PAGES pages over HOSTS host addresses
# (127.0.0.2, …) on CPU 0, robots.txt and a sitemap on every host. Each round, every crawler
# in turn crawls the whole site from a cold start on CPU 1, robots.txt obeyed, CONCURRENCY
# requests in flight. The server is the judge: its request log (GET /__demo/log) tells which
# pages each crawler fetched. Prints one JSON line per crawler per round, then medians and
# the ratio of Weir's pages/s to each anchor. See bench/crawl/README.md for the fairness
# choices.
#
# Environment: CRAWLERS (default "weir spider scrapy wget wget-per-host") picks crawlers;
# NO_BUILD=1 skips the cargo builds, with WEIR_BIN / SPIDER_BIN naming the binaries;
# CRAWL_TIMEOUT (default 900 s) bounds each crawl.
set -euo pipefail
cd "$(dirname "$0")/../.."
pages=${1:-5000}
hosts=${2:-5}
concurrency=${3:-64}
rounds=${4:-3}
crawlers=${CRAWLERS:-weir spider scrapy wget wget-per-host}
crawl_timeout=${CRAWL_TIMEOUT:-900}
here=bench/crawl
source bench/common.sh

CPUS=$(nproc)
SERVER_CPU=0
CRAWLER_CPU=$(( CPUS > 1 ? 1 : 0 ))

# --- tools -------------------------------------------------------------------------------
want wget wget
want curl curl
want /usr/bin/time time
require bench/crawl wget curl taskset python3

# measure OUT CMD...: runs CMD and writes "peak_rss_kb cpu_seconds" of it (and of the
# children it waited for) to OUT. GNU time when there is one, else Python's wait4.
if [ -x /usr/bin/time ]; then
    measure() {
        local out=$1; shift
        local status=0
        /usr/bin/time -f '%M %U %S' -o "$out-time" "$@" || status=$?
        # The last line: GNU time puts "Command exited with non-zero status" before it.
        tail -n 1 "$out-time" | awk '{ printf "%d %.2f\n", $1, $2 + $3 }' >"$out"
        rm -f "$out-time"
        return "$status"
    }
else
    echo "warning: no /usr/bin/time (Debian package time): peak RSS comes from Python's wait4," \
        "which never reports less than the Python launcher's own RSS at spawn (10-15 MB)" >&2
    measure() {
        local out=$1; shift
        python3 -c '
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    out.write("%d %.2f\n" % (usage.ru_maxrss, usage.ru_utime + usage.ru_stime))
sys.exit(child.returncode if child.returncode >= 0 else 128 - child.returncode)
' "$out" "$@"
    }
fi

# --- builds and installs -----------------------------------------------------------------
WEIR_BIN=${WEIR_BIN:-target/release/weir}
SPIDER_BIN=${SPIDER_BIN:-$here/spider/target/release/spider-bench}
if [ -z "${NO_BUILD:-}" ]; then
    echo "building (release)..." >&2
    cargo build -q --release -p weir
    if [[ " $crawlers " == *" spider "* ]]; then
        cargo build -q --release --manifest-path "$here/spider/Cargo.toml"
    fi
fi
if [[ " $crawlers " == *" scrapy "* ]] && ! cmp -s "$here/requirements.txt" "$here/.venv/requirements.txt"; then
    echo "installing Scrapy into $here/.venv..." >&2
    [ -x "$here/.venv/bin/pip" ] || python3 -m venv "$here/.venv"
    "$here/.venv/bin/pip" install -q -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$here/.venv/requirements.txt"
fi

# --- the site ----------------------------------------------------------------------------
work=$(mktemp -d)
# The demo site is the benchmark's server: $server_pid, stopped by stop_server.
trap 'stop_server; rm -rf "$work"' EXIT

taskset -c "$SERVER_CPU" "$WEIR_BIN" demo-site --profile static --pages "$pages" --hosts "$hosts" \
    --port 0 >"$work/bases" 2>"$work/site.log" &
server_pid=$!
for _ in $(seq 200); do
    [ "$(wc -l <"$work/bases")" -ge "$hosts" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/site.log" >&2; exit 1; }
    sleep 0.05
done
mapfile -t bases <"$work/bases"
[ "${#bases[@]}" -eq "$hosts" ] || { echo "demo site printed ${#bases[@]} of $hosts hosts" >&2; exit 1; }
start_url=${bases[0]}
port=${start_url##*:}; port=${port%/}
log_url="${start_url}__demo/log"
host_list=$(printf '%s\n' "${bases[@]}" | sed 's|^http://\([^:/]*\).*|\1|' | paste -sd, -)

# Every allowed page: each host's home page and the pages its sitemap lists (the static site
# has no disallowed page). Read from the site itself, then checked against PAGES + HOSTS.
expected=0
for base in "${bases[@]}"; do
    listed=$(curl -sf "${base}sitemap.xml" | grep -c '<loc>' || true)
    expected=$(( expected + listed + 1 ))
done
if [ "$expected" -ne $(( pages + hosts )) ]; then
    echo "warning: the site serves $expected pages, not PAGES + HOSTS = $(( pages + hosts ))" >&2
fi

# fetch_log FILE: the server's request log (JSON lines; the last one is {"not_logged":N}).
fetch_log() {
    curl -sS -f --retry 5 --retry-all-errors --retry-delay 1 -o "$1" "$log_url" || {
        echo "cannot read the demo site's request log at $log_url" >&2; exit 1; }
}
# log_lines: lines in the log now (entries, plus the last not_logged line).
log_lines() { fetch_log "$work/log"; wc -l <"$work/log"; }

# count_pages FROM: "pages requests not_logged" for the log entries from line FROM on: pages
# are distinct page URLs (/ and /p/K on K's own host), requests all requests (robots.txt,
# sitemaps and repeats included).
count_pages() {
    fetch_log "$work/log"
    tail -n +"$1" "$work/log" | python3 -c '
import json, re, sys
pages, hosts = int(sys.argv[1]), int(sys.argv[2])
page = re.compile(r"^http://127\.0\.0\.(\d+):\d+/(?:p/(\d+))?$")
seen, requests, not_logged = set(), 0, 0
for line in sys.stdin:
    entry = json.loads(line)
    if "not_logged" in entry:
        not_logged = entry["not_logged"]
        continue
    requests += 1
    m = page.match(entry["url"])
    if m:
        host = int(m.group(1)) - 2
        if m.group(2) is None or (int(m.group(2)) < pages and int(m.group(2)) % hosts == host):
            seen.add(entry["url"])
print(len(seen), requests, not_logged)
' "$pages" "$hosts"
}

# run_crawler NAME: one crawl; leaves "seconds reported_pages" in $work/run and the
# measurement in $work/usage.
run_crawler() {
    local name=$1 began ended reported=null
    local pin=(taskset -c "$CRAWLER_CPU" timeout "$crawl_timeout")
    rm -rf "$work/out" && mkdir -p "$work/out"
    began=$(now)
    case "$name" in
        weir)
            measure "$work/usage" "${pin[@]}" "$WEIR_BIN" crawl "$start_url" \
                --concurrency "$concurrency" --per-host "$concurrency" \
                --out "$work/out/weir.jsonl" 2>"$work/out/stderr" || true
            ended=$(now)
            reported=$(tail -n 1 "$work/out/weir.jsonl" | field pages) ;;
        spider)
            # One start URL per host: spider crawls each host with its own Website.
            measure "$work/usage" "${pin[@]}" "$SPIDER_BIN" "$concurrency" "${bases[@]}" \
                >"$work/out/stdout" 2>"$work/out/stderr" || true
            ended=$(now)
            reported=$(field pages <"$work/out/stdout") ;;
        scrapy)
            measure "$work/usage" "${pin[@]}" "$here/.venv/bin/python" "$here/scrapy_bench.py" \
                "$concurrency" "$start_url" >"$work/out/stdout" 2>"$work/out/stderr" || true
            ended=$(now)
            reported=$(field pages <"$work/out/stdout") ;;
        wget)
            # One wget (it has no concurrency) allowed onto every demo host: links from
            # the start page reach the whole site.
            measure "$work/usage" "${pin[@]}" wget -q -r -l inf -nd --delete-after -e robots=on \
                -H -D "$host_list" -P "$work/out/files" "$start_url" 2>"$work/out/stderr" || true
            ended=$(now) ;;
        wget-per-host)
            # One wget per host, in parallel, each kept on its host (no -H). Together they
            # reach only what each host's own links lead to: the demo site's tree and extra
            # links mostly cross hosts, so this misses most pages (reported as incomplete).
            local pids=() i=0
            for base in "${bases[@]}"; do
                measure "$work/usage.$i" "${pin[@]}" wget -q -r -l inf -nd --delete-after \
                    -e robots=on -P "$work/out/files.$i" "$base" 2>"$work/out/stderr.$i" &
                pids+=($!); i=$((i + 1))
            done
            for pid in "${pids[@]}"; do wait "$pid" || true; done
            ended=$(now)
            # Memory: the sum of each process's peak; CPU: the sum.
            cat "$work"/usage.[0-9]* | awk '{ rss += $1; cpu += $2 } END { printf "%d %.2f\n", rss, cpu }' >"$work/usage"
            rm -f "$work"/usage.[0-9]* ;;
        *) echo "unknown crawler $name" >&2; exit 1 ;;
    esac
    echo "$(awk -v a="$began" -v b="$ended" 'BEGIN { printf "%.3f", b - a }') ${reported:-null}" >"$work/run"
}

declare -A rate secs fetched rss cpu_per_page complete_rounds
read -r -a order <<<"$crawlers"
echo "== $pages pages + $hosts home pages on $hosts hosts (port $port), $expected allowed pages;" \
    "concurrency $concurrency, $rounds round(s); server on CPU $SERVER_CPU, crawlers on CPU $CRAWLER_CPU"
for round in $(seq "$rounds"); do
    # Odd rounds in the given order, even rounds reversed, so drift favours no crawler.
    if (( round % 2 )); then list=("${order[@]}"); else list=(); for ((i=${#order[@]}-1; i>=0; i--)); do list+=("${order[i]}"); done; fi
    for name in "${list[@]}"; do
        from=$(log_lines)
        run_crawler "$name"
        read -r seconds reported <"$work/run"
        counts=$(count_pages "$from")
        read -r got requests not_logged <<<"$counts"
        read -r peak_kb cpu_s <"$work/usage" || { echo "$name: no usage measured" >&2; peak_kb=0 cpu_s=0; }
        if [ "$not_logged" != 0 ]; then echo "warning: the server log is full ($not_logged not logged)" >&2; fi
        line=$(awk -v r="$round" -v n="$name" -v s="$seconds" -v p="$got" -v e="$expected" \
            -v q="$requests" -v m="$peak_kb" -v c="$cpu_s" -v rep="$reported" 'BEGIN {
            printf "{\"round\":%d,\"crawler\":\"%s\",\"seconds\":%.3f,\"pages\":%d,\"expected\":%d,", r, n, s, p, e
            printf "\"complete\":%s,\"pages_per_s\":%.1f,\"requests\":%d,\"peak_rss_kb\":%d,", (p == e ? "true" : "false"), (s > 0 ? p / s : 0), q, m
            printf "\"cpu_s\":%.2f,\"cpu_us_per_page\":%.0f,\"reported_pages\":%s}", c, (p > 0 ? c * 1e6 / p : 0), rep }')
        echo "$line"
        rate[$name]+="$(awk -v s="$seconds" -v p="$got" 'BEGIN { printf "%.3f", (s > 0 ? p / s : 0) }') "
        secs[$name]+="$seconds "
        fetched[$name]+="$got "
        rss[$name]+="$peak_kb "
        cpu_per_page[$name]+="$(awk -v c="$cpu_s" -v p="$got" 'BEGIN { printf "%.1f", (p > 0 ? c * 1e6 / p : 0) }') "
        if [ "$got" -eq "$expected" ]; then complete_rounds[$name]=$(( ${complete_rounds[$name]:-0} + 1 )); fi
    done
done

echo
echo "== summary (medians of $rounds round(s))"
printf '%-14s %10s %9s %12s %12s %13s %s\n' crawler pages/s seconds pages peak_rss_MB cpu_us/page "every page fetched"
declare -A m_rate m_pages
for name in "${order[@]}"; do
    m_rate[$name]=$(echo ${rate[$name]} | tr ' ' '\n' | median)
    m_pages[$name]=$(echo ${fetched[$name]} | tr ' ' '\n' | median)
    printf '%-14s %10.0f %9.3f %12s %12.1f %13.0f %s\n' "$name" "${m_rate[$name]}" \
        "$(echo ${secs[$name]} | tr ' ' '\n' | median)" "${m_pages[$name]}/$expected" \
        "$(echo ${rss[$name]} | tr ' ' '\n' | median | awk '{ print $1 / 1024 }')" \
        "$(echo ${cpu_per_page[$name]} | tr ' ' '\n' | median)" \
        "$( [ "${complete_rounds[$name]:-0}" -eq "$rounds" ] && echo yes || echo "no (${complete_rounds[$name]:-0} of $rounds rounds)")"
done
if [[ " $crawlers " == *" weir "* ]]; then
    echo
    for name in "${order[@]}"; do
        [ "$name" = weir ] && continue
        note=
        [ "${complete_rounds[$name]:-0}" -eq "$rounds" ] || note=" (its crawl was incomplete: ${m_pages[$name]} of $expected pages)"
        [ "$name" = spider ] && note+=" (goal >= 1.5, with every page fetched)"
        awk -v w="${m_rate[weir]}" -v a="${m_rate[$name]}" -v n="$name" -v note="$note" \
            'BEGIN { printf "pages/s, weir / %-13s %s%s\n", n ":", (a > 0 ? sprintf("%.2fx", w / a) : "n/a"), note }'
    done
fi
echo
machine
