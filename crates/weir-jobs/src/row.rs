//! The columns of the `job` table, shared by both stores: one order, one decoding.

use serde_json::value::RawValue;

use crate::model::{AttemptError, Job, JobId, JobState, Lease, Progress};
use crate::store::StoreError;
use crate::time::Timestamp;

/// Column list for `SELECT`, in the order [`RawJob`] reads them.
pub(crate) const COLUMNS: &str = "id, queue, kind, payload, priority, state, attempt, \
    max_attempts, timeout_ms, unique_key, concurrency_key, key_limit, run_at, created_at, \
    updated_at, finished_at, fencing_token, lease_worker, lease_expires_at, cancel_requested, \
    progress_percent, progress_message, result, errors";

/// The job table's partial indexes, the same SQL in both stores: `concat!`ed into each
/// store's first migration step (a step is a constant, so a macro and not a `format!`).
macro_rules! job_indexes {
    () => {
        "
        CREATE INDEX job_queued ON job (queue, priority, run_at, id)
            WHERE state IN ('scheduled', 'available', 'retrying');
        CREATE INDEX job_leases ON job (lease_expires_at) WHERE state = 'running';
        CREATE INDEX job_running_keys ON job (concurrency_key)
            WHERE state = 'running' AND concurrency_key IS NOT NULL;
        CREATE UNIQUE INDEX job_unique_key ON job (unique_key)
            WHERE unique_key IS NOT NULL AND state NOT IN ('completed', 'cancelled', 'discarded');
        "
    };
}
pub(crate) use job_indexes;

/// Waiting jobs by queue and kind, in lease order: a lease names the kinds its worker runs
/// and walks this index for each queue and kind (both stores' step after
/// [`job_finished_index`]). Replaces the first step's `job_queued`, which had no kind: a
/// lease for kind `a` read past every waiting job of other kinds ahead of it.
macro_rules! job_queued_by_kind_index {
    () => {
        "DROP INDEX job_queued;
        CREATE INDEX job_queued ON job (queue, kind, priority, run_at, id)
            WHERE state IN ('scheduled', 'available', 'retrying');"
    };
}
pub(crate) use job_queued_by_kind_index;

/// Finished jobs by the time they finished, for deleting them after their retention
/// (both stores' second migration step).
macro_rules! job_finished_index {
    () => {
        "CREATE INDEX job_finished ON job (finished_at)
            WHERE state IN ('completed', 'cancelled', 'discarded');"
    };
}
pub(crate) use job_finished_index;

/// A row as the database drivers hand it over, before JSON and state parsing.
#[derive(Debug)]
pub(crate) struct RawJob {
    pub(crate) id: i64,
    pub(crate) queue: String,
    pub(crate) kind: String,
    pub(crate) payload: String,
    pub(crate) priority: i64,
    pub(crate) state: String,
    pub(crate) attempt: i64,
    pub(crate) max_attempts: i64,
    pub(crate) timeout_ms: i64,
    pub(crate) unique_key: Option<String>,
    pub(crate) concurrency_key: Option<String>,
    pub(crate) key_limit: Option<i64>,
    pub(crate) run_at: i64,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) finished_at: Option<i64>,
    pub(crate) fencing_token: i64,
    pub(crate) lease_worker: Option<String>,
    pub(crate) lease_expires_at: Option<i64>,
    pub(crate) cancel_requested: bool,
    pub(crate) progress_percent: Option<f64>,
    pub(crate) progress_message: Option<String>,
    pub(crate) result: Option<String>,
    pub(crate) errors: String,
}

fn corrupt(id: i64, what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("job {id}: stored {what} is invalid: {error}"))
}

impl RawJob {
    pub(crate) fn into_job(self) -> Result<Job, StoreError> {
        let id = self.id;
        let json = |text: String, what: &str| {
            RawValue::from_string(text).map_err(|error| corrupt(id, what, error))
        };
        let lease = match (self.lease_worker, self.lease_expires_at) {
            (Some(worker), Some(expires_at)) => Some(Lease {
                worker,
                expires_at: Timestamp(expires_at),
            }),
            _ => None,
        };
        let errors: Vec<AttemptError> =
            serde_json::from_str(&self.errors).map_err(|error| corrupt(id, "errors", error))?;
        Ok(Job {
            id: JobId(id),
            queue: self.queue,
            kind: self.kind,
            payload: json(self.payload, "payload")?,
            priority: self.priority as i32,
            state: self
                .state
                .parse::<JobState>()
                .map_err(|error| corrupt(id, "state", error))?,
            attempt: self.attempt as u32,
            max_attempts: self.max_attempts as u32,
            timeout_ms: self.timeout_ms as u64,
            unique_key: self.unique_key,
            concurrency_key: self.concurrency_key,
            key_limit: self.key_limit.map(|limit| limit as u32),
            run_at: Timestamp(self.run_at),
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
            finished_at: self.finished_at.map(Timestamp),
            lease,
            fencing_token: self.fencing_token,
            cancel_requested: self.cancel_requested,
            progress: self.progress_percent.map(|percent| Progress {
                percent,
                message: self.progress_message.unwrap_or_default(),
            }),
            result: self.result.map(|text| json(text, "result")).transpose()?,
            errors,
        })
    }
}

