#!/usr/bin/env python3
"""Times `weir worker`, the product's own worker, on no-op jobs.

    python3 bench/jobs/worker_drive.py WEIR_BIN SERVER_URL JOBS CONCURRENCY [PREFETCH]

Enqueues JOBS `echo` jobs through `POST /v1/jobs/batch` (1,000 a request, one at a time),
then
starts `WEIR_BIN worker --concurrency CONCURRENCY [--prefetch PREFETCH]` against SERVER_URL on CPU 1 and times
it until no job is available or running. The poll is cheap so as not to slow the server
it measures: the last job enqueued (leased last) is read by id until it has completed,
then the jobs counts of `/metrics` (a GROUP BY over the unfinished jobs: 10 ms and more
while thousands wait) until none is unfinished. Prints one JSON line:
{"work_jobs_per_s": ..., "enqueue_jobs_per_s": ..., "seconds": ..., "completed": ...}.
"""

import json
import subprocess
import sys
import time
import urllib.request

BATCH = 1000
POLL_S = 0.01
DEADLINE_S = 600


def post(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def state(server, job_id):
    with urllib.request.urlopen(f"{server}/v1/jobs/{job_id}", timeout=10) as answer:
        return json.load(answer)["state"]


def unfinished(server):
    """Jobs available or running in any queue, from /metrics."""
    with urllib.request.urlopen(f"{server}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("weir_jobs{") and (
            'state="available"' in line or 'state="running"' in line
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def completed(server, jobs):
    """How many of the newest `jobs` jobs completed (a check that the work was done)."""
    done = 0
    before = None
    while True:
        path = "/v1/jobs?limit=500&state=completed" + (f"&before={before}" if before else "")
        with urllib.request.urlopen(server + path, timeout=30) as answer:
            page = json.load(answer)
        done += len(page["jobs"])
        before = page.get("next_before")
        if not before or done >= jobs:
            return done


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    weir, server, jobs, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    prefetch = ["--prefetch", sys.argv[5]] if len(sys.argv) == 6 else []
    last = None
    enqueue_started = time.monotonic()
    for start in range(0, jobs, BATCH):
        count = min(BATCH, jobs - start)
        answer = post(f"{server}/v1/jobs/batch", {"jobs": [{"kind": "echo"}] * count})
        last = answer["jobs"][-1]["id"]
    enqueue_seconds = time.monotonic() - enqueue_started
    if unfinished(server) != jobs:
        sys.exit(f"expected {jobs} waiting jobs, /metrics counts {unfinished(server)}")
    started = time.monotonic()
    worker = subprocess.Popen(
        ["taskset", "-c", "1", weir, "worker", "--server", server,
         "--concurrency", concurrency, "--log-level", "warn", *prefetch],
        stdout=subprocess.DEVNULL,
    )
    def wait_until(done):
        while not done():
            if time.monotonic() - started > DEADLINE_S:
                sys.exit(f"the worker did not finish within {DEADLINE_S} s")
            if worker.poll() is not None:
                sys.exit(f"the worker exited early with {worker.returncode}")
            time.sleep(POLL_S)

    try:
        wait_until(lambda: state(server, last) == "completed")
        wait_until(lambda: unfinished(server) == 0)
        seconds = time.monotonic() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    done = completed(server, jobs)
    if done != jobs:
        sys.exit(f"{done} of {jobs} jobs completed")
    print(json.dumps({
        "work_jobs_per_s": round(jobs / seconds, 1),
        "enqueue_jobs_per_s": round(jobs / enqueue_seconds, 1),
        "seconds": round(seconds, 3),
        "completed": done,
    }))


if __name__ == "__main__":
    main()
