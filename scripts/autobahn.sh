#!/usr/bin/env bash
# WebSocket conformance: the Autobahn testsuite's fuzzingclient, cases 1-7 and 10, against
# the ws_echo example (weir-http's upgrade + tungstenite framing). Fails on any FAILED case.
#
# autobahntestsuite 0.8.2 runs on Python 2.7: the machine image's pyenv provides 2.7.18, and
# the suite is installed into it from PyPI when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${AUTOBAHN_PYTHON:-$HOME/.pyenv/versions/2.7.18/bin/python}
WSTEST=$(dirname "$PY")/wstest
PORT=${AUTOBAHN_PORT:-9001}
if [ ! -x "$PY" ]; then
  echo "autobahn: Python 2.7 not found at $PY (set AUTOBAHN_PYTHON)" >&2
  exit 1
fi
if [ ! -x "$WSTEST" ]; then
  "$PY" -m pip install -q autobahntestsuite==0.8.2
fi

cargo build -q -p weir --example ws_echo
WORK=$(mktemp -d)
target/debug/examples/ws_echo "127.0.0.1:$PORT" 2>"$WORK/server.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  sleep 0.05
done

cat > "$WORK/spec.json" <<SPEC
{
  "outdir": "$WORK/reports",
  "servers": [{ "agent": "weir", "url": "ws://127.0.0.1:$PORT" }],
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
SPEC
(cd "$WORK" && timeout 900 "$WSTEST" -m fuzzingclient -s spec.json > wstest.log 2>&1) || {
  echo "autobahn: wstest did not finish; last lines:" >&2; tail -20 "$WORK/wstest.log" >&2; exit 1; }

python3 - "$WORK/reports/index.json" <<'PY'
import collections, json, sys
results = json.load(open(sys.argv[1]))["weir"]
counts = collections.Counter()
failed = []
for case, result in sorted(results.items()):
    for key in ("behavior", "behaviorClose"):
        if result[key] == "FAILED":
            failed.append(f"{case} ({key})")
    counts[result["behavior"]] += 1
summary = ", ".join(f"{n} {behavior}" for behavior, n in sorted(counts.items()))
print(f"autobahn fuzzingclient cases 1-7, 10: {len(results)} cases: {summary}")
if failed:
    print("FAILED: " + ", ".join(failed))
    sys.exit(1)
PY
