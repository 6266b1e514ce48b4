#!/usr/bin/env bash
# bench/files: `weir files` (async, and its synchronous --sync baseline) against wc, sha256sum
# and b3sum run through `find | xargs -P`, on the same generated tree in the page cache.
#
#   bash bench/files/run.sh [SMALL_FILES] [LARGE_FILES] [LARGE_MIB] [ROUNDS]   (defaults 20000 3 200 3)
#
# The tree: SMALL_FILES text files of 0-16 KiB, 100 to a directory, plus LARGE_FILES text
# files of LARGE_MIB MiB each (make_tree.py, deterministic from SEED). It is kept under
# /tmp/weir-bench-files/ keyed by the parameters and reused by later runs. Every task (count,
# sha256, blake3) is first checked against its external tool; then each round times, per
# task, `weir files TREE --count|--hash ALG` (async, --jobs = CPU count), the same with
# --sync, and `find TREE -type f -print0 | xargs -0 -P<nproc> -n 256 wc|sha256sum|b3sum`,
# every output to /dev/null. Prints one JSON line per run, then medians and ratios, then the
# machine. See bench/files/README.md for the fairness choices.
#
# Environment: TASKS (default "count sha256 blake3"); NO_BUILD=1 skips the cargo build, with
# WEIR_BIN naming the binary (default target/release/weir); WEIR_JOBS adds --jobs N to the
# async runs; SEED (default 1); CACHE_DIR (default /tmp/weir-bench-files) holds the cached
# trees; NO_CACHE=1 writes the tree to a temporary directory removed at exit instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
small=${1:-20000}
large=${2:-3}
large_mib=${3:-200}
rounds=${4:-3}
tasks=${TASKS:-count sha256 blake3}
seed=${SEED:-1}
cache_root=${CACHE_DIR:-/tmp/weir-bench-files}
here=bench/files
source bench/common.sh
# The tree is ASCII, where `weir files` and wc in any locale count the same words; wc is
# fastest in the C locale (in a UTF-8 one it decodes multibyte characters).
export LC_ALL=C

CPUS=$(nproc)
PAR=$CPUS   # xargs -P: as many external processes at once as weir's default --jobs
BATCH=256   # xargs -n: files per external process

# --- tools -------------------------------------------------------------------------------
require bench/files python3 find xargs wc sha256sum
if [[ " $tasks " == *" blake3 "* ]] && ! command -v b3sum >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing b3sum (apt-get)..." >&2
    want b3sum b3sum 2>/dev/null
fi
if [[ " $tasks " == *" blake3 "* ]] && ! command -v b3sum >/dev/null; then
    echo "warning: no b3sum: the blake3 task times weir only, with no external anchor" >&2
fi
if [[ " $tasks " == *" sha256 "* ]] && ! command -v openssl >/dev/null; then
    echo "warning: no openssl: sha256's only anchor is sha256sum (no SHA instructions)" >&2
fi

WEIR_BIN=${WEIR_BIN:-target/release/weir}
if [ -z "${NO_BUILD:-}" ]; then
    echo "building (release)..." >&2
    cargo build -q --release -p weir
fi
[ -x "$WEIR_BIN" ] || { echo "no weir binary at $WEIR_BIN" >&2; exit 1; }
async_args=()
if [ -n "${WEIR_JOBS:-}" ]; then async_args+=(--jobs "$WEIR_JOBS"); fi

work=$(mktemp -d)
temp_tree=
trap 'rm -rf "$work" ${temp_tree:+"$temp_tree"}' EXIT

# --- the tree ----------------------------------------------------------------------------
# Bump TREE_VERSION when make_tree.py's output changes: no stale cached tree is reused.
TREE_VERSION=1
if [ -n "${NO_CACHE:-}" ]; then
    temp_tree=$(mktemp -d /tmp/weir-bench-files-tmp.XXXXXX)
    tree=$temp_tree/tree
    origin="temporary, removed at exit"
else
    tree=$cache_root/v$TREE_VERSION-s$small-l${large}x${large_mib}mib-seed$seed
    origin="cached, reused"
