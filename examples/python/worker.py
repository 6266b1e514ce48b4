#!/usr/bin/env python3
"""An example Weir worker in Python, using only the standard library.

It speaks the worker protocol of docs/workers.md over plain HTTP + JSON:

    1. POST /v1/lease                 take up to N ready jobs of the kinds it runs
                                      (long-poll)
    2. POST /v1/jobs/{id}/heartbeat   every third of lease_ttl_ms while a job runs:
                                      keeps the lease, carries progress, hears a cancel
    3. POST /v1/jobs/{id}/complete    the attempt succeeded, with its result
       POST /v1/jobs/{id}/fail        the attempt failed (retryable or not)
       POST /v1/jobs/{id}/release     give the job back unfinished (shutdown)

Every report carries the job's `fencing_token` from the lease. A 409 reply with
`"lease_lost": true` means the lease ran out and the job was handed to another
worker: stop working on it and report nothing more.

Run it (with `weir serve` listening on the default address):

    python3 examples/python/worker.py --queues default --concurrency 4
    weir jobs submit upper '{"text": "hi"}'

Job kinds it runs: echo, sleep, upper, fail (see HANDLERS below). Ctrl-C or
SIGTERM stops it gracefully: no new jobs, running ones get 10 s to finish, the
rest are released so that another worker can run them at once.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

# How long one lease request may wait on the server for a job (the server caps it at 60 s).
LEASE_WAIT_MS = 5000
# Time running jobs get to finish at shutdown before they are released.
SHUTDOWN_GRACE_S = 10.0
# Time one report (heartbeat, complete, fail, release) may take.
REPORT_TIMEOUT_S = 10.0
# Backoff between lease attempts while the server cannot be reached.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0


def log(message):
    """One line on stderr, written at once so that threads do not interleave."""
    stamp = time.strftime("%H:%M:%S")
    sys.stderr.write(f"{stamp} worker: {message}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------
# The HTTP client
# --------------------------------------------------------------------------------------


class NetworkError(Exception):
    """The server could not be reached, or the connection broke: worth trying again."""


class ApiError(Exception):
    """The server answered with an error status. Its body is JSON {"error": "..."}."""

    def __init__(self, status, message, lease_lost=False):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        # 409 with "lease_lost": true: this worker no longer holds the job.
        self.lease_lost = lease_lost


class Api:
    """POSTs JSON to a Weir server and returns the decoded JSON answer."""

    def __init__(self, server, token):
        self.server = server.rstrip("/")
        self.token = token

    def post(self, path, body, timeout):
        request = urllib.request.Request(
            self.server + path,
            data=json.dumps(body).encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        if self.token:
            # With tokens configured the worker routes need a token with scope `work`.
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            # 4xx/5xx: the body says why, as {"error": "..."} (plus "lease_lost" on a 409
            # about a lease this worker no longer holds).
            raw = error.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = {"error": raw.decode("utf-8", "replace").strip()}
            if not isinstance(answer, dict):
                answer = {"error": str(answer)}
            raise ApiError(
                error.code,
                answer.get("error", error.reason),
                lease_lost=error.code == 409 and answer.get("lease_lost") is True,
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
            # URLError: refused, unknown host; OSError: reset, timeout; HTTPException: a
            # broken answer; ValueError: a 2xx body that is not JSON.
            raise NetworkError(f"{self.server}{path}: {error}") from None

    # The five calls of the worker protocol.

    def lease(self, worker, queues, kinds, max_jobs, wait_ms):
        # The server holds the request open for up to wait_ms when nothing is ready, so the
        # client's own timeout must be longer than that. Only jobs of `kinds` are leased:
        # a job of a kind this worker has no handler for stays for a worker that does.
        body = {
            "worker": worker,
            "queues": queues,
            "kinds": kinds,
            "max": max_jobs,
            "wait_ms": wait_ms,
        }
        return self.post("/v1/lease", body, timeout=wait_ms / 1000 + 10)

    def heartbeat(self, job_id, token, progress):
        body = {"token": token, "progress": progress}
        return self.post(f"/v1/jobs/{job_id}/heartbeat", body, REPORT_TIMEOUT_S)

    def complete(self, job_id, token, result):
        body = {"token": token, "result": result}
        return self.post(f"/v1/jobs/{job_id}/complete", body, REPORT_TIMEOUT_S)

    def fail(self, job_id, token, error, retryable):
        body = {"token": token, "error": error, "retryable": retryable}
        return self.post(f"/v1/jobs/{job_id}/fail", body, REPORT_TIMEOUT_S)

    def release(self, job_id, token):
        return self.post(f"/v1/jobs/{job_id}/release", {"token": token}, REPORT_TIMEOUT_S)


# --------------------------------------------------------------------------------------
# Handlers: one function per job kind
# --------------------------------------------------------------------------------------


class JobError(Exception):
    """A failed attempt. retryable=False discards the job at once (retrying cannot help)."""

    def __init__(self, message, retryable=True):
        super().__init__(message)
        self.retryable = retryable


class JobContext:
    """What a handler gets: the job, a cancel signal, and a way to report progress.

    Python cannot stop a thread from outside, so a handler that runs for long must look
    at the cancel signal now and then (ctx.sleep and ctx.check do). It is set when the
    job is cancelled, times out, loses its lease, or is released at shutdown.
    """

    def __init__(self, job):
        self.job = job
        self.payload = job.get("payload")
        self.cancel = threading.Event()
        self._lock = threading.Lock()
        self._progress = None

    def progress(self, percent, message=""):
        """Records progress (0-100); it travels to the server with the next heartbeat."""
        with self._lock:
            self._progress = {"percent": max(0.0, min(100.0, float(percent))), "message": message}

    def take_progress(self):
        """The progress recorded since the last heartbeat, or None."""
        with self._lock:
            progress, self._progress = self._progress, None
            return progress

    def check(self):
        """Raises if the job must stop."""
        if self.cancel.is_set():
            raise JobError("cancelled")

    def sleep(self, seconds):
        """Sleeps, but raises at once if the job must stop."""
        if self.cancel.wait(seconds):
            raise JobError("cancelled")


def handle_echo(ctx):
    """echo: the result is the payload."""
    return ctx.payload


def handle_sleep(ctx):
    """sleep: payload {"ms": N}. Sleeps in small steps, reporting progress."""
    ms = ctx.payload.get("ms") if isinstance(ctx.payload, dict) else None
    if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0:
        # Bad input: another attempt would fail the same way.
        raise JobError('payload: expected {"ms": N} with N a whole number >= 0', retryable=False)
    total = ms / 1000
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= total:
            break
        ctx.progress(100 * elapsed / total, f"slept {int(elapsed * 1000)} of {ms} ms")
        ctx.sleep(min(0.1, total - elapsed))  # raises JobError("cancelled") when told to stop
    return {"slept_ms": ms}


def handle_upper(ctx):
    """upper: payload {"text": "..."} -> result {"text": "..."} in capitals."""
    text = ctx.payload.get("text") if isinstance(ctx.payload, dict) else None
    if not isinstance(text, str):
        raise JobError('payload: expected {"text": "..."}', retryable=False)
    return {"text": text.upper()}


def handle_fail(ctx):
    """fail: always fails; payload {"retryable": bool} (default true) says how."""
    retryable = True
    if isinstance(ctx.payload, dict):
        retryable = bool(ctx.payload.get("retryable", True))
    raise JobError("failed on purpose (kind `fail`)", retryable=retryable)


HANDLERS = {
    "echo": handle_echo,
    "sleep": handle_sleep,
    "upper": handle_upper,
    "fail": handle_fail,
}


# --------------------------------------------------------------------------------------
# Running one job: the handler in one thread, its supervisor in another
# --------------------------------------------------------------------------------------


class Run:
    """One leased job on this worker."""

    def __init__(self, job, lease_ttl_ms):
        self.job = job
        self.id = job["id"]
        self.token = job["fencing_token"]  # must accompany every report about this job
        self.ctx = JobContext(job)
        self.beat_every = max(lease_ttl_ms, 300) / 3000  # seconds: a third of the lease
        self.wake = threading.Event()  # set when the handler ends, or to release at shutdown
        self.release_now = False  # set (with wake) by the shutdown sequence
        self.outcome = None  # ("ok", result) or ("error", JobError) once the handler ends


class Worker:
    def __init__(self, api, name, queues, concurrency, exit_when_idle):
        self.api = api
        self.name = name
        self.queues = queues
        self.concurrency = concurrency
        self.exit_when_idle = exit_when_idle
        # Set by SIGINT/SIGTERM to the signal's name: lease nothing more. A plain attribute,
        # not a threading.Event: a signal handler must not take locks the interrupted main
        # thread may be holding, so the main thread polls this instead.
        self.stopping = None
        self.stopped_at = None  # time.monotonic() of the signal: the grace period starts then
        self.lock = threading.Condition()
        self.busy = 0  # slots in use: a slot is free once the job's handler has returned
        self.unsettled = {}  # job id -> Run, for jobs not yet reported to the server

    # -- the lease loop ------------------------------------------------------------------

    def run(self):
        log(f"{self.name} leasing from {self.api.server}, queues {','.join(self.queues)}, "
            f"concurrency {self.concurrency}, kinds {', '.join(sorted(HANDLERS))}")
        backoff = BACKOFF_FIRST_S
        while not self.stopping:
            free = self.wait_for_free_slots()
            if free == 0:
                break  # stopping
            try:
                reply = self.api.lease(
                    self.name, self.queues, sorted(HANDLERS), free, LEASE_WAIT_MS
                )
            except (NetworkError, ApiError) as error:
                # No server (or it refused us, e.g. 401/403 with a wrong token): try again
                # later, 0.5 s doubling to 8 s. Leasing is safe to repeat.
                log(f"lease failed: {error}; retrying in {backoff:g} s")
                self.pause(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_FIRST_S
            jobs = reply.get("jobs", [])
            ttl_ms = reply.get("lease_ttl_ms", 10000)
            for job in jobs:
                self.start(Run(job, ttl_ms))
            # No job may be left unsettled on exit, so idle means: none came, none runs.
            if not jobs and self.exit_when_idle:
                with self.lock:
                    if self.busy == 0:
                        log("idle: no job came within the wait and none is running; exiting")
                        return
        self.shutdown()

    def wait_for_free_slots(self):
        """Blocks until at least one slot is free; returns how many are (0 when stopping).
        One lease request may take at most 100 jobs."""
        with self.lock:
            while self.busy >= self.concurrency and not self.stopping:
                self.lock.wait(0.2)  # timed, so a signal is noticed promptly
            return 0 if self.stopping else min(self.concurrency - self.busy, 100)

    def pause(self, seconds):
        """Sleeps, in short steps so that a signal is noticed promptly."""
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))

    def start(self, run):
        job = run.job
        with self.lock:
            self.busy += 1
            self.unsettled[run.id] = run
        if self.stopping:
            # Leased while we were stopping (the lease request was already waiting):
            # give it back at once instead of starting it.
            run.release_now = True
            run.wake.set()
            log(f"job {run.id} leased while stopping; releasing it")
        else:
            log(f"job {run.id} ({job['kind']}, attempt {job['attempt']}/{job['max_attempts']}) started")
        threading.Thread(target=self.supervise, args=(run,), name=f"job-{run.id}", daemon=True).start()

    # -- one job -------------------------------------------------------------------------

    def execute(self, run):
        """The handler thread: runs the kind's handler and records what came of it."""
        try:
            handler = HANDLERS.get(run.job["kind"])
            if handler is None:
                # Another worker may know this kind, so the failure is retryable.
                raise JobError(f"no handler for kind `{run.job['kind']}` on this worker "
                               f"(it runs: {', '.join(sorted(HANDLERS))})", retryable=True)
            result = handler(run.ctx)
            try:
                json.dumps(result)  # the result travels as JSON: check it now
            except (TypeError, ValueError) as error:
                raise JobError(f"the handler's result is not JSON: {error}", retryable=False)
            run.outcome = ("ok", result)
        except JobError as error:
            run.outcome = ("error", error)
        except Exception as error:  # a bug in a handler is a failed, retryable attempt
            run.outcome = ("error", JobError(f"{type(error).__name__}: {error}", retryable=True))
        finally:
            run.wake.set()

    def supervise(self, run):
        """The job's supervisor thread: heartbeats, the timeout, and the final report."""
        handler = threading.Thread(target=self.execute, args=(run,), name=f"handler-{run.id}",
                                   daemon=True)
        if not run.release_now:
            handler.start()
        timeout_ms = run.job.get("timeout_ms") or 300000
        deadline = time.monotonic() + timeout_ms / 1000
        next_beat = time.monotonic() + run.beat_every
        try:
            while True:
                run.wake.wait(max(0.0, min(next_beat, deadline) - time.monotonic()))
                if run.outcome is not None:
                    kind, value = run.outcome
                    if kind == "ok":
                        self.report(run, "completed", self.api.complete, run.id, run.token, value)
                    else:
                        self.report(run, f"failed: {value} (retryable: {value.retryable})",
                                    self.api.fail, run.id, run.token, str(value), value.retryable)
                    return
                if run.release_now:
                    # Shutdown: give the job back. It is available again at once elsewhere,
                    # and this attempt does not count.
                    run.ctx.cancel.set()
                    self.report(run, "released", self.api.release, run.id, run.token)
                    return
                now = time.monotonic()
                if now >= deadline:
                    # The worker enforces timeout_ms: a failed attempt, retried as usual.
                    run.ctx.cancel.set()
                    message = f"timed out after {timeout_ms} ms"
                    self.report(run, message, self.api.fail, run.id, run.token, message, True)
                    return
                if now >= next_beat:
                    next_beat = now + run.beat_every
                    if not self.heartbeat(run):
                        return  # lease lost: say nothing more about this job
        finally:
            with self.lock:
                self.unsettled.pop(run.id, None)
                self.lock.notify_all()
            # The slot is free once the handler has stopped (it was told to, if need be).
            if handler.is_alive():
                handler.join()
            with self.lock:
                self.busy -= 1
                self.lock.notify_all()

    def heartbeat(self, run):
        """Extends the lease and sends progress. False when the lease is lost."""
        try:
            reply = self.api.heartbeat(run.id, run.token, run.ctx.take_progress())
        except ApiError as error:
            if error.lease_lost:
                # The lease expired and the job was handed on (or it ended). Stop the
                # handler and report nothing: another worker owns the job now.
                log(f"job {run.id}: lease lost ({error.message}); abandoning it")
                run.ctx.cancel.set()
                return False
            log(f"job {run.id}: heartbeat refused: {error}")
            return True
        except NetworkError as error:
            # Keep working: the next beat may get through before the lease runs out.
            log(f"job {run.id}: heartbeat failed: {error}")
            return True
        if reply.get("cancel") and not run.ctx.cancel.is_set():
            # Someone cancelled the job: tell the handler. It stops and we report `fail`;
            # the server then ends the job `cancelled`.
            log(f"job {run.id}: cancel requested")
            run.ctx.cancel.set()
        return True

    def report(self, run, what, call, *args):
        """Sends the final report about a job. A failed report is only logged: the server
        gives the job to another worker once its lease expires (at-least-once)."""
        try:
            call(*args)
            log(f"job {run.id} {what}")
        except ApiError as error:
            if error.lease_lost:
                log(f"job {run.id}: lease lost before the report; it ran elsewhere too")
            else:
                log(f"job {run.id}: report refused: {error}")
        except NetworkError as error:
            log(f"job {run.id}: could not report ({what}): {error}; "
                "the server will run it again when the lease expires")

    # -- shutdown ------------------------------------------------------------------------

    def shutdown(self):
        """No new jobs; running ones get SHUTDOWN_GRACE_S to finish, the rest are released."""
        with self.lock:
            if self.unsettled:
                log(f"waiting up to {SHUTDOWN_GRACE_S:g} s (from the signal) for "
                    f"{len(self.unsettled)} running job(s)")
            end = (self.stopped_at or time.monotonic()) + SHUTDOWN_GRACE_S
            while self.unsettled and time.monotonic() < end:
                self.lock.wait(end - time.monotonic())
            left = list(self.unsettled.values())
            for run in left:
                run.release_now = True
                run.wake.set()
            # Wait for the releases to be sent (each report may take REPORT_TIMEOUT_S).
            end = time.monotonic() + REPORT_TIMEOUT_S + 2
            while self.unsettled and time.monotonic() < end:
                self.lock.wait(end - time.monotonic())
        log("stopped")


