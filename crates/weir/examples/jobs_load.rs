//! The Weir side of `bench/jobs`: enqueue JOBS no-op jobs in batches of 1,000, work them
//! with CONCURRENCY jobs running at once over the worker protocol (runners lease their free
//! slots' worth of jobs, or up to WEIR_BENCH_LOCAL_QUEUE ahead as graphile-worker's local
//! queue does, and report them in batches), then measure enqueue→start latency at 100
//! jobs/s. Prints one JSON line, as bench/jobs/graphile does.
//!
//! `cargo run --release --example jobs_load -- URL JOBS CONCURRENCY`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use weir_jobs::client::Client;

const CALL: Duration = Duration::from_secs(60);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One job of an enqueue batch, serialized as a Rust application would send it.
#[derive(Serialize)]
struct NewJob<'a> {
    queue: &'a str,
    kind: &'a str,
    payload: Value,
}

/// The part of the batch's answer the load tool reads: each job's id (serde skips the rest
/// without building it, as an application's typed client does).
#[derive(Deserialize)]
struct Enqueued {
    jobs: Vec<EnqueuedJob>,
}

#[derive(Deserialize)]
struct EnqueuedJob {
    #[allow(dead_code)] // read to check the answer's shape, not used
    id: u64,
}

async fn enqueue(api: &Client, queue: &str, count: usize, payload: impl Fn(usize) -> Value) {
    #[derive(Serialize)]
    struct Batch<'a> {
        jobs: Vec<NewJob<'a>>,
    }
    let mut next = 0;
    while next < count {
        let end = (next + 1_000).min(count);
        let jobs = (next..end)
            .map(|n| NewJob {
                queue,
                kind: "noop",
                payload: payload(n),
            })
            .collect();
        let body = serde_json::to_string(&Batch { jobs }).expect("a batch serializes");
        let answer: Enqueued = api
            .call("/v1/jobs/batch", Some(body), CALL)
            .await
            .expect("batch enqueued");
        assert_eq!(answer.jobs.len(), end - next, "one answer per job");
        next = end;
    }
}

fn local_queue() -> u32 {
    std::env::var("WEIR_BENCH_LOCAL_QUEUE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A runner with `slots` job slots, as a worker process is: it leases as many jobs as it
/// has free slots (one request), runs them (no-ops), and reports them in one batch
/// (`POST /v1/jobs/complete`), until `remaining` reaches zero. Returns, for stamped jobs,
/// the time from their enqueue to their start, in ms.
async fn runner(
    api: Arc<Client>,
    queue: &'static str,
    slots: u32,
    remaining: Arc<AtomicU64>,
    origin: Instant,
) -> Vec<f64> {
    let mut latencies = Vec::new();
    let queues = vec![queue.to_string()];
    let kinds = vec!["noop".to_string()];
    while remaining.load(Ordering::Relaxed) > 0 {
        // Like graphile-worker's local queue, a runner may lease ahead of its free slots
        // (WEIR_BENCH_LOCAL_QUEUE jobs, default none): the jobs then run `slots` at a time.
        let ahead = local_queue().max(slots);
        let reply = api
            .lease("bench", &queues, &kinds, ahead, Duration::from_millis(500))
            .await
            .expect("lease");
        if reply.jobs.is_empty() {
            continue;
        }
        let started = origin.elapsed().as_secs_f64();
        let mut done = Vec::with_capacity(reply.jobs.len());
        for job in &reply.jobs {
            let payload: Value = serde_json::from_str(job.payload.get()).unwrap_or_default();
            if let Some(stamp) = payload["t"].as_f64() {
                latencies.push((started - stamp) * 1_000.0);
            }
            done.push(json!({"id": job.id, "token": job.fencing_token}));
        }
        let answer: Value = api
            .call(
                "/v1/jobs/complete",
                Some(json!({ "jobs": done }).to_string()),
                CALL,
            )
            .await
            .expect("complete");
        let completed = answer["jobs"]
            .as_array()
            .map_or(0, |all| all.iter().filter(|a| a["ok"] == true).count());
        remaining.fetch_sub(completed as u64, Ordering::Relaxed);
    }
    latencies
}

/// Works `jobs` jobs of `queue` with `concurrency` slots split over up to `RUNNERS` runners.
async fn work(
    api: &Arc<Client>,
    queue: &'static str,
    jobs: usize,
    concurrency: usize,
    origin: Instant,
) -> Vec<f64> {
    // Two runners of 12 slots measured faster than four of 6 on PostgreSQL (1,685 against
    // 1,054 jobs/s): fewer, larger transactions; on SQLite the two were within noise.
    const RUNNERS: usize = 2;
    let runners = RUNNERS.min(concurrency);
    let remaining = Arc::new(AtomicU64::new(jobs as u64));
    let tasks: Vec<_> = (0..runners)
        .map(|index| {
            // Slots split as evenly as they go: 24 over 2 runners is 12 each.
            let slots = concurrency / runners + usize::from(index < concurrency % runners);
            tokio::spawn(runner(
                Arc::clone(api),
                queue,
                slots as u32,
                Arc::clone(&remaining),
                origin,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("runner"));
    }
    latencies
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, jobs, concurrency) = match &args[1..] {
        [url, jobs, concurrency] => (
            url.clone(),
            jobs.parse().expect("JOBS"),
            concurrency.parse().expect("CONCURRENCY"),
        ),
        _ => panic!("usage: jobs_load URL JOBS CONCURRENCY"),
    };
    let api = Arc::new(Client::new(vec![url], None).expect("client"));
    let origin = Instant::now();

    let started = Instant::now();
    enqueue(&api, "bench", jobs, |n| json!({ "n": n })).await;
    let enqueue_rate = jobs as f64 / started.elapsed().as_secs_f64();
    // Untimed, between the phases: bench/jobs/run.sh runs ANALYZE here on PostgreSQL, as
    // the graphile-worker side does.
    if let Ok(command) = std::env::var("WEIR_BENCH_AFTER_ENQUEUE") {
        let status = std::process::Command::new("sh")
            .args(["-c", &command])
            .status();
        assert!(status.is_ok_and(|s| s.success()), "{command} failed");
    }

    let started = Instant::now();
    work(&api, "bench", jobs, concurrency, origin).await;
    let work_rate = jobs as f64 / started.elapsed().as_secs_f64();

    // Latency: workers wait in long-polls; 1,000 jobs arrive at 100 per second, each
    // stamped with its enqueue time on this process's clock.
    let stamped = 1_000;
    let workers = tokio::spawn({
        let api = Arc::clone(&api);
        async move { work(&api, "stamp", stamped, concurrency, origin).await }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..stamped {
        tick.tick().await;
        let body = json!({"queue": "stamp", "kind": "noop", "payload": {"t": origin.elapsed().as_secs_f64()}});
        let _: Value = api
            .call("/v1/jobs", Some(body.to_string()), CALL)
            .await
            .expect("enqueued");
    }
    let mut latencies = workers.await.expect("workers");
    latencies.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "enqueue_jobs_per_s": enqueue_rate.round(),
            "work_jobs_per_s": work_rate.round(),
            "latency_p50_ms": (percentile(&latencies, 0.50) * 100.0).round() / 100.0,
            "latency_p99_ms": (percentile(&latencies, 0.99) * 100.0).round() / 100.0,
            "jobs": jobs,
            "concurrency": concurrency,
        })
    );
}
