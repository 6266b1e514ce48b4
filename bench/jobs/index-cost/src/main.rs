//! The SQLite store's claim-and-complete rate with and without the `job_finished` index
//! (the one retention deletes through), and what deleting a batch of 1,000 costs.
//!
//!     cd bench/jobs/index-cost && cargo run --release -- [JOBS] [ROUNDS]
//!
//! Each round enqueues JOBS (default 50,000) jobs into a fresh database, then four tasks
//! claim 100 at a time and complete them until none is left; the two variants alternate
//! which goes first. Prints each round's jobs/s, the medians and their ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use weir_jobs::{
    Action, Change, Claim, JobState, NewJob, SqliteStore, Store, StoreOptions, Timestamp,
};

struct Round {
    jobs_per_second: f64,
    /// Milliseconds to delete 1,000 completed jobs (only with the index).
    prune_ms: Option<f64>,
}

async fn round(with_index: bool, jobs: usize) -> Round {
    let dir = std::env::temp_dir().join(format!(
        "weir-index-cost-{}-{with_index}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jobs.db");
    drop(SqliteStore::open(&path, StoreOptions::default()).unwrap());
    if !with_index {
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("DROP INDEX job_finished")
            .unwrap();
    }
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&path, StoreOptions::default()).unwrap());
    let now = Timestamp::now();
    for _ in 0..jobs / 1_000 {
        let batch = (0..1_000)
            .map(|_| NewJob::new("q", "k", RawValue::from_string("{}".into()).unwrap()))
            .collect();
        store.enqueue(batch, now).await.unwrap();
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                loop {
                    let claim = Claim {
                        worker: format!("w{worker}"),
                        queues: vec!["q".into()],
                        kinds: vec!["k".into()],
                        max: 100,
                        lease_ttl: Duration::from_secs(60),
                    };
                    let leased = store.claim(claim, now).await.unwrap();
                    if leased.is_empty() {
                        return;
                    }
                    let changes = leased
                        .iter()
                        .map(|job| Change {
                            id: job.id,
                            action: Action::Complete {
                                token: job.fencing_token,
                                result: None,
                            },
                        })
                        .collect();
                    store.change(changes, now).await.unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let jobs_per_second = jobs as f64 / started.elapsed().as_secs_f64();
    let prune_ms = if with_index {
        let started = Instant::now();
        let deleted = store
            .prune(
                JobState::Completed,
                now.after(Duration::from_secs(1)),
                1_000,
            )
            .await
            .unwrap();
        assert_eq!(deleted, 1_000);
        Some(started.elapsed().as_secs_f64() * 1e3)
    } else {
        None
    };
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Round {
        jobs_per_second,
        prune_ms,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a whole number"));
    let jobs = args.next().unwrap_or(50_000);
    let rounds = args.next().unwrap_or(5);
    let (mut with, mut without, mut prune) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..rounds {
        let order = if n % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for with_index in order {
            let result = round(with_index, jobs).await;
            println!(
                "round {n}, index {with_index}: {:.0} jobs/s",
                result.jobs_per_second
            );
            if with_index {
                with.push(result.jobs_per_second);
                prune.extend(result.prune_ms);
            } else {
                without.push(result.jobs_per_second);
            }
        }
    }
    let (with, without) = (median(with), median(without));
    println!(
        "median: with the index {with:.0} jobs/s, without {without:.0} jobs/s, ratio {:.2}; deleting 1,000: {:.1} ms",
        with / without,
        median(prune)
    );
}
