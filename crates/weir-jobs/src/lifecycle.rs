//! The rules of a job's life, written once for every store.
//!
//! A store loads the job inside its transaction (locking the row where the database needs
//! it), applies one of these functions, and writes the job back. Keeping the rules here, on
//! plain [`Job`] values, means SQLite and PostgreSQL cannot drift apart: they differ only in
//! how rows are found, locked and saved.

use std::time::Duration;

use serde_json::value::RawValue;
use thiserror::Error;

use crate::model::{AttemptError, Job, JobId, JobState, Lease, Progress};
use crate::time::Timestamp;

/// What a worker or an operator asks to do to one job.
#[derive(Debug, Clone)]
pub enum Action {
    /// "Still working": extends the lease and records progress.
    Heartbeat {
        /// The lease's fencing token.
        token: i64,
        /// Optional progress report.
        progress: Option<Progress>,
        /// How long the lease lasts from now.
        lease_ttl: Duration,
    },
    /// The attempt succeeded.
    Complete {
        /// The lease's fencing token.
        token: i64,
        /// The handler's result.
        result: Option<Box<RawValue>>,
    },
    /// The attempt failed.
    Fail {
        /// The lease's fencing token.
        token: i64,
        /// What went wrong.
        error: String,
        /// False when retrying cannot help (the job is discarded at once).
        retryable: bool,
    },
    /// The worker gives the job back without running it to the end (graceful shutdown): it
    /// is available again at once and the attempt does not count.
    Release {
        /// The lease's fencing token.
        token: i64,
    },
    /// Cancel: a queued job never runs; a running one is told in its next heartbeat.
    Cancel,
    /// Run a finished or waiting job again now (with one more attempt if it used them all).
    Retry,
}

impl Action {
    /// The action's name in messages and events.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Heartbeat { .. } => "heartbeat",
            Action::Complete { .. } => "complete",
            Action::Fail { .. } => "fail",
            Action::Release { .. } => "release",
            Action::Cancel => "cancel",
            Action::Retry => "retry",
        }
    }
}

/// One action on one job.
#[derive(Debug, Clone)]
pub struct Change {
    /// The job to act on; an id no job has gives [`ChangeError::NotFound`].
    pub id: JobId,
    /// What to do.
    pub action: Action,
}

/// Why an action was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChangeError {
    /// No job has this id.
    #[error("no job has id {0}")]
    NotFound(JobId),
    /// The token is not the job's current lease: the lease expired and the job was handed
    /// on (or finished). The caller must stop working on it.
    #[error("job {id}: the lease with token {token} is over (the job is {state}; its latest lease has token {current})")]
    LeaseLost {
        /// The job whose lease is over.
        id: JobId,
        /// The fencing token the request carried. It can equal `current` when the job is no
        /// longer running (completed already, say).
        token: i64,
        /// The job's current token.
        current: i64,
        /// The job's state now: `running` when a later lease holds it, else what it has
        /// become since (available after a rescue, retrying, completed, …).
        state: JobState,
    },
    /// The action does not apply in the job's state (cancel a completed job, retry a
    /// running one).
    #[error("job {id} is {state}: cannot {action}")]
    WrongState {
        /// The job the action was refused for.
        id: JobId,
        /// The job's state when refused: `running` for a retry, `completed` or `discarded`
        /// for a cancel.
        state: JobState,
        /// The refused action's name, as [`Action::name`] gives it.
        action: &'static str,
    },
    /// A retry of a finished unique job whose key another unfinished job holds now: two
    /// unfinished jobs never share a key.
    #[error("job {id}: unique key `{key}` is held by another unfinished job; cancel that one, or wait for it to finish")]
    UniqueKeyTaken {
        /// The job whose retry was refused.
        id: JobId,
        /// Its unique key.
        key: String,
    },
}

/// The unique key a change would make `job` hold again, if any: a retry brings a finished
/// job back among the unfinished, which share no key. The store checks that no other
/// unfinished job holds it.
pub fn key_taken_back<'a>(job: &'a Job, action: &Action) -> Option<&'a str> {
    let finished = job.state.is_final();
    match action {
        Action::Retry if finished => job.unique_key.as_deref(),
        _ => None,
    }
}

impl ChangeError {
    /// The job the refused action named.
    pub fn job_id(&self) -> JobId {
        match self {
            ChangeError::NotFound(id) => *id,
            ChangeError::LeaseLost { id, .. }
            | ChangeError::WrongState { id, .. }
            | ChangeError::UniqueKeyTaken { id, .. } => *id,
        }
    }
}

/// Exponential backoff with jitter between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure (before jitter).
    pub base: Duration,
    /// Largest delay before jitter: the doubling stops here, and jitter can still add up
    /// to 25%.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// 1 s, doubling per attempt, at most 1 hour.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3_600),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based): `base · 2^(attempt−1)`
    /// capped, then spread over ±25% so jobs that failed together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(40);
        let nominal = self
            .base
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.cap);
        nominal.mul_f64(0.75 + fastrand::f64() * 0.5)
    }
}

