//! The job model: what a job is, the states it moves through, and what a producer submits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::time::Timestamp;

/// A job's identifier: assigned by the store, increasing in enqueue order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a job is in its life.
///
/// ```text
///  scheduled ──(run_at reached)──▶ available ──(lease)──▶ running ──▶ completed
///                                      ▲                     │
///                                      └──── retrying ◀──────┤ (failed, attempts left)
///                                                            ├──▶ discarded (no attempts left)
///  any state before completion ──(cancel)──▶ cancelled ◀─────┘ (cancel reached the worker)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its `run_at` time.
    Scheduled,
    /// Ready to be leased.
    Available,
    /// Leased by a worker.
    Running,
    /// Finished successfully; the result is kept.
    Completed,
    /// Failed an attempt and waits for its backoff before the next one.
    Retrying,
    /// Cancelled before it completed.
    Cancelled,
    /// Failed its last attempt (or could not run); the error history is kept.
    Discarded,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 7] = [
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Completed,
        JobState::Retrying,
        JobState::Cancelled,
        JobState::Discarded,
    ];

    /// The name used in the API and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Retrying => "retrying",
            JobState::Cancelled => "cancelled",
            JobState::Discarded => "discarded",
        }
    }

    /// Whether the job will never run again by itself.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Cancelled | JobState::Discarded
        )
    }

    /// Whether the job waits to be leased (now or at its `run_at`).
    pub fn is_queued(self) -> bool {
        matches!(
            self,
            JobState::Scheduled | JobState::Available | JobState::Retrying
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| {
                format!("`{text}` is not a job state (scheduled, available, running, completed, retrying, cancelled, discarded)")
            })
    }
}

/// A worker's report of how far a running job has come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// 0 to 100.
    pub percent: f64,
    /// What the job is doing, for people watching.
    #[serde(default)]
    pub message: String,
}

/// One failed attempt, kept in the job's error history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// Which attempt failed (1 for the first).
    pub attempt: u32,
    /// When it failed.
    pub at: Timestamp,
    /// What went wrong, as the worker (or the server, for a lost lease) put it.
    pub error: String,
}

/// The lease a running job is under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The worker holding it, as the worker named itself.
    pub worker: String,
    /// When the job becomes available again unless a heartbeat extends the lease.
    pub expires_at: Timestamp,
}

/// A job, as stored and as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Assigned by the store at enqueue (see [`JobId`]); the job list is ordered and paged
    /// by it, newest first.
    pub id: JobId,
    /// Queue it waits in.
    pub queue: String,
    /// What a worker runs for it (its handler's name).
    pub kind: String,
    /// The handler's input: any JSON value, kept verbatim.
    pub payload: Box<RawValue>,
    /// Smaller runs first.
    pub priority: i32,
    /// The state as stored: stores do not move a scheduled or retrying job to available
    /// when its `run_at` passes. [`Job::state_at`] gives the state a reader should see.
    pub state: JobState,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts allowed before the job is discarded.
    pub max_attempts: u32,
    /// How long one attempt may run before the worker cancels it (a failed attempt).
    pub timeout_ms: u64,
    /// While this job is not finished, enqueueing the same key returns it instead.
    pub unique_key: Option<String>,
    /// Jobs sharing a key run at most `key_limit` at a time, across all workers.
    pub concurrency_key: Option<String>,
    /// The limit for `concurrency_key` (1 when a key is given without a limit).
    pub key_limit: Option<u32>,
    /// Earliest time of the next attempt.
    pub run_at: Timestamp,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When the store last wrote the job: its enqueue, a lease, any action it accepted
    /// (heartbeats included) or the rescue of its expired lease.
    pub updated_at: Timestamp,
    /// When it reached a final state.
    pub finished_at: Option<Timestamp>,
    /// The current lease, while running.
    pub lease: Option<Lease>,
    /// The fencing token of the latest lease (0 before the first): grows on every lease.
    /// Heartbeats and results must carry the current one; a stale token means the lease was
    /// lost and the job handed on.
    pub fencing_token: i64,
    /// A cancel was asked for while running; the worker hears it in its next heartbeat.
    pub cancel_requested: bool,
    /// Last progress report.
    pub progress: Option<Progress>,
    /// The handler's result, once completed.
    pub result: Option<Box<RawValue>>,
    /// Every failed attempt, oldest first.
    pub errors: Vec<AttemptError>,
}

