#!/usr/bin/env bash
# End-to-end tests with real clients: the dashboard in headless Chromium (Debian's package,
# driven by playwright-core) against an open server and a token-protected one, CORS from
# another origin, and resume with the `eventsource` npm client across a restart and across
# two nodes (tests/e2e/resume.mjs; the two nodes need WEIR_TEST_DATABASE_URL, which
# scripts/test.sh sets). Installs what is missing; servers use free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null; then
    echo "e2e: installing chromium" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
for tool in curl node npm; do
    command -v "$tool" >/dev/null || { echo "e2e: $tool is required" >&2; exit 1; }
done
if [ ! -d tests/e2e/node_modules/playwright-core ] || [ ! -d tests/e2e/node_modules/eventsource ]; then
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
cargo build -q -p weir
weir=target/debug/weir

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts weir with extra environment ($@ as NAME=VALUE) and sets $base to its URL. Not in a
# subshell: the pid must reach the cleanup trap.
start_weir() {
    local http line dir
    http=$(free_port); line=$(free_port); dir=$(mktemp -d -p "$work")
    env "$@" "$weir" serve --http-addr "127.0.0.1:$http" --line-addr "127.0.0.1:$line" \
        --data-dir "$dir" --log-level warn >"$dir/log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$http/healthz" >/dev/null && {
            base="http://127.0.0.1:$http"; line_addr="127.0.0.1:$line"; return; }
        sleep 0.1
    done
    echo "e2e: weir did not start:" >&2; cat "$dir/log" >&2; exit 1
}

start_weir
WEIR_E2E_LINE="$line_addr" node tests/e2e/dashboard.mjs "$base"

token=dashboard-e2e-token-0123456789
start_weir WEIR_AUTH_TOKENS="$token:admin"
WEIR_E2E_LINE="$line_addr" node tests/e2e/dashboard.mjs "$base" "$token"

# CORS from a page on another origin: one origin listed, another not.
cors_token=cors-e2e-token-0123456789
page_port=$(free_port); other_port=$(free_port)
start_weir WEIR_AUTH_TOKENS="$cors_token:publish+subscribe" WEIR_HTTP_CORS_ORIGINS="http://127.0.0.1:$page_port"
node tests/e2e/cors.mjs "$base" "$cors_token" "$page_port" "$other_port"

# Resume with a real EventSource client: across a restart, and onto another node.
if [ "${WEIR_TEST_POSTGRES:-}" != skip ] && [ -z "${WEIR_TEST_DATABASE_URL:-}" ]; then
    echo "e2e: WEIR_TEST_DATABASE_URL is not set (source scripts/postgres.sh, or WEIR_TEST_POSTGRES=skip)" >&2
    exit 1
fi
node tests/e2e/resume.mjs "$weir" ${WEIR_TEST_DATABASE_URL:+"$WEIR_TEST_DATABASE_URL"}
