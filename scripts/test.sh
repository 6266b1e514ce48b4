#!/usr/bin/env bash
# The project's test command (README.md): installs what the tests need, then runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."

# curl is used by the interoperability tests when present; install it on a bare machine.
if ! command -v curl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq curl >/dev/null
  fi
fi

# A throwaway PostgreSQL for the job store's conformance suite and the multi-node tests
# (installs Debian's postgresql-15 when missing; stopped when this script exits).
source scripts/postgres.sh

cargo test --workspace --all-targets --all-features
cargo test --workspace --doc --all-features

# The dashboard in headless Chromium (installs chromium and playwright-core when missing).
bash scripts/e2e.sh