impl Job {
    /// The state as a reader should see it: a scheduled or retrying job whose time has come
    /// is available (stores move it lazily, when it is leased).
    pub fn state_at(&self, now: Timestamp) -> JobState {
        match self.state {
            JobState::Scheduled | JobState::Retrying if self.run_at <= now => JobState::Available,
            state => state,
        }
    }
}

/// The defaults a job gets for what its producer leaves out.
pub mod defaults {
    /// The queue a job goes to when its producer names none.
    pub const QUEUE: &str = "default";
    /// Attempts before discarding (as Oban's default).
    pub const MAX_ATTEMPTS: u32 = 20;
    /// Time one attempt may run: 5 minutes.
    pub const TIMEOUT_MS: u64 = 5 * 60 * 1_000;
}

/// What a producer submits. `run_at` defaults to now.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The queue to wait in: 1–128 ASCII letters, digits, `_`, `-` or `.`. A queue listed
    /// in `jobs.queue_kinds` takes only the kinds listed for it.
    pub queue: String,
    /// Which handler runs it: the kind a worker registered the handler under (same
    /// characters as `queue`).
    pub kind: String,
    /// Input, verbatim JSON.
    pub payload: Box<RawValue>,
    /// Smaller runs first.
    pub priority: i32,
    /// Earliest start; `None` means now.
    pub run_at: Option<Timestamp>,
    /// Attempts allowed (at least 1).
    pub max_attempts: u32,
    /// How long one attempt may run, in milliseconds (1 ms to 7 days).
    pub timeout_ms: u64,
    /// Unique key (see [`Job::unique_key`]).
    pub unique_key: Option<String>,
    /// Concurrency key (see [`Job::concurrency_key`]).
    pub concurrency_key: Option<String>,
    /// How many jobs of the concurrency key may run at once (at least 1); `None` means 1.
    /// Only allowed with a `concurrency_key`.
    pub key_limit: Option<u32>,
}

impl NewJob {
    /// A job of `kind` on `queue` with `payload` and every default.
    pub fn new(queue: &str, kind: &str, payload: Box<RawValue>) -> NewJob {
        NewJob {
            queue: queue.to_owned(),
            kind: kind.to_owned(),
            payload,
            priority: 0,
            run_at: None,
            max_attempts: defaults::MAX_ATTEMPTS,
            timeout_ms: defaults::TIMEOUT_MS,
            unique_key: None,
            concurrency_key: None,
            key_limit: None,
        }
    }
}

/// The answer to one enqueue.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The job: new, or the unfinished one that already had the unique key.
    pub job: Job,
    /// True when `job` already existed (its unique key matched).
    pub existing: bool,
}

impl Job {
    /// The job a store creates from `new` under `id`, enqueued at `now`.
    pub(crate) fn from_new(id: JobId, new: NewJob, now: Timestamp) -> Job {
        let run_at = new.run_at.unwrap_or(now);
        Job {
            id,
            state: if run_at > now {
                JobState::Scheduled
            } else {
                JobState::Available
            },
            queue: new.queue,
            kind: new.kind,
            payload: new.payload,
            priority: new.priority,
            attempt: 0,
            max_attempts: new.max_attempts,
            timeout_ms: new.timeout_ms,
            unique_key: new.unique_key,
            key_limit: new
                .concurrency_key
                .as_ref()
                .map(|_| new.key_limit.unwrap_or(1)),
            concurrency_key: new.concurrency_key,
            run_at,
            created_at: now,
            updated_at: now,
            finished_at: None,
            lease: None,
            fencing_token: 0,
            cancel_requested: false,
            progress: None,
            result: None,
            errors: Vec::new(),
        }
    }
}
