//! Waiting leases are woken by queue: a job wakes a lease that can take it, even when a
//! lease on another queue has waited longer.
//!
//! The leases' periodic look is set to an hour, so a lease that is not woken stays asleep
//! for the whole test: the test's deadlines are never what decides it.
//! A job for later wakes a lease too, which then naps until the job's time.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use weir_jobs::{Claim, Jobs, JobsConfig, NewJob, SqliteStore, Store, StoreOptions, Timestamp};

/// Longer than any run of this test; it only bounds a failure.
const DEADLINE: Duration = Duration::from_secs(30);

/// The kinds a test's lease runs unless it names others.
const KINDS: &[&str] = &["fetch", "send", "tick"];

fn claim(queues: &[&str], kinds: &[&str]) -> Claim {
    Claim {
        worker: "test".into(),
        queues: queues.iter().map(|queue| (*queue).to_owned()).collect(),
        kinds: kinds.iter().map(|kind| (*kind).to_owned()).collect(),
        max: 1,
        lease_ttl: Duration::from_secs(30),
    }
}

/// Waits until `count` leases wait on `queue`.
async fn until_waiting(jobs: &Jobs, queue: &str, count: usize) {
    tokio::time::timeout(DEADLINE, async {
        while jobs.waiting_leases(queue) != count {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{count} leases never waited on {queue}"));
}

/// A temporary directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The job service on a fresh SQLite store, with leases that never look again unwoken.
fn service() -> (Jobs, TempDir) {
    let dir = TempDir(std::env::temp_dir().join(format!(
        "weir-wakeups-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.0.join("jobs.db"), StoreOptions::default()).unwrap());
    let config = JobsConfig {
        lease_recheck: Duration::from_secs(3_600),
        ..JobsConfig::default()
    };
    (Jobs::new(store, config, None), dir)
}

type LeaseTask = tokio::task::JoinHandle<Result<Vec<weir_jobs::Job>, weir_jobs::JobsError>>;

/// Starts a lease on `queues` that may wait an hour.
fn lease(jobs: &Jobs, stop: &CancellationToken, queues: &'static [&'static str]) -> LeaseTask {
    lease_kinds(jobs, stop, queues, KINDS)
}

/// Starts a lease on `queues` for jobs of `kinds` that may wait an hour.
fn lease_kinds(
    jobs: &Jobs,
    stop: &CancellationToken,
    queues: &'static [&'static str],
    kinds: &'static [&'static str],
) -> LeaseTask {
    let jobs = jobs.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        jobs.lease(claim(queues, kinds), Duration::from_secs(3_600), &stop)
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_wakes_a_lease_of_its_queue_not_an_older_one_of_another() {
    let (jobs, _dir) = service();
    let stop = CancellationToken::new();
    let lease = |queues| lease(&jobs, &stop, queues);

    // The mail lease waits first: a wake-up list blind to queues would hand it the crawl
    // job's wake-up, and the crawl lease would sleep for the hour.
    let mail = lease(&["mail"]);
    until_waiting(&jobs, "mail", 1).await;
    let crawl = lease(&["crawl"]);
    until_waiting(&jobs, "crawl", 1).await;
    let both = lease(&["mail", "crawl"]);
    until_waiting(&jobs, "crawl", 2).await;

    let payload = RawValue::from_string("{}".into()).unwrap();
    let enqueued = jobs
        .enqueue(vec![NewJob::new("crawl", "fetch", payload.clone())])
        .await
        .unwrap();
    let leased = tokio::time::timeout(DEADLINE, crawl)
        .await
        .expect("the crawl lease was not woken by a crawl job")
        .unwrap()
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].id, enqueued[0].job.id);
    assert_eq!(jobs.waiting_leases("mail"), 2, "the mail leases sleep on");

    // A mail job goes to the lease that waited longest on mail.
    let enqueued = jobs
        .enqueue(vec![NewJob::new("mail", "send", payload)])
        .await
        .unwrap();
    let leased = tokio::time::timeout(DEADLINE, mail)
        .await
        .expect("the mail lease was not woken by a mail job")
        .unwrap()
        .unwrap();
    assert_eq!(leased[0].id, enqueued[0].job.id);
    assert_eq!(jobs.waiting_leases("mail"), 1);
    assert_eq!(
        jobs.waiting_leases("crawl"),
        1,
        "the two-queue lease still waits"
    );

    stop.cancel();
    let nothing = tokio::time::timeout(DEADLINE, both)
        .await
        .expect("a waiting lease ends when stopped")
        .unwrap()
        .unwrap();
    assert!(nothing.is_empty());
    assert_eq!(
        jobs.waiting_leases("mail") + jobs.waiting_leases("crawl"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_later_ends_a_wait_at_its_time() {
    let (jobs, _dir) = service();
    let stop = CancellationToken::new();
    let waiting = lease(&jobs, &stop, &["later"]);
    until_waiting(&jobs, "later", 1).await;

    // Not ready yet: the lease it wakes must nap until its run_at, not for the hour.
    let mut job = NewJob::new("later", "tick", RawValue::from_string("{}".into()).unwrap());
    let run_at = Timestamp::now().after(Duration::from_millis(300));
    job.run_at = Some(run_at);
    let enqueued = jobs.enqueue(vec![job]).await.unwrap();
    let leased = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("the lease slept past the job's run_at")
        .unwrap()
        .unwrap();
    assert_eq!(leased[0].id, enqueued[0].job.id);
    assert!(Timestamp::now() >= run_at, "not leased before its time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_wakes_a_lease_for_the_job_waiting_on_its_key() {
    let (jobs, _dir) = service();
    let stop = CancellationToken::new();
    let keyed = |kind: &str| {
        let mut job = NewJob::new("keyed", kind, RawValue::from_string("{}".into()).unwrap());
        job.concurrency_key = Some("account-7".into());
        job
    };
    let enqueued = jobs
        .enqueue(vec![keyed("first"), keyed("second")])
        .await
        .unwrap();
    let first = lease_kinds(&jobs, &stop, &["keyed"], &["first"])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first[0].id, enqueued[0].job.id);

    // The second job is held back by the key: this lease finds nothing and waits. It runs
    // only the second job's kind: the first job's end must wake it all the same.
    let waiting = lease_kinds(&jobs, &stop, &["keyed"], &["second"]);
    until_waiting(&jobs, "keyed", 1).await;
    jobs.act(
        first[0].id,
        weir_jobs::Action::Complete {
            token: first[0].fencing_token,
            result: None,
        },
    )
    .await
    .unwrap();
    let leased = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("the key's slot was freed but no lease was woken")
        .unwrap()
        .unwrap();
    assert_eq!(leased[0].id, enqueued[1].job.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_wakes_a_lease_that_runs_its_kind_not_an_older_one_that_does_not() {
    let (jobs, _dir) = service();
    let stop = CancellationToken::new();
    // A Rust worker's lease waits first, then a Python worker's on the same queue.
    let rust = lease_kinds(&jobs, &stop, &["default"], &["echo", "sleep"]);
    until_waiting(&jobs, "default", 1).await;
    let python = lease_kinds(&jobs, &stop, &["default"], &["upper"]);
    until_waiting(&jobs, "default", 2).await;

    let payload = RawValue::from_string("{}".into()).unwrap();
    let enqueued = jobs
        .enqueue(vec![NewJob::new("default", "upper", payload)])
        .await
        .unwrap();
    let leased = tokio::time::timeout(DEADLINE, python)
        .await
        .expect("the lease that runs `upper` was not woken")
        .unwrap()
        .unwrap();
    assert_eq!(leased[0].id, enqueued[0].job.id);
    assert_eq!(
        jobs.waiting_leases("default"),
        1,
        "the Rust worker's lease waits on, without the job"
    );
    stop.cancel();
    assert!(rust.await.unwrap().unwrap().is_empty());
}
