//! Distributed background jobs for Weir.
//!
//! - [`model`]: what a job is and the states it moves through.
//! - [`lifecycle`]: the rules of those moves (leases with fencing tokens, retries with
//!   backoff, cancellation, rescue of dead workers), written once for every store.
//! - [`Store`]: what a database must provide, with [`SqliteStore`] (embedded default) and
//!   [`PostgresStore`] (several nodes) implementing it; one conformance suite tests both.

pub mod client;
pub mod completions;
pub mod cron;
mod events;
pub mod lifecycle;
pub mod model;
pub mod pace;
mod postgres;
pub mod protocol;
pub mod retention;
mod row;
mod service;
mod sqlite;
pub mod store;
pub mod time;
pub mod wakeups;
pub mod worker;

pub use events::{
    EventSink, EventTopic, JobEvent, JobSummary, JOB_TOPIC_PREFIX, QUEUE_TOPIC_PREFIX,
};
pub use lifecycle::{Action, Change, ChangeError, RetryPolicy};
pub use model::{Enqueued, Job, JobId, JobState, NewJob, Progress};
pub use postgres::PostgresStore;
pub use retention::{Pruned, Retention};
pub use service::{validate, validate_queue, Jobs, JobsConfig, JobsError, Schedule};
pub use sqlite::SqliteStore;
pub use store::{Claim, ListQuery, QueueCount, Store, StoreError, StoreOptions};
pub use time::Timestamp;