def main():
    parser = argparse.ArgumentParser(description="An example Weir worker (kinds: echo, sleep, upper, fail).")
    parser.add_argument("--server", default=os.environ.get("WEIR_SERVER", "http://127.0.0.1:7070"),
                        help="base URL of a Weir node (env WEIR_SERVER)")
    parser.add_argument("--token", default=os.environ.get("WEIR_TOKEN"),
                        help="access token with scope `work` (env WEIR_TOKEN)")
    parser.add_argument("--queues", default="default", help="comma-separated queues to take jobs from")
    parser.add_argument("--concurrency", type=int, default=4, help="jobs run at once")
    parser.add_argument("--name", default=f"{socket.gethostname()}-{os.getpid()}",
                        help="name shown in leases (default host-pid)")
    parser.add_argument("--exit-when-idle", action="store_true",
                        help="exit 0 once a lease wait returns no job and none is running")
    args = parser.parse_args()

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    if not queues:
        parser.error("--queues: name at least one queue")
    if args.concurrency < 1:
        parser.error("--concurrency: at least 1")

    worker = Worker(Api(args.server, args.token), args.name, queues, args.concurrency,
                    args.exit_when_idle)

    def on_signal(signum, _frame):
        # Only set flags: the main thread notices them within a moment, or when a lease
        # request that is waiting on the server returns (within LEASE_WAIT_MS; any job it
        # brings is released at once). os.write takes no lock, unlike sys.stderr.write.
        if worker.stopping is None:
            worker.stopped_at = time.monotonic()
            name = signal.Signals(signum).name
            os.write(2, f"{time.strftime('%H:%M:%S')} worker: {name}: stopping; no new jobs\n".encode())
            worker.stopping = name

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
