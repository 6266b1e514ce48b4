//! How long finished jobs are kept, and the pruning that deletes them afterwards.
//!
//! A finished job stays readable (its result, its error history) for as long as its
//! state's retention says; then a pruning pass deletes it. Kept for ever, finished jobs
//! would grow the database without bound and every count over it with them. The defaults
//! follow River's: a day for completed and cancelled jobs, a week for discarded ones,
//! whose errors someone may still have to read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::model::JobState;
use crate::store::{Store, StoreError};
use crate::time::Timestamp;

/// The states a job ends in, the ones pruning deletes.
pub const FINISHED: [JobState; 3] = [
    JobState::Completed,
    JobState::Cancelled,
    JobState::Discarded,
];

/// How long finished jobs are kept after they finish, by state; `None` keeps them for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Jobs that succeeded.
    pub completed: Option<Duration>,
    /// Jobs cancelled before they completed.
    pub cancelled: Option<Duration>,
    /// Jobs that failed their last attempt.
    pub discarded: Option<Duration>,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Default for Retention {
    fn default() -> Self {
        Retention {
            completed: Some(DAY),
            cancelled: Some(DAY),
            discarded: Some(7 * DAY),
        }
    }
}

impl Retention {
    /// Every finished job kept for ever: nothing is pruned.
    pub const FOREVER: Retention = Retention {
        completed: None,
        cancelled: None,
        discarded: None,
    };

    /// The retention of jobs that finished in `state` (`None` for an unfinished state).
    pub fn of(&self, state: JobState) -> Option<Duration> {
        match state {
            JobState::Completed => self.completed,
            JobState::Cancelled => self.cancelled,
            JobState::Discarded => self.discarded,
            _ => None,
        }
    }
}

/// Jobs deleted, by the state they finished in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Completed jobs deleted.
    pub completed: u64,
    /// Cancelled jobs deleted.
    pub cancelled: u64,
    /// Discarded jobs deleted.
    pub discarded: u64,
}

impl Pruned {
    /// The jobs deleted that had finished in `state`.
    pub fn of(&self, state: JobState) -> u64 {
        match state {
            JobState::Completed => self.completed,
            JobState::Cancelled => self.cancelled,
            JobState::Discarded => self.discarded,
            _ => 0,
        }
    }

    /// All jobs deleted.
    pub fn total(&self) -> u64 {
        self.completed + self.cancelled + self.discarded
    }

    fn add(&mut self, state: JobState, deleted: u64) {
        match state {
            JobState::Completed => self.completed += deleted,
            JobState::Cancelled => self.cancelled += deleted,
            JobState::Discarded => self.discarded += deleted,
            _ => {}
        }
    }
}

/// Most jobs one store call deletes. Each call is its own short transaction, so the other
/// writers (SQLite has exactly one writer) wait at most one batch's time, however long the
/// history to delete: about 3 ms a batch on SQLite here.
pub const PRUNE_BATCH: u32 = 1_000;

/// Deletes every job that finished longer ago than its state's retention, as of `now`,
/// [`PRUNE_BATCH`] at a time, until none is left.
pub(crate) async fn prune(
    store: &dyn Store,
    retention: &Retention,
    now: Timestamp,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned::default();
    for state in FINISHED {
        let Some(keep) = retention.of(state) else {
            continue;
        };
        let before = now.before(keep);
        loop {
            let deleted = store.prune(state, before, PRUNE_BATCH).await?;
            pruned.add(state, deleted);
            if deleted < u64::from(PRUNE_BATCH) {
                break;
            }
        }
    }
    Ok(pruned)
}

/// Jobs this node has pruned since it started, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct PrunedTotals {
    completed: AtomicU64,
    cancelled: AtomicU64,
    discarded: AtomicU64,
}

impl PrunedTotals {
    pub(crate) fn add(&self, pruned: &Pruned) {
        // Relaxed: three independent counters, read only for display.
        self.completed
            .fetch_add(pruned.completed, Ordering::Relaxed);
        self.cancelled
            .fetch_add(pruned.cancelled, Ordering::Relaxed);
        self.discarded
            .fetch_add(pruned.discarded, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> Pruned {
        Pruned {
            completed: self.completed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            discarded: self.discarded.load(Ordering::Relaxed),
        }
    }
}