fi
# The marker of a finished tree sits beside it, not in it: weir would count it.
if [ ! -f "$tree.complete" ] || [ ! -d "$tree" ]; then
    echo "generating the tree in $tree..." >&2
    rm -rf "$tree" "$tree.partial" "$tree.complete"
    mkdir -p "$(dirname "$tree")"
    began=$(date +%s.%N)
    python3 "$here/make_tree.py" "$tree.partial" "$small" "$large" "$large_mib" "$seed" >/dev/null
    mv "$tree.partial" "$tree"
    touch "$tree.complete"
    echo "generated in $(awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" >&2
    [ -n "${NO_CACHE:-}" ] || origin="cached, generated now"
fi
files=$(find "$tree" -type f | wc -l)
bytes=$(find "$tree" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }')
dirs=$(find "$tree" -type d | wc -l)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
expected_files=$(( small + large ))
[ "$files" -eq "$expected_files" ] || { echo "the tree has $files files, not $expected_files" >&2; exit 1; }

# --- page cache --------------------------------------------------------------------------
# Everything is timed with the tree in memory: check there is room, and read it all first.
avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
need_kb=$(( bytes / 1024 + 1024 * 1024 ))   # the tree, plus 1 GiB for the programs
if [ "$avail_kb" -lt "$need_kb" ]; then
    echo "warning: $(( avail_kb / 1024 )) MiB of memory available, the tree needs $(( need_kb / 1024 )) MiB" \
        "with headroom: runs may read from disk and the timings mean little" >&2
fi
warm() { find "$tree" -type f -print0 | xargs -0 -P "$PAR" -n "$BATCH" cat >/dev/null; }
warm

# --- the programs ------------------------------------------------------------------------
# The external tools of a task, the first the reference of its check. openssl goes beside
# sha256sum: Debian's sha256sum is portable C, without the CPU's SHA instructions that
# OpenSSL (and weir) use, so it alone would be a weak anchor.
tools_for() { case "$1" in count) echo wc ;; sha256) echo sha256sum openssl ;; blake3) echo b3sum ;; esac; }
# tool_cmd TOOL: the command xargs runs. sha256sum and b3sum print "hash  path", openssl
# with -r "hash *path" (the checks turn it into the former).
tool_cmd() { case "$1" in openssl) echo "openssl dgst -sha256 -r" ;; *) echo "$1" ;; esac; }
installed_tools() { local t; for t in $(tools_for "$1"); do command -v "$t" >/dev/null && echo "$t"; done; true; }
weir_flags() { case "$1" in count) echo --count ;; *) echo "--hash $1" ;; esac; }
programs_for() { echo weir-async weir-sync $(installed_tools "$1"); }

# run_program TASK PROGRAM: one run, output to /dev/null; fails when the program fails.
run_program() {
    local task=$1 program=$2
    # shellcheck disable=SC2046 # weir_flags is words on purpose
    case "$program" in
        weir-async) "$WEIR_BIN" files "$tree" $(weir_flags "$task") "${async_args[@]}" >/dev/null ;;
        weir-sync) "$WEIR_BIN" files "$tree" $(weir_flags "$task") --sync >/dev/null ;;
        *) find "$tree" -type f -print0 | xargs -0 -P "$PAR" -n "$BATCH" $(tool_cmd "$program") >/dev/null ;;
    esac
}

# --- correctness, once per task ----------------------------------------------------------
# The external tools run one process at a time here (no -P): processes running at once
# write into the one pipe in pieces that cut lines in two (openssl a line in several writes,
# the others 4 KiB buffers). The timed runs write to /dev/null, where that does not matter.

# json_hashes: sorted "hash  path" lines from weir's --json output on stdin; fails on an error entry.
json_hashes() {
    python3 -c '
import json, sys
out = []
for line in sys.stdin:
    entry = json.loads(line)
    if "total" in entry:
        continue
    if "error" in entry or "hash" not in entry:
        sys.exit("weir reported: %r" % entry)
    out.append("%s  %s" % (entry["hash"], entry["path"]))
out.sort()
sys.stdout.write("".join(line + "\n" for line in out))
'
}

