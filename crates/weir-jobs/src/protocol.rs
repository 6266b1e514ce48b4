//! The jobs API on the wire: every request and answer of the producer and worker routes
//! (docs/workers.md), and the protocol's limits. The server's handlers and the
//! [`client`](crate::client) both use these types, so the two sides cannot drift apart.
//!
//! Requests refuse unknown fields (a typo is an error, not ignored).

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::{defaults, JobId, NewJob, Progress};
use crate::time::Timestamp;
use crate::JobsError;

/// Most jobs one lease request may ask for.
pub const MAX_LEASE: u32 = 100;
/// Longest worker name, in bytes.
pub const MAX_WORKER_NAME: usize = 200;
/// Most queue and kind pairs one lease names (its queues times its kinds): a lease looks
/// at each pair, so the product bounds its work.
pub const MAX_LEASE_LANES: usize = 256;
/// Error text kept per failed attempt, in bytes: longer is cut, so a chatty worker cannot
/// bloat the job's row.
pub const MAX_ERROR_TEXT: usize = 8 * 1024;
/// A page of the job list holds 1 to this many jobs (default [`DEFAULT_PAGE`]).
pub const MAX_PAGE: u32 = 500;
/// Jobs in a page of the list when the request does not say.
pub const DEFAULT_PAGE: u32 = 50;
/// Deepest nesting of arrays and objects a job's payload may have: serde_json's own limit
/// for what it parses into values, so every worker that reads the payload can. (A payload
/// is kept as raw text, which serde_json reads without that limit: 400,000 levels went in.)
pub const MAX_PAYLOAD_DEPTH: usize = 128;
/// Furthest ahead a job may be scheduled (`run_at`, or `delay_ms` from now): ten years.
/// Past it a value is a mistake (`delay_ms: 9223372036854775807` stored a year 292278994
/// that Weir's own parser then refused), not a plan.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Bytes a request may hold besides its payload or result (the other fields).
pub const FIELDS_OVERHEAD: u64 = 64 * 1024;

/// `POST /v1/jobs` (and each job of a batch): a job as a producer submits it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The queue (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The handler's name.
    pub kind: String,
    /// The handler's input (default `{}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Box<RawValue>>,
    /// Lower runs first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// When it may run (RFC 3339); or `delay_ms` from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<Timestamp>,
    /// Milliseconds from now until it may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Attempts before it is discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Time one attempt may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// At most one unfinished job holds this key; enqueueing it again returns that job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// Jobs with this key run at most `key_limit` at once, across the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// How many jobs of the `concurrency_key` may run at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_limit: Option<u32>,
}

impl JobRequest {
    /// The job to enqueue. `field` prefixes the names in errors (`jobs[3].` in a batch).
    pub fn into_new_job(self, field: &str) -> Result<NewJob, JobsError> {
        if self.run_at.is_some() && self.delay_ms.is_some() {
            return Err(JobsError::Invalid {
                field: format!("{field}run_at"),
                message: "give run_at or delay_ms, not both".into(),
            });
        }
        if self
            .delay_ms
            .is_some_and(|ms| ms > MAX_SCHEDULE_AHEAD.as_millis() as u64)
        {
            return Err(JobsError::Invalid {
                field: format!("{field}delay_ms"),
                message: format!("at most {} ms (ten years)", MAX_SCHEDULE_AHEAD.as_millis()),
            });
        }
        let payload = self
            .payload
            .unwrap_or_else(|| RawValue::from_string("{}".into()).expect("valid JSON"));
        let mut job = NewJob::new(
            self.queue.as_deref().unwrap_or(defaults::QUEUE),
            &self.kind,
            payload,
        );
        job.priority = self.priority.unwrap_or(0);
        job.run_at = self.run_at.or_else(|| {
            self.delay_ms
                .map(|ms| Timestamp::now().after(Duration::from_millis(ms)))
        });
        job.max_attempts = self.max_attempts.unwrap_or(job.max_attempts);
        job.timeout_ms = self.timeout_ms.unwrap_or(job.timeout_ms);
        job.unique_key = self.unique_key;
        job.concurrency_key = self.concurrency_key;
        job.key_limit = self.key_limit;
        Ok(job)
    }
}

