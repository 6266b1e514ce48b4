// graphile-worker half of Weir's jobs benchmark.
//
// Usage: node bench.mjs DATABASE_URL JOBS CONCURRENCY
//
// Prints one JSON line to stdout:
//   {"enqueue_jobs_per_s":..,"work_jobs_per_s":..,"latency_p50_ms":..,"latency_p99_ms":..,
//    "jobs":N,"concurrency":C}
// graphile-worker's own log lines (warnings and errors only) go to stderr.
//
// Phases:
//   1. Drop and recreate a dedicated schema (SCHEMA below) and install graphile-worker's tables
//      into it with `runMigrations`, so every run starts from an empty queue.
//   2. Enqueue JOBS no-op jobs (task "noop") with graphile's batch API `addJobs` (one
//      `add_jobs(...)` statement per batch of BATCH jobs) -> enqueue_jobs_per_s.
//   3. ANALYZE graphile's tables.
//   4. Start a runner with CONCURRENCY workers and time it from `run()` until the task handler has
//      seen all JOBS jobs -> work_jobs_per_s.
//   5. With the runner still up and the queue empty, enqueue LATENCY_JOBS "stamp" jobs at
//      LATENCY_RATE jobs/s, each carrying its enqueue time; the handler records now - stamp
//      -> latency_p50_ms / latency_p99_ms. Then stop the runner gracefully.
//
// Every wait is bounded by DEADLINE_MS; the script fails rather than hang.

import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
// graphile-worker is CommonJS: take its exports off the default import.
import graphileWorker from "graphile-worker";

const { run, runMigrations, makeWorkerUtils, Logger } = graphileWorker;

const SCHEMA = "graphile_bench";
const BATCH = 1000;
const LATENCY_JOBS = 1000;
const LATENCY_RATE = 100; // jobs per second, i.e. one every 10 ms
const DEADLINE_MS = 10 * 60 * 1000;
// graphile-worker 0.17 has a "local queue": the pool fetches (and locks) up to this many jobs
// in one query and hands them to its workers without a database round trip per job. The
// reference measurement used size 500; it is set through `preset.worker.localQueue` below.
const LOCAL_QUEUE_SIZE = 500;
// LISTEN/NOTIFY wakes the workers when jobs are added; polling is only the fallback.
const POLL_INTERVAL_MS = 100;

function usage(message) {
    if (message) console.error(`bench.mjs: ${message}`);
    console.error("usage: node bench.mjs DATABASE_URL JOBS CONCURRENCY");
    process.exit(2);
}

function positiveInt(text, name) {
    if (!/^[1-9][0-9]*$/.test(text ?? "")) usage(`${name} must be a positive integer, got ${JSON.stringify(text)}`);
    const n = Number(text);
    if (!Number.isSafeInteger(n)) usage(`${name} is too large`);
    return n;
}

const now = () => performance.timeOrigin + performance.now();

// Rejects if `promise` has not settled within `ms`.
async function deadline(promise, what, ms = DEADLINE_MS) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    });
    try {
        return await Promise.race([promise, timeout]);
    } finally {
        clearTimeout(timer);
    }
}

// A promise resolved by calling `resolve()`, for "the handler has seen N jobs".
function signal() {
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    return { promise, resolve };
}

// Nearest-rank percentile of an ascending array.
function percentile(sorted, q) {
    const rank = Math.max(1, Math.ceil(q * sorted.length));
    return sorted[rank - 1];
}

const round = (x, digits) => Number(x.toFixed(digits));

// graphile-worker logs through this: warnings and errors to stderr, the rest dropped, so that
// stdout carries only the result line.
const logger = new Logger((scope) => (level, message) => {
    if (level === "error" || level === "warning") {
        const label = scope?.label ? `${scope.label}: ` : "";
        console.error(`[graphile ${level}] ${label}${message}`);
    }
});