check_task() {
    local task=$1 tool mode tools
    case "$task" in
        count)
            # Per-file counts summed (wc's own "total" lines left out): words as well as lines
            # and bytes, which `cat | wc` would get wrong where files join mid-word.
            find "$tree" -type f -print0 | xargs -0 -n "$BATCH" wc \
                | awk '$4 != "total" { l += $1; w += $2; c += $3; n++ } END { printf "%d %d %d %d\n", l, w, c, n }' \
                >"$work/expected"
            for mode in async sync; do
                local flags=(--count)
                [ "$mode" = sync ] && flags+=(--sync)
                "$WEIR_BIN" files "$tree" "${flags[@]}" | tail -n 1 \
                    | awk '{ printf "%d %d %d %d\n", $1, $2, $3, $5 }' >"$work/got"
                if ! cmp -s "$work/expected" "$work/got"; then
                    echo "count check failed (weir $mode): wc gives lines words bytes files" \
                        "$(cat "$work/expected"), weir $(cat "$work/got")" >&2
                    exit 1
                fi
            done
            read -r l w c n <"$work/expected"
            echo "check count: weir async and --sync totals = wc's per-file sums ($l lines, $w words, $c bytes, $n files)" ;;
        sha256|blake3)
            for mode in async sync; do
                local flags=(--hash "$task" --json)
                [ "$mode" = sync ] && flags+=(--sync)
                "$WEIR_BIN" files "$tree" "${flags[@]}" | json_hashes >"$work/weir-$mode"
            done
            tools=$(installed_tools "$task")
            [ -n "$tools" ] || { echo "check $task: no $(tools_for "$task") installed, weir not checked"; return; }
            for tool in $tools; do
                # shellcheck disable=SC2046 # tool_cmd is words on purpose
                find "$tree" -type f -print0 | xargs -0 -n "$BATCH" $(tool_cmd "$tool") \
                    | sed 's/^\([0-9a-f]*\) \*/\1  /' | sort >"$work/expected"
                for mode in async sync; do
                    if ! cmp -s "$work/expected" "$work/weir-$mode"; then
                        echo "$task check failed (weir $mode): it differs from $tool on" \
                            "$(diff "$work/expected" "$work/weir-$mode" | grep -c '^[<>]') lines; first:" >&2
                        diff "$work/expected" "$work/weir-$mode" | head -n 6 >&2
                        exit 1
                    fi
                done
            done
            echo "check $task: weir async and --sync hashes = $(echo $tools | sed 's/ / and /')'s, all $(wc -l <"$work/expected") files" ;;
        *) echo "unknown task $task" >&2; exit 1 ;;
    esac
}

# --- the rounds --------------------------------------------------------------------------
# Children's CPU seconds (user + system), from the shell's own `times`: it covers every
# process the shell waited for and their descendants (xargs's wc, …). `times` must run in
# this shell, not in a $(…) subshell, which has no children of its own.
cpu_of() { tail -n 1 "$1" | awk '{
    total = 0
    for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); total += p[1] * 60 + p[2] }
    printf "%.3f", total }'; }

echo "== tree $tree ($origin): $files files in $dirs directories, $mib MiB" \
    "($small of 0-16 KiB, $large of $large_mib MiB), in the page cache"
echo "== weir: $WEIR_BIN, async --jobs ${WEIR_JOBS:-$CPUS (default)}; external: find | xargs -0 -P $PAR -n $BATCH TOOL;" \
    "LC_ALL=C; $rounds round(s)"
echo "== tools: $(wc --version | head -n 1); $(sha256sum --version | head -n 1)$(command -v openssl >/dev/null && echo "; $(openssl version)")$(command -v b3sum >/dev/null && echo "; $(b3sum --version)")"
for task in $tasks; do check_task "$task"; done

