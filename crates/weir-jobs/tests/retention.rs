//! Finished jobs are deleted once their state's retention has passed: by the service, in
//! batches, and by the maintenance loop on its own.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use weir_jobs::retention::PRUNE_BATCH;
use weir_jobs::{
    Action, Change, Claim, Job, Jobs, JobsConfig, NewJob, Retention, SqliteStore, Store,
    StoreOptions, Timestamp,
};

struct TempStore {
    dir: std::path::PathBuf,
    store: Arc<dyn Store>,
}

impl TempStore {
    fn new(name: &str) -> TempStore {
        let dir = std::env::temp_dir().join(format!(
            "weir-retention-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.join("jobs.db"), StoreOptions::default()).unwrap());
        TempStore { dir, store }
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn job(queue: &str) -> NewJob {
    NewJob::new(queue, "k", RawValue::from_string("{}".into()).unwrap())
}

/// Enqueues `count` jobs in `queue`, leases them all and applies `action` to each at `now`.
async fn finish(
    store: &dyn Store,
    queue: &str,
    count: usize,
    now: Timestamp,
    action: fn(i64) -> Action,
) -> Vec<Job> {
    let mut finished = Vec::new();
    for start in (0..count).step_by(1_000) {
        let batch = (start..count.min(start + 1_000))
            .map(|_| job(queue))
            .collect();
        store.enqueue(batch, now).await.unwrap();
    }
    while finished.len() < count {
        let claim = Claim {
            worker: "w".into(),
            queues: vec![queue.into()],
            kinds: vec!["k".into()],
            max: 1_000,
            lease_ttl: Duration::from_secs(60),
        };
        let leased = store.claim(claim, now).await.unwrap();
        assert!(!leased.is_empty(), "every job enqueued can be leased");
        let changes = leased
            .iter()
            .map(|job| Change {
                id: job.id,
                action: action(job.fencing_token),
            })
            .collect();
        for outcome in store.change(changes, now).await.unwrap() {
            finished.push(outcome.unwrap());
        }
    }
    finished
}

fn complete(token: i64) -> Action {
    Action::Complete {
        token,
        result: None,
    }
}

fn discard(token: i64) -> Action {
    Action::Fail {
        token,
        error: "bad input".into(),
        retryable: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_state_keeps_its_jobs_for_its_retention_and_long_histories_go_in_batches() {
    let temp = TempStore::new("service");
    let jobs = Jobs::new(
        Arc::clone(&temp.store),
        JobsConfig {
            retention: Retention {
                completed: Some(Duration::from_secs(3600)),
                cancelled: None,
                discarded: Some(Duration::ZERO),
            },
            ..JobsConfig::default()
        },
        None,
    );
    let t0 = Timestamp::now();
    // More completed jobs than two batches hold: the pass goes on until none is left.
    let completed_count = 2 * PRUNE_BATCH as usize + 100;
    let completed = finish(&*temp.store, "done", completed_count, t0, complete).await;
    let discarded = finish(&*temp.store, "failed", 3, t0, discard).await;
    let cancelled = jobs.enqueue(vec![job("off")]).await.unwrap().remove(0).job;
    jobs.act(cancelled.id, Action::Cancel).await.unwrap();
    let running = jobs.enqueue(vec![job("busy")]).await.unwrap().remove(0).job;
    let claim = Claim {
        worker: "w".into(),
        queues: vec!["busy".into()],
        kinds: vec!["k".into()],
        max: 1,
        lease_ttl: Duration::from_secs(3600),
    };
    temp.store.claim(claim, t0).await.unwrap();

    // Half an hour on: the discarded jobs (kept 0 s) go; the completed ones stay.
    let pruned = jobs
        .prune(t0.after(Duration::from_secs(1800)))
        .await
        .unwrap();
    assert_eq!(
        (pruned.completed, pruned.cancelled, pruned.discarded),
        (0, 0, 3)
    );
    for job in &discarded {
        assert!(
            temp.store.get(job.id).await.unwrap().is_none(),
            "{} kept",
            job.id
        );
    }
    assert!(temp.store.get(completed[0].id).await.unwrap().is_some());

    // Two hours on: every completed job goes, over three batches; the cancelled job is
    // kept for ever and the running one is never touched.
    let pruned = jobs
        .prune(t0.after(Duration::from_secs(7200)))
        .await
        .unwrap();
    assert_eq!(pruned.completed, completed_count as u64);
    assert_eq!(pruned.total(), completed_count as u64);
    for job in [&completed[0], &completed[completed_count - 1]] {
        assert!(
            temp.store.get(job.id).await.unwrap().is_none(),
            "{} kept",
            job.id
        );
    }
    assert!(temp.store.get(cancelled.id).await.unwrap().is_some());
    assert!(temp.store.get(running.id).await.unwrap().is_some());
    let left: u64 = temp
        .store
        .counts(Timestamp::now())
        .await
        .unwrap()
        .iter()
        .map(|c| c.count)
        .sum();
    assert_eq!(left, 2, "the cancelled and the running job");
    assert_eq!(jobs.pruned_total().completed, completed_count as u64);
    assert_eq!(jobs.pruned_total().discarded, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maintenance_loop_prunes_on_its_own() {
    let temp = TempStore::new("loop");
    let jobs = Jobs::new(
        Arc::clone(&temp.store),
        JobsConfig {
            retention: Retention {
                completed: Some(Duration::ZERO),
                ..Retention::FOREVER
            },
            prune_interval: Duration::from_millis(20),
            ..JobsConfig::default()
        },
        None,
    );
    let stop = CancellationToken::new();
    let maintenance = tokio::spawn({
        let (jobs, stop) = (jobs.clone(), stop.clone());
        async move { jobs.maintain(stop).await }
    });
    let done = finish(&*temp.store, "q", 1, Timestamp::now(), complete)
        .await
        .remove(0);
    // The row goes at the store's commit and the count moves when the prune returns, a
    // moment later: wait for both.
    tokio::time::timeout(Duration::from_secs(30), async {
        while temp.store.get(done.id).await.unwrap().is_some() || jobs.pruned_total().completed == 0
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the completed job was never deleted and counted");
    assert_eq!(jobs.pruned_total().completed, 1);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), maintenance)
        .await
        .expect("maintenance stops when told")
        .unwrap();
}
