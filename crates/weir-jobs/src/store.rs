//! The `Store` trait: what the job system needs from a database.
//!
//! Object-safe (methods return boxed futures) so the server holds an `Arc<dyn Store>` and
//! picks SQLite or PostgreSQL at start-up. Every method takes `now` from the caller; see
//! [`crate::time`]. Every write is committed before its future resolves: an answered
//! enqueue survives `kill -9`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::lifecycle::{Change, ChangeError, RetryPolicy};
use crate::model::{Enqueued, Job, JobId, JobState, NewJob};
use crate::time::Timestamp;
use crate::wakeups::Wakeups;

/// The future every store method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The database failed (or is gone). The operation did not happen.
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("job store: {0}")]
    Database(String),
    /// The store was shut down.
    #[error("job store is closed")]
    Closed,
}

/// Settings every store applies.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Backoff between attempts.
    pub retry: RetryPolicy,
    /// Most jobs running at once per queue, across every worker and node. Queues not
    /// listed have no limit.
    pub queue_limits: BTreeMap<String, u32>,
    /// How hard a SQLite commit waits for the disk (PostgreSQL's own settings govern it
    /// there).
    pub synchronous: weir_db::sqlite::Synchronous,
}

/// A worker asks for jobs.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The worker's name (shown in leases).
    pub worker: String,
    /// Queues to take from (any priority order across them).
    pub queues: Vec<String>,
    /// Only jobs of these kinds: the ones the worker runs.
    pub kinds: Vec<String>,
    /// At most this many jobs.
    pub max: u32,
    /// Lease length; heartbeats extend it.
    pub lease_ttl: Duration,
}

/// A page of the job list, newest first.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs in this state as a reader sees it (a scheduled or retrying job whose time
    /// has come is available).
    pub state: Option<JobState>,
    /// Only jobs with a smaller id (the previous page's last id).
    pub before: Option<JobId>,
    /// Most jobs in the page. The store takes it as given; the HTTP API keeps it to
    /// 1–[`MAX_PAGE`](crate::protocol::MAX_PAGE).
    pub limit: u32,
}

/// Jobs per queue and state, for the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCount {
    /// The queue counted; a queue with no jobs counted does not appear.
    pub queue: String,
    /// The state as a reader sees it at the time of the count: a scheduled or retrying job
    /// whose time has come counts as available.
    pub state: JobState,
    /// Jobs of `queue` in `state`; never 0 (a state with no jobs is left out).
    pub count: u64,
}

/// A database that keeps jobs.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Inserts jobs, all in one transaction. A job whose unique key belongs to an
    /// unfinished job is not inserted; that job is returned with `existing: true`.
    fn enqueue(&self, jobs: Vec<NewJob>, now: Timestamp) -> StoreFuture<'_, Vec<Enqueued>>;

    /// The job with `id`, or `None` when there is none (never enqueued, or deleted after
    /// its retention).
    fn get(&self, id: JobId) -> StoreFuture<'_, Option<Job>>;

    /// A page of jobs, newest first; `query.state` is matched as shown at `now`.
    fn list(&self, query: ListQuery, now: Timestamp) -> StoreFuture<'_, Vec<Job>>;

    /// Leases up to `claim.max` jobs of `claim.kinds` whose time has come, smallest
    /// priority first, then oldest `run_at`, then id, honouring queue limits and
    /// concurrency keys.
    fn claim(&self, claim: Claim, now: Timestamp) -> StoreFuture<'_, Vec<Job>>;

    /// Applies actions (heartbeat, complete, fail, release, cancel, retry), each on its own
    /// terms: one refused action does not stop the others.
    fn change(
        &self,
        changes: Vec<Change>,
        now: Timestamp,
    ) -> StoreFuture<'_, Vec<Result<Job, ChangeError>>>;

    /// Ends every lease that expired before `now` (see [`crate::lifecycle::rescue`]) and
    /// returns the jobs it changed.
    fn rescue(&self, now: Timestamp) -> StoreFuture<'_, Vec<Job>>;

    /// The earliest `run_at` of a queued job of `kinds` in `queues` that is later than
    /// `now`: when a waiting worker should look again.
    fn next_run_at(
        &self,
        queues: Vec<String>,
        kinds: Vec<String>,
        now: Timestamp,
    ) -> StoreFuture<'_, Option<Timestamp>>;

    /// Job counts per queue and state. Reads every job, finished ones included.
    fn counts(&self, now: Timestamp) -> StoreFuture<'_, Vec<QueueCount>>;

    /// Job counts per queue and state for unfinished jobs only (scheduled, available,
    /// retrying, running). Reads only those, so it stays cheap however much history the
    /// store keeps.
    fn unfinished_counts(&self, now: Timestamp) -> StoreFuture<'_, Vec<QueueCount>>;

    /// Deletes up to `limit` jobs in `state`, a finished state, that finished before
    /// `before`, oldest first; returns how many it deleted. One call is one short
    /// transaction: a long history is deleted over many calls, with other work between.
    fn prune(&self, state: JobState, before: Timestamp, limit: u32) -> StoreFuture<'_, u64>;

    /// Periodic jobs: if schedule `name` is due at `due` (or has never run), moves it to
    /// `next` and enqueues `job`, in one transaction. Returns `None` when another caller
    /// (another node) already took this slot, so each slot runs once across the cluster.
    fn fire_schedule(
        &self,
        name: String,
        due: Timestamp,
        next: Timestamp,
        job: NewJob,
        now: Timestamp,
    ) -> StoreFuture<'_, Option<Enqueued>>;

    /// Records schedule `name`'s first slot, unless it already has one.
    fn start_schedule(&self, name: String, first: Timestamp) -> StoreFuture<'_, ()>;

    /// When schedule `name` is next due, if it has been started.
    fn schedule_due(&self, name: String) -> StoreFuture<'_, Option<Timestamp>>;

    /// The waiting leases of this process, for a store that hears when another process
    /// (another node) makes jobs ready: it wakes them, queue by queue, and the service
    /// registers its leases and wakes them for its own jobs in the same place. `None` for a
    /// store only this process writes to; the service then keeps its own.
    fn wakeups(&self) -> Option<Arc<Wakeups>> {
        None
    }
}
