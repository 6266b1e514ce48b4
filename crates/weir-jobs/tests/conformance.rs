//! One suite, two stores: every test here runs against SQLite and against a real PostgreSQL.
//!
//! PostgreSQL comes from `WEIR_TEST_DATABASE_URL` (scripts/test.sh starts a throwaway server
//! and sets it); each test gets its own schema. Without the variable the PostgreSQL half
//! fails, naming the variable, unless `WEIR_TEST_POSTGRES=skip` says to leave it out.
//!
//! Stores take `now` from their caller, so lease expiry and backoff are tested by passing a
//! later `now`, never by sleeping.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use weir_jobs::{
    Action, Change, ChangeError, Claim, JobId, JobState, ListQuery, NewJob, PostgresStore,
    Progress, RetryPolicy, SqliteStore, Store, StoreOptions, Timestamp,
};

const T0: Timestamp = Timestamp(1_800_000_000_000);
const TTL: Duration = Duration::from_secs(15);

enum Backend {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

impl Backend {
    fn sqlite() -> Backend {
        let dir = std::env::temp_dir().join(format!(
            "weir-jobs-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Backend::Sqlite(dir)
    }

    fn postgres() -> Option<Backend> {
        match std::env::var("WEIR_TEST_DATABASE_URL") {
            Ok(url) => Some(Backend::Postgres {
                url,
                schema: format!("test_{}", fastrand::u64(..)),
            }),
            Err(_) if std::env::var("WEIR_TEST_POSTGRES").as_deref() == Ok("skip") => None,
            Err(_) => panic!(
                "WEIR_TEST_DATABASE_URL is not set: run scripts/test.sh (it starts PostgreSQL), \
                 or set WEIR_TEST_POSTGRES=skip to leave the PostgreSQL half out"
            ),
        }
    }

    async fn open(&self, options: StoreOptions) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(dir) => {
                Arc::new(SqliteStore::open(&dir.join("jobs.db"), options).unwrap())
            }
            Backend::Postgres { url, schema } => {
                Arc::new(PostgresStore::open(url, schema, 16, options).await.unwrap())
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::Sqlite(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn payload(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap()
}

fn job(queue: &str, kind: &str) -> NewJob {
    NewJob::new(queue, kind, payload(r#"{"n":1}"#))
}

fn claim(queues: &[&str], max: u32) -> Claim {
    Claim {
        worker: "worker-a".into(),
        queues: queues.iter().map(|q| q.to_string()).collect(),
        kinds: ["k", "send", "x", "y", "z"].map(String::from).to_vec(),
        max,
        lease_ttl: TTL,
    }
}

fn later(seconds: u64) -> Timestamp {
    T0.after(Duration::from_secs(seconds))
}

async fn act(
    store: &dyn Store,
    id: JobId,
    action: Action,
    now: Timestamp,
) -> Result<weir_jobs::Job, ChangeError> {
    store
        .change(vec![Change { id, action }], now)
        .await
        .unwrap()
        .pop()
        .unwrap()
}

async fn enqueue(store: &dyn Store, new: NewJob) -> weir_jobs::Job {
    store
        .enqueue(vec![new], T0)
        .await
        .unwrap()
        .pop()
        .unwrap()
        .job
}

// ---------------------------------------------------------------------------------------

async fn enqueue_and_read_back(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let mut delayed = job("mail", "send");
    delayed.run_at = Some(later(60));
    delayed.priority = 3;
    let batch = store
        .enqueue(vec![job("mail", "send"), delayed], T0)
        .await
        .unwrap();
    assert_eq!(batch.len(), 2);
    assert!(batch.iter().all(|e| !e.existing));
    assert!(
        batch[0].job.id < batch[1].job.id,
        "ids grow in enqueue order"
    );
    assert_eq!(batch[0].job.state, JobState::Available);
    assert_eq!(batch[1].job.state, JobState::Scheduled);

    let read = store.get(batch[1].job.id).await.unwrap().expect("stored");
    assert_eq!(read.queue, "mail");
    assert_eq!(read.kind, "send");
    assert_eq!(read.payload.get(), r#"{"n":1}"#);
    assert_eq!(read.priority, 3);
    assert_eq!(read.run_at, later(60));
    assert_eq!(read.state_at(later(59)), JobState::Scheduled);
    assert_eq!(read.state_at(later(60)), JobState::Available);
    // Listing by state matches the state a reader sees at the time given.
    let in_state = |state: JobState, at: Timestamp| {
        let store = &store;
        async move {
            let query = ListQuery {
                state: Some(state),
                limit: 10,
                ..ListQuery::default()
            };
            let jobs = store.list(query, at).await.unwrap();
            jobs.iter().map(|job| job.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        in_state(JobState::Scheduled, later(59)).await,
        [batch[1].job.id]
    );
    assert_eq!(
        in_state(JobState::Available, later(59)).await,
        [batch[0].job.id]
    );
    assert!(in_state(JobState::Scheduled, later(60)).await.is_empty());
    assert_eq!(
        in_state(JobState::Available, later(60)).await,
        [batch[1].job.id, batch[0].job.id],
        "newest first"
    );
    assert!(store.get(JobId(999_999)).await.unwrap().is_none());
}

async fn claims_follow_priority_then_time_then_id(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let mut urgent = job("q", "k");
    urgent.priority = -5;
    let mut early = job("q", "k");
    early.run_at = Some(Timestamp(T0.0 - 10_000));
    let plain = job("q", "k");
    let other_queue = job("elsewhere", "k");
    let mut future = job("q", "k");
    future.run_at = Some(later(30));
    let ids: Vec<JobId> = store
        .enqueue(vec![plain, early, urgent, other_queue, future], T0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.job.id)
        .collect();

    let leased = store.claim(claim(&["q"], 10), T0).await.unwrap();
    let order: Vec<JobId> = leased.iter().map(|j| j.id).collect();
    assert_eq!(
        order,
        vec![ids[2], ids[1], ids[0]],
        "priority, then run_at, then id"
    );
    for j in &leased {
        assert_eq!(j.state, JobState::Running);
        assert_eq!(j.attempt, 1);
        assert_eq!(j.fencing_token, 1);
        let lease = j.lease.as_ref().unwrap();
        assert_eq!(lease.worker, "worker-a");
        assert_eq!(lease.expires_at, T0.after(TTL));
    }
    assert!(store.claim(claim(&["q"], 10), T0).await.unwrap().is_empty());
    let at_its_time = store.claim(claim(&["q"], 10), later(30)).await.unwrap();
    assert_eq!(at_its_time.len(), 1);
    assert_eq!(at_its_time[0].id, ids[4]);
    let both = store
        .claim(claim(&["q", "elsewhere"], 1), T0)
        .await
        .unwrap();
    assert_eq!(both[0].id, ids[3]);
}

/// A large batch, with a unique job in its middle, comes back in its order, the jobs
/// without a key with growing ids, each job stored as given (SQLite writes runs of jobs
/// many rows a statement; PostgreSQL all of them in one).
async fn a_large_batch_keeps_its_order_and_fields(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let mut batch: Vec<NewJob> = (0..1_000)
        .map(|n| NewJob::new("q", "k", payload(&format!(r#"{{"n":{n}}}"#))))
        .collect();
    batch[500].unique_key = Some("middle".into());
    batch[999].priority = 7;
    let enqueued = store.enqueue(batch, T0).await.unwrap();
    assert_eq!(enqueued.len(), 1_000);
    let plain: Vec<JobId> = enqueued
        .iter()
        .filter(|one| one.job.unique_key.is_none())
        .map(|one| one.job.id)
        .collect();
    assert!(
        plain.windows(2).all(|pair| pair[0] < pair[1]),
        "ids grow in the batch's order"
    );
    let mut ids: Vec<JobId> = enqueued.iter().map(|one| one.job.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1_000, "every job its own id");
    for (n, one) in enqueued.iter().enumerate() {
        let stored = store.get(one.job.id).await.unwrap().unwrap();
        assert_eq!(stored.payload.get(), format!(r#"{{"n":{n}}}"#));
        assert_eq!(stored.id, one.job.id);
    }
    let last = store.get(enqueued[999].job.id).await.unwrap().unwrap();
    assert_eq!(last.priority, 7);
    let middle = store.get(enqueued[500].job.id).await.unwrap().unwrap();
    assert_eq!(middle.unique_key.as_deref(), Some("middle"));
}

/// A lease takes only the kinds its worker runs: a job of another kind stays for the
/// worker that runs it, however far ahead of the others it is, and across several kinds
/// the lease order is kept.
async fn claims_take_only_the_kinds_named(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let mut first = job("q", "upper");
    first.priority = -10;
    let mut second = job("q", "echo");
    second.priority = -1;
    let third = job("q", "sleep");
    let mut later_echo = job("q", "echo");
    later_echo.run_at = Some(later(40));
    let mut later_upper = job("q", "upper");
    later_upper.run_at = Some(later(20));
    let ids: Vec<JobId> = store
        .enqueue(vec![first, second, third, later_echo, later_upper], T0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    let rust_worker = |max| Claim {
        kinds: vec!["echo".into(), "sleep".into()],
        ..claim(&["q"], max)
    };
    let leased = store.claim(rust_worker(10), T0).await.unwrap();
    assert_eq!(
        leased.iter().map(|j| j.id).collect::<Vec<_>>(),
        [ids[1], ids[2]],
        "the `upper` job ahead is left; the others in priority order"
    );
    let next = store
        .next_run_at(vec!["q".into()], vec!["echo".into(), "sleep".into()], T0)
        .await
        .unwrap();
    assert_eq!(
        next,
        Some(later(40)),
        "the next job of its kinds, not of `upper`"
    );
    let python_worker = Claim {
        kinds: vec!["upper".into()],
        ..claim(&["q"], 10)
    };
    let leased = store.claim(python_worker, T0).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].id, ids[0]);
    assert!(store
        .claim(rust_worker(10), later(30))
        .await
        .unwrap()
        .is_empty());
}

async fn a_stale_fencing_token_is_refused(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let id = enqueue(&*store, job("q", "k")).await.id;
    let first = store
        .claim(claim(&["q"], 1), T0)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let beat = act(
        &*store,
        id,
        Action::Heartbeat {
            token: first.fencing_token,
            progress: Some(Progress {
                percent: 40.0,
                message: "halfway".into(),
            }),
            lease_ttl: TTL,
        },
        later(10),
    )
    .await
    .unwrap();
    assert_eq!(beat.lease.unwrap().expires_at, later(10).after(TTL));
    assert_eq!(beat.progress.unwrap().message, "halfway");

    // The worker goes quiet; the lease runs out and the job is handed on.
    assert!(
        store.rescue(later(24)).await.unwrap().is_empty(),
        "lease still valid"
    );
    let rescued = store.rescue(later(26)).await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].state, JobState::Available);
    assert!(rescued[0].errors[0].error.contains("lease expired"));
    let second = store
        .claim(claim(&["q"], 1), later(26))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(second.fencing_token, first.fencing_token + 1);
    assert_eq!(second.attempt, 2);

    // The first worker wakes up and reports: refused, whatever it says.
    for action in [
        Action::Heartbeat {
            token: first.fencing_token,
            progress: None,
            lease_ttl: TTL,
        },
        Action::Complete {
            token: first.fencing_token,
            result: None,
        },
        Action::Fail {
            token: first.fencing_token,
            error: "late".into(),
            retryable: true,
        },
    ] {
        let refused = act(&*store, id, action, later(27)).await.unwrap_err();
        assert!(
            matches!(refused, ChangeError::LeaseLost { current, .. } if current == second.fencing_token)
        );
    }
    let done = act(
        &*store,
        id,
        Action::Complete {
            token: second.fencing_token,
            result: Some(payload(r#"{"ok":true}"#)),
        },
        later(28),
    )
    .await
    .unwrap();
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.finished_at, Some(later(28)));
    // Completion is recorded once: a repeat with the same token is refused.
    let again = act(
        &*store,
        id,
        Action::Complete {
            token: second.fencing_token,
            result: None,
        },
        later(29),
    )
    .await;
    assert!(matches!(
        again,
        Err(ChangeError::LeaseLost {
            state: JobState::Completed,
            ..
        })
    ));
    let stored = store.get(id).await.unwrap().unwrap();
    assert_eq!(stored.result.unwrap().get(), r#"{"ok":true}"#);
}

async fn failures_back_off_then_discard(backend: Backend) {
    let policy = RetryPolicy {
        base: Duration::from_secs(10),
        cap: Duration::from_secs(100),
    };
    let store = backend
        .open(StoreOptions {
            retry: policy,
            ..StoreOptions::default()
        })
        .await;
    let mut new = job("q", "k");
    new.max_attempts = 2;
    let id = enqueue(&*store, new).await.id;
    let leased = store
        .claim(claim(&["q"], 1), T0)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let failed = act(
        &*store,
        id,
        Action::Fail {
            token: leased.fencing_token,
            error: "boom 1".into(),
            retryable: true,
        },
        T0,
    )
    .await
    .unwrap();
    assert_eq!(failed.state, JobState::Retrying);
    let wait = T0.until(failed.run_at).as_secs_f64();
    assert!((7.5..=12.5).contains(&wait), "backoff {wait} s");
    assert!(store
        .claim(claim(&["q"], 1), T0.after(Duration::from_secs(7)))
        .await
        .unwrap()
        .is_empty());
    let next = store
        .next_run_at(vec!["q".into()], vec!["k".into()], T0)
        .await
        .unwrap();
    assert_eq!(next, Some(failed.run_at));

    let second = store
        .claim(claim(&["q"], 1), later(13))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(second.attempt, 2);
    let discarded = act(
        &*store,
        id,
        Action::Fail {
            token: second.fencing_token,
            error: "boom 2".into(),
            retryable: true,
        },
        later(14),
    )
    .await
    .unwrap();
    assert_eq!(discarded.state, JobState::Discarded);
    let history: Vec<(u32, &str)> = discarded
        .errors
        .iter()
        .map(|e| (e.attempt, e.error.as_str()))
        .collect();
    assert_eq!(history, vec![(1, "boom 1"), (2, "boom 2")]);

    // Retry by hand: runs again, with one more attempt allowed.
    let retried = act(&*store, id, Action::Retry, later(20)).await.unwrap();
    assert_eq!(retried.state, JobState::Available);
    assert_eq!(retried.max_attempts, 3);
    assert_eq!(
        store.claim(claim(&["q"], 1), later(20)).await.unwrap()[0].attempt,
        3
    );

    // A failure the worker marks as not retryable discards at once.
    let id = enqueue(&*store, job("q2", "k")).await.id;
    let leased = store
        .claim(claim(&["q2"], 1), T0)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let fatal = act(
        &*store,
        id,
        Action::Fail {
            token: leased.fencing_token,
            error: "bad input".into(),
            retryable: false,
        },
        T0,
    )
    .await
    .unwrap();
    assert_eq!(fatal.state, JobState::Discarded);
}

async fn cancelling(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let queued = enqueue(&*store, job("q", "k")).await.id;
    let cancelled = act(&*store, queued, Action::Cancel, T0).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(
        store.claim(claim(&["q"], 5), T0).await.unwrap().is_empty(),
        "never runs"
    );

    let running = enqueue(&*store, job("q", "k")).await.id;
    let leased = store
        .claim(claim(&["q"], 1), T0)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let asked = act(&*store, running, Action::Cancel, later(1))
        .await
        .unwrap();
    assert_eq!(
        asked.state,
        JobState::Running,
        "a running job is told, not stopped"
    );
    assert!(asked.cancel_requested);
    let beat = act(
        &*store,
        running,
        Action::Heartbeat {
            token: leased.fencing_token,
            progress: None,
            lease_ttl: TTL,
        },
        later(2),
    )
    .await
    .unwrap();
    assert!(
        beat.cancel_requested,
        "the heartbeat reply carries the cancel"
    );
    let ended = act(
        &*store,
        running,
        Action::Fail {
            token: leased.fencing_token,
            error: "cancelled".into(),
            retryable: true,
        },
        later(3),
    )
    .await
    .unwrap();
    assert_eq!(ended.state, JobState::Cancelled);

    let refused = act(&*store, running, Action::Retry, later(4))
        .await
        .unwrap();
    assert_eq!(
        refused.state,
        JobState::Available,
        "a cancelled job can be retried"
    );
    let done = enqueue(&*store, job("z", "k")).await.id;
    let leased = store
        .claim(claim(&["z"], 1), T0)
        .await
        .unwrap()
        .pop()
        .unwrap();
    act(
        &*store,
        done,
        Action::Complete {
            token: leased.fencing_token,
            result: None,
        },
        T0,
    )
    .await
    .unwrap();
    let refused = act(&*store, done, Action::Cancel, T0).await.unwrap_err();
    assert!(matches!(
        refused,
        ChangeError::WrongState {
            state: JobState::Completed,
            ..
        }
    ));
    let missing = act(&*store, JobId(424_242), Action::Cancel, T0)
        .await
        .unwrap_err();
    assert_eq!(missing, ChangeError::NotFound(JobId(424_242)));
}

async fn release_gives_the_job_back_without_using_an_attempt(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let id = enqueue(&*store, job("q", "k")).await.id;
    let leased = store
        .claim(claim(&["q"], 1), T0)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let released = act(
        &*store,
        id,
        Action::Release {
            token: leased.fencing_token,
        },
        later(1),
    )
    .await
    .unwrap();
    assert_eq!(released.state, JobState::Available);
    assert_eq!(released.attempt, 0);
    let again = store
        .claim(claim(&["q"], 1), later(1))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(again.attempt, 1);
    assert_eq!(again.fencing_token, 2);
}

async fn unique_keys_return_the_unfinished_job(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let mut first = job("q", "k");
    first.unique_key = Some("report-42".into());
    let original = store
        .enqueue(vec![first.clone(), first.clone()], T0)
        .await
        .unwrap();
    assert!(!original[0].existing);
    assert!(original[1].existing, "a duplicate in the same batch");
    assert_eq!(original[0].job.id, original[1].job.id);
    let again = store
        .enqueue(vec![first.clone()], later(1))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(again.existing);
    assert_eq!(again.job.id, original[0].job.id);

    let leased = store
        .claim(claim(&["q"], 1), T0)
        .await
        .unwrap()
        .pop()
        .unwrap();
    act(
        &*store,
        leased.id,
        Action::Complete {
            token: leased.fencing_token,
            result: None,
        },
        T0,
    )
    .await
    .unwrap();
    let fresh = store
        .enqueue(vec![first], later(2))
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(!fresh.existing, "a finished job frees its key");
    assert_ne!(fresh.job.id, original[0].job.id);
    // Retrying the finished one would give the key two unfinished jobs: refused, naming it
    // (a 409 over HTTP; once a 503 with the database's text).
    let refused = act(&*store, original[0].job.id, Action::Retry, later(3))
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        ChangeError::UniqueKeyTaken {
            id: original[0].job.id,
            key: "report-42".into()
        }
    );
    assert_eq!(
        store.get(original[0].job.id).await.unwrap().unwrap().state,
        JobState::Completed,
        "nothing changed"
    );
}

async fn queue_limits_hold(backend: Backend) {
    let store = backend
        .open(StoreOptions {
            queue_limits: BTreeMap::from([("narrow".to_string(), 2)]),
            ..StoreOptions::default()
        })
        .await;
    let batch: Vec<NewJob> = (0..5).map(|_| job("narrow", "k")).collect();
    store.enqueue(batch, T0).await.unwrap();
    store.enqueue(vec![job("wide", "k"); 3], T0).await.unwrap();
    let first = store
        .claim(claim(&["narrow", "wide"], 10), T0)
        .await
        .unwrap();
    let narrow = first.iter().filter(|j| j.queue == "narrow").count();
    assert_eq!(narrow, 2, "limit 2 on `narrow`");
    assert_eq!(first.len(), 5);
    assert!(store
        .claim(claim(&["narrow"], 10), T0)
        .await
        .unwrap()
        .is_empty());
    let one = first.iter().find(|j| j.queue == "narrow").unwrap();
    act(
        &*store,
        one.id,
        Action::Complete {
            token: one.fencing_token,
            result: None,
        },
        T0,
    )
    .await
    .unwrap();
    assert_eq!(
        store.claim(claim(&["narrow"], 10), T0).await.unwrap().len(),
        1
    );
}

async fn concurrency_keys_hold(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let keyed = |key: &str, limit: Option<u32>| {
        let mut new = job("q", "k");
        new.concurrency_key = Some(key.into());
        new.key_limit = limit;
        new
    };
    store
        .enqueue(
            vec![
                keyed("alice", None),
                keyed("alice", None),
                keyed("bob", Some(2)),
                keyed("bob", Some(2)),
                keyed("bob", Some(2)),
            ],
            T0,
        )
        .await
        .unwrap();
    let leased = store.claim(claim(&["q"], 10), T0).await.unwrap();
    let per_key = |key: &str| {
        leased
            .iter()
            .filter(|j| j.concurrency_key.as_deref() == Some(key))
            .count()
    };
    assert_eq!(
        per_key("alice"),
        1,
        "a key without a limit runs one at a time"
    );
    assert_eq!(per_key("bob"), 2);
    assert!(store.claim(claim(&["q"], 10), T0).await.unwrap().is_empty());
}

async fn jobs_held_back_by_a_key_do_not_hide_the_others(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let hogs: Vec<NewJob> = (0..200)
        .map(|_| {
            let mut new = job("q", "k");
            new.concurrency_key = Some("hog".into());
            new
        })
        .collect();
    store.enqueue(hogs, T0).await.unwrap();
    assert_eq!(store.claim(claim(&["q"], 1), T0).await.unwrap().len(), 1);
    // 199 jobs wait for the key; one behind them does not.
    let free = enqueue(&*store, job("q", "k")).await.id;
    let leased = store.claim(claim(&["q"], 1), T0).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].id, free);
}

async fn concurrent_claims_never_share_a_job(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let jobs: Vec<NewJob> = (0..300).map(|_| job("q", "k")).collect();
    store.enqueue(jobs, T0).await.unwrap();
    let mut claimers = Vec::new();
    for worker in 0..8 {
        let store = Arc::clone(&store);
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let mut request = claim(&["q"], 7);
                request.worker = format!("w{worker}");
                let leased = store.claim(request, T0).await.unwrap();
                if leased.is_empty() {
                    return mine;
                }
                mine.extend(leased.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            assert!(seen.insert(id), "job {id} leased twice");
        }
    }
    assert_eq!(seen.len(), 300);
}

async fn lists_pages_and_counts(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let mut batch: Vec<NewJob> = (0..5).map(|_| job("a", "x")).collect();
    batch.extend((0..3).map(|_| job("b", "y")));
    store.enqueue(batch, T0).await.unwrap();
    store.claim(claim(&["b"], 1), T0).await.unwrap();

    let page1 = store
        .list(
            ListQuery {
                queue: Some("a".into()),
                limit: 3,
                ..ListQuery::default()
            },
            T0,
        )
        .await
        .unwrap();
    assert_eq!(page1.len(), 3);
    assert!(page1.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let page2 = store
        .list(
            ListQuery {
                queue: Some("a".into()),
                before: Some(page1[2].id),
                limit: 3,
                ..ListQuery::default()
            },
            T0,
        )
        .await
        .unwrap();
    assert_eq!(page2.len(), 2);
    let running = store
        .list(
            ListQuery {
                state: Some(JobState::Running),
                limit: 10,
                ..ListQuery::default()
            },
            T0,
        )
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].kind, "y");

    let counts: Vec<(String, JobState, u64)> = store
        .counts(T0)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.queue, c.state, c.count))
        .collect();
    assert!(counts.contains(&("a".into(), JobState::Available, 5)));
    assert!(counts.contains(&("b".into(), JobState::Available, 2)));
    assert!(counts.contains(&("b".into(), JobState::Running, 1)));

    // Finish one job and schedule one: the unfinished counts leave the finished out.
    let b_running = running[0].clone();
    act(
        &*store,
        b_running.id,
        Action::Complete {
            token: b_running.fencing_token,
            result: None,
        },
        T0,
    )
    .await
    .unwrap();
    let mut later_job = job("c", "z");
    later_job.run_at = Some(later(60));
    store.enqueue(vec![later_job], T0).await.unwrap();
    let unfinished = |at: Timestamp| {
        let store = &store;
        async move {
            let counts = store.unfinished_counts(at).await.unwrap();
            counts
                .into_iter()
                .map(|c| (c.queue, c.state, c.count))
                .collect::<Vec<(String, JobState, u64)>>()
        }
    };
    // Counted as shown: once its time has come, the scheduled job counts as available.
    assert_eq!(
        unfinished(later(60)).await,
        [
            ("a".into(), JobState::Available, 5),
            ("b".into(), JobState::Available, 2),
            ("c".into(), JobState::Available, 1),
        ]
    );
    assert!(store
        .counts(later(60))
        .await
        .unwrap()
        .iter()
        .any(|c| c.queue == "c" && c.state == JobState::Available && c.count == 1));
    let unfinished = unfinished(T0).await;
    assert_eq!(
        unfinished,
        [
            ("a".into(), JobState::Available, 5),
            ("b".into(), JobState::Available, 2),
            ("c".into(), JobState::Scheduled, 1),
        ]
    );
    let all = store.counts(T0).await.unwrap();
    assert!(all
        .iter()
        .any(|c| c.queue == "b" && c.state == JobState::Completed && c.count == 1));
}

async fn finished_jobs_are_pruned_by_state_oldest_first(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let batch: Vec<NewJob> = (0..6).map(|_| job("q", "k")).collect();
    store.enqueue(batch, T0).await.unwrap();
    let leased = store.claim(claim(&["q"], 6), T0).await.unwrap();
    // Five finish, ten seconds apart: four complete, one is discarded; one keeps running.
    let mut completed = Vec::new();
    for (n, job) in leased[..4].iter().enumerate() {
        let action = Action::Complete {
            token: job.fencing_token,
            result: None,
        };
        let at = later(10 * (n as u64 + 1));
        completed.push(act(&*store, job.id, action, at).await.unwrap());
    }
    let failing = Action::Fail {
        token: leased[4].fencing_token,
        error: "bad input".into(),
        retryable: false,
    };
    let discarded = act(&*store, leased[4].id, failing, later(10))
        .await
        .unwrap();
    assert_eq!(discarded.state, JobState::Discarded);
    let running = leased[5].id;
    let cancelled = enqueue(&*store, job("q", "k")).await.id;
    act(&*store, cancelled, Action::Cancel, later(10))
        .await
        .unwrap();
    let kept = |id: JobId| {
        let store = Arc::clone(&store);
        async move { store.get(id).await.unwrap().is_some() }
    };

    // Only jobs that finished strictly before the time, only in the state asked for.
    let deleted = store
        .prune(JobState::Completed, later(30), 100)
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert!(!kept(completed[0].id).await && !kept(completed[1].id).await);
    assert!(
        kept(completed[2].id).await,
        "finished at the cut-off itself"
    );
    assert!(kept(discarded.id).await && kept(cancelled).await);

    // The limit holds, and the oldest go first.
    let deleted = store
        .prune(JobState::Completed, later(100), 1)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(!kept(completed[2].id).await && kept(completed[3].id).await);

    // Unfinished jobs are never pruned, whatever the state asked for.
    let deleted = store
        .prune(JobState::Running, later(100_000), 100)
        .await
        .unwrap();
    assert_eq!(deleted, 0);
    assert!(kept(running).await);
    for state in [JobState::Cancelled, JobState::Discarded] {
        assert_eq!(store.prune(state, later(100), 100).await.unwrap(), 1);
    }
    assert!(!kept(discarded.id).await && !kept(cancelled).await);
    let left: Vec<JobId> = store
        .list(
            ListQuery {
                limit: 10,
                ..ListQuery::default()
            },
            T0,
        )
        .await
        .unwrap()
        .iter()
        .map(|job| job.id)
        .collect();
    assert_eq!(left, [running, completed[3].id], "newest first");
}

async fn a_schedule_slot_fires_once(backend: Backend) {
    let store = backend.open(StoreOptions::default()).await;
    let name = "nightly".to_string();
    assert_eq!(store.schedule_due(name.clone()).await.unwrap(), None);
    let fired = store
        .fire_schedule(
            name.clone(),
            later(60),
            later(120),
            job("cron", "k"),
            later(60),
        )
        .await
        .unwrap();
    assert!(fired.is_some());
    let twice = store
        .fire_schedule(
            name.clone(),
            later(60),
            later(120),
            job("cron", "k"),
            later(61),
        )
        .await
        .unwrap();
    assert!(twice.is_none(), "the slot was taken");
    assert_eq!(
        store.schedule_due(name.clone()).await.unwrap(),
        Some(later(120))
    );
    let next = store
        .fire_schedule(name, later(120), later(180), job("cron", "k"), later(120))
        .await
        .unwrap();
    assert!(next.is_some());
}

async fn jobs_survive_reopening(backend: Backend) {
    let id = {
        let store = backend.open(StoreOptions::default()).await;
        let id = enqueue(&*store, job("q", "k")).await.id;
        store.claim(claim(&["q"], 1), T0).await.unwrap();
        id
    };
    let store = backend.open(StoreOptions::default()).await;
    let job = store.get(id).await.unwrap().expect("kept");
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.fencing_token, 1);
    let next = enqueue(&*store, self::job("q", "k")).await.id;
    assert!(next > id, "ids keep growing");
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(backend) = super::Backend::postgres() {
                        super::$test(backend).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    enqueue_and_read_back,
    claims_follow_priority_then_time_then_id,
    claims_take_only_the_kinds_named,
    a_large_batch_keeps_its_order_and_fields,
    a_stale_fencing_token_is_refused,
    failures_back_off_then_discard,
    cancelling,
    release_gives_the_job_back_without_using_an_attempt,
    unique_keys_return_the_unfinished_job,
    queue_limits_hold,
    concurrency_keys_hold,
    concurrent_claims_never_share_a_job,
    jobs_held_back_by_a_key_do_not_hide_the_others,
    lists_pages_and_counts,
    finished_jobs_are_pruned_by_state_oldest_first,
    a_schedule_slot_fires_once,
    jobs_survive_reopening,
);