/// `POST /v1/jobs/batch`: jobs enqueued all or nothing.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The jobs, in order.
    pub jobs: Vec<JobRequest>,
}

/// `POST /v1/lease`: a worker asks for jobs.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// The worker's name, shown in leases (1 to [`MAX_WORKER_NAME`] bytes).
    pub worker: String,
    /// Queues to take from (default `["default"]`).
    #[serde(default)]
    pub queues: Option<Vec<String>>,
    /// The kinds the worker runs (at least one): only jobs of these kinds are leased, so a
    /// worker never takes a job it has no handler for. Queues times kinds is at most
    /// [`MAX_LEASE_LANES`].
    pub kinds: Vec<String>,
    /// Jobs wanted, 1 to [`MAX_LEASE`] (default 1).
    #[serde(default)]
    pub max: Option<u32>,
    /// How long to wait for a job when none is ready (capped by the server).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// The answer to a lease: the jobs, and how long the lease lasts. The server sends whole
/// jobs; a worker reads them as [`LeasedJob`]s.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeaseReply<J = LeasedJob> {
    /// Leased jobs (empty when none came within the wait).
    pub jobs: Vec<J>,
    /// Lease length; heartbeat well within it.
    pub lease_ttl_ms: u64,
}

/// A leased job, as a worker reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct LeasedJob {
    /// The job's id, named in every report.
    pub id: JobId,
    /// The queue it was leased from.
    pub queue: String,
    /// Which handler runs it.
    pub kind: String,
    /// The handler's input, as submitted.
    pub payload: Box<RawValue>,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// Attempts allowed before the job is discarded.
    pub max_attempts: u32,
    /// Time this attempt may take.
    pub timeout_ms: u64,
    /// The lease's fencing token: every report carries it.
    pub fencing_token: i64,
}

/// `POST /v1/jobs/{id}/heartbeat`: the lease goes on.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The lease's fencing token.
    pub token: i64,
    /// Progress to show, if any.
    #[serde(default)]
    pub progress: Option<Progress>,
}

/// The answer to a heartbeat.
#[derive(Debug, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The job was cancelled: stop and report failure.
    pub cancel: bool,
    /// The lease now lasts until then.
    pub expires_at: Option<Timestamp>,
}

/// `POST /v1/jobs/{id}/complete`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The lease's fencing token.
    pub token: i64,
    /// What the handler returned (default `null`).
    #[serde(default)]
    pub result: Option<Box<RawValue>>,
}

/// One job's completion in a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    /// The job whose handler finished.
    pub id: JobId,
    /// The lease's fencing token.
    pub token: i64,
    /// What the handler returned (default `null`).
    #[serde(default = "null")]
    pub result: Box<RawValue>,
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("valid JSON")
}

/// `POST /v1/jobs/complete`: many completions in one request, each standing alone.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteBatch<'a> {
    /// The completions (1 to the server's `jobs.max_batch`).
    pub jobs: Cow<'a, [Completion]>,
}

/// One completion's outcome in a batch's answer: `ok`, or the status the single-job
/// endpoint would have answered with its error.
#[derive(Debug, Serialize, Deserialize)]
pub struct CompletionOutcome {
    /// The job this outcome is for.
    pub id: JobId,
    /// True when the job is now completed. False (left out on the wire) when the completion
    /// was refused: `status` and `error` say why.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ok: bool,
    /// The refusal's HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The refusal's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The lease is gone: stop working on the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_lost: Option<bool>,
}

/// The answer to a batch of completions: one outcome per completion, in order.
#[derive(Debug, Serialize, Deserialize)]
pub struct CompleteBatchReply {
    /// One outcome per completion sent, in the same order.
    pub jobs: Vec<CompletionOutcome>,
}

/// `POST /v1/jobs/{id}/fail`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// The lease's fencing token.
    pub token: i64,
    /// What went wrong (cut at [`MAX_ERROR_TEXT`] bytes).
    pub error: String,
    /// Whether another attempt may succeed (default true).
    #[serde(default = "yes")]
    pub retryable: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/jobs/{id}/release`: give the job back unrun.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The lease's fencing token.
    pub token: i64,
}