/// The columns a change can touch, as the drivers take them (for `UPDATE … SET`).
#[derive(Debug)]
pub(crate) struct MutableColumns<'a> {
    pub(crate) state: &'static str,
    pub(crate) attempt: i64,
    pub(crate) max_attempts: i64,
    pub(crate) run_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) finished_at: Option<i64>,
    pub(crate) fencing_token: i64,
    pub(crate) lease_worker: Option<&'a str>,
    pub(crate) lease_expires_at: Option<i64>,
    pub(crate) cancel_requested: bool,
    pub(crate) progress_percent: Option<f64>,
    pub(crate) progress_message: Option<&'a str>,
    pub(crate) result: Option<&'a str>,
    pub(crate) errors: String,
}

impl<'a> MutableColumns<'a> {
    pub(crate) fn of(job: &'a Job) -> MutableColumns<'a> {
        MutableColumns {
            state: job.state.as_str(),
            attempt: i64::from(job.attempt),
            max_attempts: i64::from(job.max_attempts),
            run_at: job.run_at.0,
            updated_at: job.updated_at.0,
            finished_at: job.finished_at.map(|at| at.0),
            fencing_token: job.fencing_token,
            lease_worker: job.lease.as_ref().map(|lease| lease.worker.as_str()),
            lease_expires_at: job.lease.as_ref().map(|lease| lease.expires_at.0),
            cancel_requested: job.cancel_requested,
            progress_percent: job.progress.as_ref().map(|p| p.percent),
            progress_message: job.progress.as_ref().map(|p| p.message.as_str()),
            result: job.result.as_deref().map(RawValue::get),
            errors: serde_json::to_string(&job.errors).unwrap_or_else(|_| "[]".to_owned()),
        }
    }
}

/// `UPDATE` statement text writing [`MutableColumns`] in order, `$1`…`$14`, id `$15`.
pub(crate) const UPDATE: &str = "UPDATE job SET state = $1, attempt = $2, max_attempts = $3, \
    run_at = $4, updated_at = $5, finished_at = $6, fencing_token = $7, lease_worker = $8, \
    lease_expires_at = $9, cancel_requested = $10, progress_percent = $11, \
    progress_message = $12, result = $13, errors = $14 WHERE id = $15";

/// A job's state as a reader sees it at `now` (a placeholder): a scheduled or retrying job
/// whose time has come is available, as `Job::state_at` says.
pub(crate) fn shown_state_sql(now: &str) -> String {
    format!(
        "CASE WHEN state IN ('scheduled', 'retrying') AND run_at <= {now} \
         THEN 'available' ELSE state END"
    )
}

/// Jobs per queue and state as shown at `now` (a placeholder), every job read: for the
/// dashboard, on demand.
pub(crate) fn all_counts_sql(now: &str) -> String {
    format!(
        "SELECT queue, {} AS shown, count(*) FROM job GROUP BY 1, 2 ORDER BY 1, 2",
        shown_state_sql(now)
    )
}

/// The same for unfinished jobs only, through the partial indexes on waiting and running
/// jobs: the work grows with the jobs not yet finished, not with the history kept, so it
/// suits a metrics scrape (with 100,000 finished jobs the full count took 80 ms, holding
/// SQLite's one writer).
pub(crate) fn unfinished_counts_sql(now: &str) -> String {
    format!(
        "SELECT queue, {} AS shown, count(*) FROM job \
             WHERE state IN ('scheduled', 'available', 'retrying') GROUP BY 1, 2 \
         UNION ALL \
         SELECT queue, state, count(*) FROM job WHERE state = 'running' GROUP BY 1, 2 \
         ORDER BY 1, 2",
        shown_state_sql(now)
    )
}

/// Deletes a batch of finished jobs: `?1`/`$1` the state, `?2`/`$2` the time they must
/// have finished before, `?3`/`$3` the most to delete. The state list is the partial index
/// `job_finished`'s, word for word: SQLite uses a partial index only for a query whose
/// terms match its own.
pub(crate) fn prune_sql(placeholders: [&str; 3], lock: &str) -> String {
    let [state, before, limit] = placeholders;
    format!(
        "DELETE FROM job WHERE id IN (SELECT id FROM job \
            WHERE state IN ('completed', 'cancelled', 'discarded') AND state = {state} \
            AND finished_at < {before} ORDER BY finished_at LIMIT {limit}{lock})"
    )
}

/// Another unfinished job holding unique key `{key}`, if any (a retry must not give a key
/// to two unfinished jobs). `placeholders` are the key's and this job's id's, in the
/// store's syntax.
pub(crate) fn unique_key_holder_sql(placeholders: [&str; 2]) -> String {
    let [key, id] = placeholders;
    format!(
        "SELECT id FROM job WHERE unique_key = {key} AND id <> {id} \
         AND state NOT IN ('completed', 'cancelled', 'discarded')"
    )
}

/// Leaves out jobs whose concurrency key is already at its limit, in the claim query
/// itself: were they only skipped while scanning, a long run of them at the head of the
/// queue would hide every other job from a bounded scan.
pub(crate) const KEY_NOT_SATURATED: &str = "(concurrency_key IS NULL OR concurrency_key NOT IN ( \
    SELECT concurrency_key FROM job WHERE state = 'running' AND concurrency_key IS NOT NULL \
    GROUP BY concurrency_key HAVING count(*) >= max(coalesce(key_limit, 1))))";
