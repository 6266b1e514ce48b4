//! Lifecycle events: what happened to a job, and the topics they are published on. The
//! names of those topics are made here and nowhere else.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::model::{Job, JobId};

/// Topics of a queue's events start with this (`queues.{name}`).
pub const QUEUE_TOPIC_PREFIX: &str = "queues.";
/// Topics of one job's events start with this (`jobs.{id}`).
pub const JOB_TOPIC_PREFIX: &str = "jobs.";

/// Where an event is published: every event goes to its queue's topic and to its job's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTopic<'a> {
    /// `queues.{name}`: every event of the queue's jobs.
    Queue(&'a str),
    /// `jobs.{id}`: one job's events.
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
    /// The job after the change.
    pub job: &'a Job,
}

/// Receives every lifecycle event: its topic and its JSON.
pub type EventSink = Arc<dyn Fn(EventTopic<'_>, String) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_named_by_queue_and_by_job() {
        assert_eq!(EventTopic::Queue("mail").to_string(), "queues.mail");
        assert_eq!(EventTopic::Job(JobId(42)).to_string(), "jobs.42");
    }
}