declare -A secs cpu
for round in $(seq "$rounds"); do
    warm
    for task in $tasks; do
        read -r -a order <<<"$(programs_for "$task")"
        # Odd rounds in order, even rounds reversed: drift favours no program.
        if (( round % 2 == 0 )); then
            list=(); for ((i=${#order[@]}-1; i>=0; i--)); do list+=("${order[i]}"); done
        else
            list=("${order[@]}")
        fi
        for program in "${list[@]}"; do
            times >"$work/times0"
            began=$(now)
            run_program "$task" "$program" || { echo "$program ($task) failed" >&2; exit 1; }
            ended=$(now)
            times >"$work/times1"
            cpu0=$(cpu_of "$work/times0") cpu1=$(cpu_of "$work/times1")
            awk -v r="$round" -v t="$task" -v p="$program" -v a="$began" -v b="$ended" \
                -v c0="$cpu0" -v c1="$cpu1" -v m="$mib" -v f="$files" 'BEGIN {
                s = b - a
                printf "{\"round\":%d,\"task\":\"%s\",\"program\":\"%s\",\"seconds\":%.3f,", r, t, p, s
                printf "\"mib_per_s\":%.1f,\"files_per_s\":%.0f,\"cpu_s\":%.2f}\n", m / s, f / s, c1 - c0 }' \
                | tee "$work/line"
            secs[$task/$program]+="$(sed 's/.*"seconds":\([0-9.]*\).*/\1/' "$work/line") "
            cpu[$task/$program]+="$(sed 's/.*"cpu_s":\([0-9.]*\).*/\1/' "$work/line") "
        done
    done
done

echo
echo "== summary (medians of $rounds round(s)); $files files, $mib MiB"
printf '%-8s %-11s %9s %9s %10s %8s\n' task program seconds MiB/s files/s cpu_s
declare -A med
for task in $tasks; do
    for program in $(programs_for "$task"); do
        med[$task/$program]=$(echo ${secs[$task/$program]} | tr ' ' '\n' | median)
        awk -v t="$task" -v p="$program" -v s="${med[$task/$program]}" -v m="$mib" -v f="$files" \
            -v c="$(echo ${cpu[$task/$program]} | tr ' ' '\n' | median)" \
            'BEGIN { printf "%-8s %-11s %9.3f %9.1f %10.0f %8.2f\n", t, p, s, m / s, f / s, c }'
    done
done
echo
# `ratio OTHER_SECONDS WEIR_SECONDS` (bench/common.sh): how many times faster weir-async is
# (< 1: slower).
echo "speed of weir-async relative to (the other's seconds / weir-async's seconds; > 1 is faster):"
for task in $tasks; do
    async=${med[$task/weir-async]}
    best= best_s=
    for program in $(programs_for "$task"); do
        case "$program" in weir-*) continue ;; esac
        if [ -z "$best" ] || awk -v a="${med[$task/$program]}" -v b="$best_s" 'BEGIN { exit !(a < b) }'; then
            best=$program best_s=${med[$task/$program]}
        fi
    done
    if [ -n "$best" ]; then
        printf '%-7s vs %-10s %6s  (goal >= 1.0x; the fastest external tool)\n' "$task:" "$best:" "$(ratio "$best_s" "$async")"
        for program in $(installed_tools "$task"); do
            [ "$program" = "$best" ] && continue
            printf '%-7s vs %-10s %6s\n' "$task:" "$program:" "$(ratio "${med[$task/$program]}" "$async")"
        done
    else
        printf '%-7s vs %-10s %6s\n' "$task:" "external:" "n/a (no external tool installed)"
    fi
    printf '%-7s vs %-10s %6s  (goal >= 1.8x)\n' "$task:" "weir-sync:" "$(ratio "${med[$task/weir-sync]}" "$async")"
    # The two runs of one round are back to back, so their ratio cancels the drift of a
    # shared machine between rounds; shown beside the ratio of medians, not instead of it.
    per_round=$(awk -v s="${secs[$task/weir-sync]}" -v a="${secs[$task/weir-async]}" 'BEGIN {
        n = split(s, sync_s, " "); split(a, async_s, " ")
        for (i = 1; i <= n; i++) printf "%.2f\n", (async_s[i] > 0 ? sync_s[i] / async_s[i] : 0) }')
    printf '%-7s vs weir-sync, per round: %s (median %.2fx)\n' "$task:" \
        "$(echo "$per_round" | tr '\n' ' ' | sed 's/ $//')" "$(echo "$per_round" | median)"
done
echo
echo "machine: $CPUS cores, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
    "$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM; $(date -u +%Y-%m-%d)"