async function main() {
    const [connectionString, jobsText, concurrencyText] = process.argv.slice(2);
    if (!connectionString || process.argv.length !== 5) usage();
    const jobs = positiveInt(jobsText, "JOBS");
    const concurrency = positiveInt(concurrencyText, "CONCURRENCY");

    const shared = { connectionString, schema: SCHEMA, logger };

    // 1. Fresh schema, installed by graphile-worker's own migrations.
    const admin = new pg.Client({ connectionString });
    await deadline(admin.connect(), "the database connection");
    try {
        await deadline(admin.query(`drop schema if exists ${SCHEMA} cascade`), "dropping the schema");
        await deadline(runMigrations({ ...shared }), "graphile-worker's migrations");
        const jobsTable = `${SCHEMA}._private_jobs`;
        const count = async () =>
            Number((await deadline(admin.query(`select count(*) as n from ${jobsTable}`), "counting jobs")).rows[0].n);
        if ((await count()) !== 0) throw new Error(`${jobsTable} is not empty after a fresh install`);

        // 2. Enqueue, in batches of BATCH with `addJobs` (a single `add_jobs(...)` call per batch).
        const utils = await deadline(makeWorkerUtils({ ...shared }), "makeWorkerUtils");
        let enqueueSeconds;
        try {
            const enqueueStart = now();
            for (let done = 0; done < jobs; ) {
                const n = Math.min(BATCH, jobs - done);
                const specs = new Array(n);
                for (let i = 0; i < n; i++) specs[i] = { identifier: "noop", payload: {} };
                await deadline(utils.addJobs(specs), "an addJobs batch");
                done += n;
            }
            enqueueSeconds = (now() - enqueueStart) / 1000;
        } finally {
            await utils.release();
        }
        if ((await count()) !== jobs) throw new Error(`expected ${jobs} queued jobs`);

        // 3. ANALYZE graphile's tables. graphile-worker's job-fetching query is much faster once
        // the planner has statistics for the freshly filled jobs table (without them it may pick
        // a poor plan for the "get jobs" query); a long-lived production queue gets these from
        // autovacuum, a freshly filled benchmark table would not have them yet.
        const tables = await deadline(
            admin.query(`select tablename from pg_tables where schemaname = $1 order by tablename`, [SCHEMA]),
            "listing graphile's tables",
        );
        for (const { tablename } of tables.rows) {
            await deadline(admin.query(`analyze ${SCHEMA}.${pg.escapeIdentifier(tablename)}`), `analyze ${tablename}`);
        }

        // 4. Work through the queue.
        let noopSeen = 0;
        const allNoop = signal();
        let stampSeen = 0;
        const allStamp = signal();
        const latencies = [];
        const taskList = {
            noop: async () => {
                noopSeen += 1;
                if (noopSeen === jobs) allNoop.resolve();
            },
            stamp: async (payload) => {
                latencies.push(now() - payload.stamp);
                stampSeen += 1;
                if (stampSeen === LATENCY_JOBS) allStamp.resolve();
            },
        };

        // The clock starts before `run()`: the runner's start-up (pool connections, schema
        // check, LISTEN) is part of the measured time, as jobs may start before `run()` resolves.
        const workStart = now();
        const runner = await deadline(
            run({
                ...shared,
                concurrency,
                // graphile's recommendation: at least 10, or concurrency + 2.
                maxPoolSize: Math.max(10, concurrency + 2),
                pollInterval: POLL_INTERVAL_MS,
                noHandleSignals: true,
                taskList,
                // No cron items, so no `crontab` file is looked up in the working directory.
                parsedCronItems: [],
                preset: { worker: { localQueue: { size: LOCAL_QUEUE_SIZE } } },
            }),
            "the runner to start",
        );
        let stopped = false;
        try {
            await deadline(allNoop.promise, `all ${jobs} noop jobs to run`);
            const workSeconds = (now() - workStart) / 1000;

            // The handler has run every job; wait until graphile has also completed (deleted)
            // them all, so the latency phase starts on an empty queue.
            const emptyBy = Date.now() + DEADLINE_MS;
            while ((await count()) !== 0) {
                if (Date.now() > emptyBy) throw new Error("timed out waiting for the queue to drain");
                await sleep(20);
            }

            // 5. Latency: LATENCY_JOBS single jobs at LATENCY_RATE jobs/s on an idle runner. Each
            // add is scheduled against an absolute timetable (no drift) and not awaited before the
            // next, so a slow insert does not delay the following ones.
            const interval = 1000 / LATENCY_RATE;
            const adds = [];
            const scheduleStart = now();
            for (let i = 0; i < LATENCY_JOBS; i++) {
                const wait = scheduleStart + i * interval - now();
                if (wait > 0) await sleep(wait);
                adds.push(runner.addJob("stamp", { stamp: now() }));
            }
            await deadline(Promise.all(adds), "the latency jobs to be added");
            await deadline(allStamp.promise, `all ${LATENCY_JOBS} stamp jobs to run`);

            stopped = true;
            await deadline(runner.stop(), "the runner to stop");
            await deadline(runner.promise, "the runner to finish");

            latencies.sort((a, b) => a - b);
            return {
                enqueue_jobs_per_s: round(jobs / enqueueSeconds, 1),
                work_jobs_per_s: round(jobs / workSeconds, 1),
                latency_p50_ms: round(percentile(latencies, 0.5), 3),
                latency_p99_ms: round(percentile(latencies, 0.99), 3),
                jobs,
                concurrency,
            };
        } finally {
            if (!stopped) await deadline(runner.stop(), "the runner to stop").catch(() => {});
        }
    } finally {
        await admin.end();
    }
}

main().then(
    (result) => {
        process.stdout.write(JSON.stringify(result) + "\n");
    },
    (error) => {
        console.error(`bench.mjs: ${error?.stack ?? error}`);
        process.exit(1);
    },
);