/// Hands `job` to `worker`: running, one more attempt, a new fencing token.
pub fn lease(job: &mut Job, worker: &str, lease_ttl: Duration, now: Timestamp) {
    job.state = JobState::Running;
    job.attempt += 1;
    job.fencing_token += 1;
    job.lease = Some(Lease {
        worker: worker.to_owned(),
        expires_at: now.after(lease_ttl),
    });
    job.progress = None;
    job.updated_at = now;
}

/// Applies `action` to `job` (loaded in the store's transaction) under `policy`.
pub fn apply(
    job: &mut Job,
    action: Action,
    policy: &RetryPolicy,
    now: Timestamp,
) -> Result<(), ChangeError> {
    let name = action.name();
    match action {
        Action::Heartbeat {
            token,
            progress,
            lease_ttl,
        } => {
            check_lease(job, token)?;
            if let Some(lease) = job.lease.as_mut() {
                lease.expires_at = now.after(lease_ttl);
            }
            if progress.is_some() {
                job.progress = progress;
            }
        }
        Action::Complete { token, result } => {
            check_lease(job, token)?;
            job.result = result;
            finish(job, JobState::Completed, now);
        }
        Action::Fail {
            token,
            error,
            retryable,
        } => {
            check_lease(job, token)?;
            job.errors.push(AttemptError {
                attempt: job.attempt,
                at: now,
                error,
            });
            after_failed_attempt(job, retryable, policy, now);
        }
        Action::Release { token } => {
            check_lease(job, token)?;
            job.lease = None;
            job.attempt = job.attempt.saturating_sub(1);
            if job.cancel_requested {
                finish(job, JobState::Cancelled, now);
            } else {
                job.state = JobState::Available;
                job.run_at = now;
            }
        }
        Action::Cancel => match job.state {
            state if state.is_queued() => finish(job, JobState::Cancelled, now),
            JobState::Running => job.cancel_requested = true,
            JobState::Cancelled => {}
            state => {
                return Err(ChangeError::WrongState {
                    id: job.id,
                    state,
                    action: name,
                })
            }
        },
        Action::Retry => {
            if job.state == JobState::Running {
                return Err(ChangeError::WrongState {
                    id: job.id,
                    state: job.state,
                    action: name,
                });
            }
            job.state = JobState::Available;
            job.run_at = now;
            job.finished_at = None;
            job.cancel_requested = false;
            if job.attempt >= job.max_attempts {
                job.max_attempts = job.attempt + 1;
            }
        }
    }
    job.updated_at = now;
    Ok(())
}

/// A running job whose lease ran out: its worker is presumed dead. The lost attempt is
/// recorded and the job runs again at once (or ends, when it was cancelled or has no
/// attempts left). Stores call this for every running job with `expires_at < now`.
pub fn rescue(job: &mut Job, policy: &RetryPolicy, now: Timestamp) {
    let worker = job
        .lease
        .as_ref()
        .map_or_else(String::new, |lease| lease.worker.clone());
    job.errors.push(AttemptError {
        attempt: job.attempt,
        at: now,
        error: format!("lease expired: worker `{worker}` stopped sending heartbeats"),
    });
    after_failed_attempt(job, true, policy, now);
    if job.state == JobState::Retrying {
        // A dead worker says nothing about the job: no reason to wait a backoff.
        job.state = JobState::Available;
        job.run_at = now;
    }
    job.updated_at = now;
}

fn after_failed_attempt(job: &mut Job, retryable: bool, policy: &RetryPolicy, now: Timestamp) {
    job.lease = None;
    if job.cancel_requested {
        finish(job, JobState::Cancelled, now);
    } else if !retryable || job.attempt >= job.max_attempts {
        finish(job, JobState::Discarded, now);
    } else {
        job.state = JobState::Retrying;
        job.run_at = now.after(policy.delay(job.attempt));
    }
}

fn finish(job: &mut Job, state: JobState, now: Timestamp) {
    job.state = state;
    job.lease = None;
    job.finished_at = Some(now);
}

fn check_lease(job: &Job, token: i64) -> Result<(), ChangeError> {
    if job.state == JobState::Running && job.fencing_token == token {
        Ok(())
    } else {
        Err(ChangeError::LeaseLost {
            id: job.id,
            token,
            current: job.fencing_token,
            state: job.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_the_cap() {
        let policy = RetryPolicy {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(60),
        };
        for (attempt, nominal) in [
            (1, 2.0),
            (2, 4.0),
            (3, 8.0),
            (5, 32.0),
            (6, 60.0),
            (90, 60.0),
        ] {
            for _ in 0..50 {
                let delay = policy.delay(attempt).as_secs_f64();
                assert!(
                    delay >= nominal * 0.75 && delay <= nominal * 1.25,
                    "attempt {attempt}: {delay}"
                );
            }
        }
    }
}
