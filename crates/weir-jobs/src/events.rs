//! Lifecycle events: what happened to a job, and the topics they are published on. The
//! names of those topics are made here and nowhere else.
//!
//! The topics are system topics (`$…`): clients cannot publish to them (a forged
//! `completed` would hide the job's real updates), and reading them needs the right to read
//! jobs. An event carries no payload, result, error text or fencing token: those can hold
//! secrets (an `http` job's `Authorization` header), and a client that may read them
//! fetches the job.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::model::{Job, JobId, JobState, Progress};
use crate::time::Timestamp;

/// Topics of a queue's events start with this (`$queues.{name}`).
pub const QUEUE_TOPIC_PREFIX: &str = "$queues.";
/// Topics of one job's events start with this (`$jobs.{id}`).
pub const JOB_TOPIC_PREFIX: &str = "$jobs.";

/// Where an event is published: every event goes to its queue's topic and to its job's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTopic<'a> {
    /// `$queues.{name}`: every event of the queue's jobs.
    Queue(&'a str),
    /// `$jobs.{id}`: one job's events.
    Job(JobId),
}

impl fmt::Display for EventTopic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventTopic::Queue(queue) => write!(f, "{QUEUE_TOPIC_PREFIX}{queue}"),
            EventTopic::Job(id) => write!(f, "{JOB_TOPIC_PREFIX}{id}"),
        }
    }
}

/// A lifecycle event, as published on its [`EventTopic`]s.
#[derive(Debug, Serialize)]
pub struct JobEvent<'a> {
    /// What happened: `enqueued`, `started`, `progress`, `completed`, `retrying`,
    /// `cancel_requested`, `cancelled`, `discarded`, `released` or `rescued`.
    pub event: &'static str,
    /// The job after the change, without what may be secret.
    pub job: JobSummary<'a>,
}

/// What an event tells of a job: its place and progress, not its contents.
#[derive(Debug, Serialize)]
pub struct JobSummary<'a> {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: &'a str,
    /// Its kind.
    pub kind: &'a str,
    /// Smaller runs first.
    pub priority: i32,
    /// Its state after the change.
    pub state: JobState,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Earliest time of the next attempt.
    pub run_at: Timestamp,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When the store last wrote it.
    pub updated_at: Timestamp,
    /// When it reached a final state.
    pub finished_at: Option<Timestamp>,
    /// A cancel was asked for while it ran.
    pub cancel_requested: bool,
    /// The last progress its worker reported.
    pub progress: Option<&'a Progress>,
    /// Failed attempts so far (their errors are read with the job).
    pub failed_attempts: usize,
}

impl<'a> JobSummary<'a> {
    /// The summary of `job`.
    pub fn of(job: &'a Job) -> JobSummary<'a> {
        JobSummary {
            id: job.id,
            queue: &job.queue,
            kind: &job.kind,
            priority: job.priority,
            state: job.state,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            run_at: job.run_at,
            created_at: job.created_at,
            updated_at: job.updated_at,
            finished_at: job.finished_at,
            cancel_requested: job.cancel_requested,
            progress: job.progress.as_ref(),
            failed_attempts: job.errors.len(),
        }
    }
}

/// Receives every lifecycle event: its topic and its JSON.
pub type EventSink = Arc<dyn Fn(EventTopic<'_>, String) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_named_by_queue_and_by_job() {
        assert_eq!(EventTopic::Queue("mail").to_string(), "$queues.mail");
        assert_eq!(EventTopic::Job(JobId(42)).to_string(), "$jobs.42");
    }
}
