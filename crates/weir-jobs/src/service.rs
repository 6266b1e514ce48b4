//! The job service: what the server's API calls. It wraps a [`Store`] with validation,
//! long-poll leasing, lifecycle events, the rescue of expired leases and periodic jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cron::Cron;
use crate::events::{EventSink, EventTopic, JobEvent, JobSummary};
use crate::lifecycle::{Action, Change, ChangeError};
use crate::model::{Enqueued, Job, JobId, JobState, NewJob};
use crate::protocol::{MAX_LEASE_LANES, MAX_PAYLOAD_DEPTH, MAX_SCHEDULE_AHEAD};
use crate::retention::{Pruned, PrunedTotals, Retention};
use crate::store::{Claim, ListQuery, QueueCount, Store, StoreError};
use crate::time::Timestamp;
use crate::wakeups::{Ready, Wakeups};

/// Limits and timings of the job service.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// A lease lasts this long without a heartbeat. Workers beat every third of it.
    pub lease_ttl: Duration,
    /// How often expired leases are looked for.
    pub rescue_interval: Duration,
    /// Largest payload, in bytes of JSON.
    pub max_payload: usize,
    /// Most jobs in one enqueue request.
    pub max_batch: usize,
    /// Longest a lease request may wait for work.
    pub max_lease_wait: Duration,
    /// Most jobs one lease request may take.
    pub max_lease: u32,
    /// How often a waiting lease looks again with no wake-up, for jobs that became ready
    /// where no wake-up reaches it (a job written by an older node, say). Wake-ups, and the
    /// `run_at` of scheduled and retrying jobs, end a wait sooner.
    pub lease_recheck: Duration,
    /// How long finished jobs are kept before they are deleted.
    pub retention: Retention,
    /// How often finished jobs past their retention are looked for and deleted.
    pub prune_interval: Duration,
    /// Periodic jobs, looked at every `rescue_interval`; each fires once across the cluster.
    pub schedules: Vec<Schedule>,
    /// The kinds each listed queue accepts; an enqueue of another kind to it is refused.
    /// Queues not listed take any kind.
    pub queue_kinds: BTreeMap<String, BTreeSet<String>>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            lease_ttl: Duration::from_secs(10),
            rescue_interval: Duration::from_secs(1),
            max_payload: 1 << 20,
            max_batch: 1_000,
            max_lease_wait: Duration::from_secs(60),
            max_lease: crate::protocol::MAX_LEASE,
            lease_recheck: Duration::from_secs(1),
            retention: Retention::default(),
            prune_interval: Duration::from_secs(10),
            schedules: Vec::new(),
            queue_kinds: BTreeMap::new(),
        }
    }
}

/// A periodic job: `job` is enqueued at every time `cron` matches, once across the cluster.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Unique name (the key of its slot in the store).
    pub name: String,
    /// When `job` is enqueued. A new schedule first fires at its first match after a node
    /// first sees it; slots missed while no node ran fire once, not once each.
    pub cron: Cron,
    /// The job enqueued at each match. Its `run_at` is ignored: each copy is due at once.
    pub job: NewJob,
}

/// Why a request was refused. The message names the field at fault.
#[derive(Debug, Error)]
pub enum JobsError {
    /// Invalid input: (field, what is wrong).
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as named in the API.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The payload is larger than `jobs.max_payload`.
    #[error("{field}: {size} bytes exceeds the limit of {limit} bytes (setting jobs.max_payload)")]
    PayloadTooLarge {
        /// The field, as named in the API (`payload`, `jobs[3].payload`).
        field: String,
        /// The payload's size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The action does not apply (see [`ChangeError`]).
    #[error(transparent)]
    Refused(#[from] ChangeError),
    /// The database failed; nothing happened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> JobsError {
    JobsError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// The job service. Clone freely; clones share everything.
#[derive(Clone)]
pub struct Jobs {
    store: Arc<dyn Store>,
    config: Arc<JobsConfig>,
    /// This node's waiting leases, woken by queue when a job becomes ready here (and, for
    /// a store shared between nodes, when another node says one did).
    wakeups: Arc<Wakeups>,
    events: Option<EventSink>,
    pruned: Arc<PrunedTotals>,
}

impl fmt::Debug for Jobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jobs")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether `text` may name a queue or a kind: 1–128 characters of letters, digits, `_`,
/// `-` and `.` (no space or colon: the store's notifications rely on it).
fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// How deeply arrays and objects nest in `json` (valid JSON), without recursion.
fn json_depth(json: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Checks a queue's name, named `field` in the error (`queue`, `queues[2]`).
pub fn validate_queue(queue: &str, field: &str) -> Result<(), JobsError> {
    if !is_name(queue) {
        return Err(invalid(
            field,
            format!("`{queue}` must be 1–128 characters of letters, digits, _ - ."),
        ));
    }
    Ok(())
}

/// Checks the fields of a job a producer submitted.
pub fn validate(job: &NewJob, config: &JobsConfig) -> Result<(), JobsError> {
    validate_queue(&job.queue, "queue")?;
    if !is_name(&job.kind) {
        return Err(invalid(
            "kind",
            format!(
                "`{}` must be 1–128 characters of letters, digits, _ - .",
                job.kind
            ),
        ));
    }
    if let Some(kinds) = config.queue_kinds.get(&job.queue) {
        if !kinds.contains(&job.kind) {
            let accepted: Vec<&str> = kinds.iter().map(String::as_str).collect();
            return Err(invalid(
                "kind",
                format!(
                    "queue `{}` does not take kind `{}` (setting jobs.queue_kinds; it takes: {})",
                    job.queue,
                    job.kind,
                    accepted.join(", ")
                ),
            ));
        }
    }
    if job.payload.get().len() > config.max_payload {
        return Err(JobsError::PayloadTooLarge {
            field: "payload".into(),
            size: job.payload.get().len(),
            limit: config.max_payload,
        });
    }
    if job
        .run_at
        .is_some_and(|at| at > Timestamp::now().after(MAX_SCHEDULE_AHEAD))
    {
        return Err(invalid("run_at", "at most ten years ahead"));
    }
    if json_depth(job.payload.get()) > MAX_PAYLOAD_DEPTH {
        return Err(invalid(
            "payload",
            format!("nested deeper than {MAX_PAYLOAD_DEPTH} levels"),
        ));
    }
    if job.max_attempts == 0 || job.max_attempts > 1_000 {
        return Err(invalid("max_attempts", "must be 1–1000"));
    }
    if job.timeout_ms == 0 || job.timeout_ms > 7 * 24 * 3_600_000 {
        return Err(invalid("timeout_ms", "must be 1 ms – 7 days"));
    }
    if !(-1_000_000..=1_000_000).contains(&job.priority) {
        return Err(invalid("priority", "must be between -1000000 and 1000000"));
    }
    for (field, key) in [
        ("unique_key", &job.unique_key),
        ("concurrency_key", &job.concurrency_key),
    ] {
        if key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 256) {
            return Err(invalid(field, "must be 1–256 bytes"));
        }
    }
    if job.key_limit == Some(0) {
        return Err(invalid("key_limit", "must be at least 1"));
    }
    if job.key_limit.is_some() && job.concurrency_key.is_none() {
        return Err(invalid("key_limit", "needs a concurrency_key"));
    }
    Ok(())
}

/// The event name for a job that just reached its state through `action`.
fn event_name(action: &str, job: &Job) -> &'static str {
    match (action, job.state) {
        ("heartbeat", _) => "progress",
        ("release", JobState::Available) => "released",
        ("cancel", JobState::Running) => "cancel_requested",
        ("retry", _) => "enqueued",
        (_, JobState::Completed) => "completed",
        (_, JobState::Retrying) => "retrying",
        (_, JobState::Cancelled) => "cancelled",
        (_, JobState::Discarded) => "discarded",
        (_, JobState::Running) => "started",
        _ => "enqueued",
    }
}

impl Jobs {
    /// The service over `store`. `events` receives every lifecycle event.
    pub fn new(store: Arc<dyn Store>, config: JobsConfig, events: Option<EventSink>) -> Jobs {
        Jobs {
            wakeups: store.wakeups().unwrap_or_default(),
            store,
            config: Arc::new(config),
            events,
            pruned: Arc::default(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &JobsConfig {
        &self.config
    }

    /// How many lease requests on this node wait for a job on `queue`.
    pub fn waiting_leases(&self, queue: &str) -> usize {
        self.wakeups.waiting_on(queue)
    }

    /// The lease requests waiting on this node, by queue (queues where none waits left
    /// out), in name order.
    pub fn waiting_leases_by_queue(&self) -> Vec<(String, usize)> {
        self.wakeups.waiting()
    }

    fn publish(&self, event: &'static str, job: &Job) {
        let Some(sink) = &self.events else { return };
        let Ok(json) = serde_json::to_string(&JobEvent {
            event,
            job: JobSummary::of(job),
        }) else {
            return;
        };
        sink(EventTopic::Queue(&job.queue), json.clone());
        sink(EventTopic::Job(job.id), json);
    }

    /// Validates and enqueues, all or nothing. Each job is validated first; the first bad
    /// one refuses the batch, named by its index.
    pub async fn enqueue(&self, batch: Vec<NewJob>) -> Result<Vec<Enqueued>, JobsError> {
        if batch.is_empty() {
            return Err(invalid("jobs", "the batch is empty"));
        }
        if batch.len() > self.config.max_batch {
            return Err(invalid(
                "jobs",
                format!(
                    "{} jobs exceeds the batch limit of {} (setting jobs.max_batch)",
                    batch.len(),
                    self.config.max_batch
                ),
            ));
        }
        for (index, job) in batch.iter().enumerate() {
            validate(job, &self.config).map_err(|error| match error {
                JobsError::Invalid { field, message } if batch.len() > 1 => {
                    invalid(format!("jobs[{index}].{field}"), message)
                }
                JobsError::PayloadTooLarge { field, size, limit } if batch.len() > 1 => {
                    JobsError::PayloadTooLarge {
                        field: format!("jobs[{index}].{field}"),
                        size,
                        limit,
                    }
                }
                other => other,
            })?;
        }
        let enqueued = self.store.enqueue(batch, Timestamp::now()).await?;
        let mut ready = Ready::default();
        for one in enqueued.iter().filter(|one| !one.existing) {
            self.publish("enqueued", &one.job);
            ready.add_job(&one.job);
        }
        self.wake(&ready);
        Ok(enqueued)
    }

    /// Wakes one waiting lease per ready job, on that job's queue (see [`Wakeups`]).
    fn wake(&self, ready: &Ready) {
        if !ready.is_empty() {
            self.wakeups.wake(ready);
        }
    }

    /// The job with `id`; [`ChangeError::NotFound`] (as [`JobsError::Refused`]) when there
    /// is none.
    pub async fn get(&self, id: JobId) -> Result<Job, JobsError> {
        self.store
            .get(id)
            .await?
            .ok_or(JobsError::Refused(ChangeError::NotFound(id)))
    }

    /// A page of jobs, newest first.
    pub async fn list(&self, query: ListQuery) -> Result<Vec<Job>, JobsError> {
        Ok(self.store.list(query, Timestamp::now()).await?)
    }

    /// Counts per queue and state (every job read).
    pub async fn counts(&self) -> Result<Vec<QueueCount>, JobsError> {
        Ok(self.store.counts(Timestamp::now()).await?)
    }

    /// Counts per queue and state of unfinished jobs only: cheap however long the history.
    pub async fn unfinished_counts(&self) -> Result<Vec<QueueCount>, JobsError> {
        Ok(self.store.unfinished_counts(Timestamp::now()).await?)
    }

    /// Leases jobs for a worker, waiting up to `wait` (capped by `max_lease_wait`) for one
    /// to become ready. Returns early, empty, when `stop` fires.
    pub async fn lease(
        &self,
        mut claim: Claim,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<Job>, JobsError> {
        if claim.queues.is_empty() {
            return Err(invalid("queues", "name at least one queue"));
        }
        if claim.kinds.is_empty() {
            return Err(invalid(
                "kinds",
                "name the kinds this worker runs: only jobs of those kinds are leased",
            ));
        }
        for (index, kind) in claim.kinds.iter().enumerate() {
            if !is_name(kind) {
                return Err(invalid(
                    format!("kinds[{index}]"),
                    format!("`{kind}` must be 1–128 characters of letters, digits, _ - ."),
                ));
            }
        }
        let lanes = claim.queues.len().saturating_mul(claim.kinds.len());
        if lanes > MAX_LEASE_LANES {
            return Err(invalid(
                "kinds",
                format!(
                    "{} queues times {} kinds is {lanes}; a lease takes at most {MAX_LEASE_LANES}",
                    claim.queues.len(),
                    claim.kinds.len()
                ),
            ));
        }
        if claim.max == 0 || claim.max > self.config.max_lease {
            return Err(invalid(
                "max",
                format!("must be 1–{}", self.config.max_lease),
            ));
        }
        claim.lease_ttl = self.config.lease_ttl;
        let deadline = Instant::now() + wait.min(self.config.max_lease_wait);
        // Registered before the first look and until the lease returns, so a job enqueued
        // between a look and the wait is not missed, and a wake-up it does not use goes on
        // to the next lease (see `Wakeups`).
        let registration = self.wakeups.register(&claim.queues, &claim.kinds);
        loop {
            let now = Timestamp::now();
            let leased = self.store.claim(claim.clone(), now).await?;
            if !leased.is_empty() {
                for job in &leased {
                    self.publish("started", job);
                }
                return Ok(leased);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stop.is_cancelled() {
                return Ok(Vec::new());
            }
            // Sleep until something may be ready: a wake-up, the next scheduled job, or a
            // periodic look (a job another process made ready without a notification, such
            // as a retry whose backoff ended).
            let mut nap = left.min(self.config.lease_recheck);
            let next_run_at =
                self.store
                    .next_run_at(claim.queues.clone(), claim.kinds.clone(), now);
            if let Some(next) = next_run_at.await? {
                nap = nap.min(now.until(next));
            }
            tokio::select! {
                () = registration.woken() => {}
                () = tokio::time::sleep(nap) => {}
                () = stop.cancelled() => return Ok(Vec::new()),
            }
        }
    }

    /// Applies actions; each result stands alone.
    pub async fn change(
        &self,
        changes: Vec<Change>,
    ) -> Result<Vec<Result<Job, ChangeError>>, JobsError> {
        let names: Vec<&'static str> = changes.iter().map(|c| c.action.name()).collect();
        let quiet_heartbeat: Vec<bool> = changes
            .iter()
            .map(|c| matches!(&c.action, Action::Heartbeat { progress: None, .. }))
            .collect();
        let now = Timestamp::now();
        let outcomes = self.store.change(changes, now).await?;
        let mut ready = Ready::default();
        for ((outcome, name), quiet) in outcomes.iter().zip(names).zip(quiet_heartbeat) {
            if let Ok(job) = outcome {
                if !quiet {
                    self.publish(event_name(name, job), job);
                }
                // A released or retried job, or a keyed one that stopped (`Ready::add_job`).
                ready.add_job(job);
            }
        }
        self.wake(&ready);
        Ok(outcomes)
    }

    /// One action on one job.
    pub async fn act(&self, id: JobId, action: Action) -> Result<Job, JobsError> {
        let mut outcomes = self.change(vec![Change { id, action }]).await?;
        Ok(outcomes.pop().ok_or(StoreError::Closed)??)
    }

    /// Runs until `stop`: rescues expired leases, fires periodic jobs and deletes finished
    /// jobs past their retention.
    pub async fn maintain(&self, stop: CancellationToken) {
        // Two loops in one task, polled together: deleting a long history (the first start
        // after the retention was shortened, say) must not hold up the rescue of leases.
        tokio::join!(self.rescue_and_fire(&stop), self.prune_loop(&stop));
    }

    /// Deletes every finished job past its retention at `now`, and says how many by state.
    pub async fn prune(&self, now: Timestamp) -> Result<Pruned, JobsError> {
        let pruned = crate::retention::prune(&*self.store, &self.config.retention, now).await?;
        self.pruned.add(&pruned);
        Ok(pruned)
    }

    /// Finished jobs this node has deleted since it started.
    pub fn pruned_total(&self) -> Pruned {
        self.pruned.read()
    }

    async fn prune_loop(&self, stop: &CancellationToken) {
        if self.config.retention == Retention::FOREVER {
            return;
        }
        let mut tick = tokio::time::interval(self.config.prune_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let pass = async {
                tick.tick().await;
                self.prune(Timestamp::now()).await
            };
            // A pass is stopped between batches: each batch is its own transaction.
            let outcome = tokio::select! {
                outcome = pass => outcome,
                () = stop.cancelled() => return,
            };
            match outcome {
                Ok(pruned) if pruned.total() > 0 => tracing::info!(
                    completed = pruned.completed,
                    cancelled = pruned.cancelled,
                    discarded = pruned.discarded,
                    "finished jobs past their retention deleted"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "deleting finished jobs failed"),
            }
        }
    }

    async fn rescue_and_fire(&self, stop: &CancellationToken) {
        let mut tick = tokio::time::interval(self.config.rescue_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            match self.store.rescue(Timestamp::now()).await {
                Ok(rescued) if !rescued.is_empty() => {
                    tracing::warn!(jobs = rescued.len(), "leases expired; jobs handed on");
                    for job in &rescued {
                        self.publish("rescued", job);
                    }
                    self.wake(&Ready::of(&rescued));
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "rescuing expired leases failed"),
            }
            for schedule in &self.config.schedules {
                if let Err(error) = self.fire_if_due(schedule).await {
                    tracing::warn!(schedule = %schedule.name, %error, "periodic job failed to enqueue");
                }
            }
        }
    }

    async fn fire_if_due(&self, schedule: &Schedule) -> Result<(), JobsError> {
        let now = Timestamp::now();
        let Some(due) = self.store.schedule_due(schedule.name.clone()).await? else {
            // First sight of this schedule: it starts at its next match, not at the moment
            // the server starts. (Of two nodes, the first to record the slot wins.)
            if let Some(first) = schedule.cron.next_after(now) {
                self.store
                    .start_schedule(schedule.name.clone(), first)
                    .await?;
            }
            return Ok(());
        };
        if due > now {
            return Ok(());
        }
        // Missed slots (the cluster was down) fire once, not once per missed slot.
        let Some(next) = schedule.cron.next_after(now) else {
            return Ok(());
        };
        let mut job = schedule.job.clone();
        job.run_at = None;
        if let Some(enqueued) = self
            .store
            .fire_schedule(schedule.name.clone(), due, next, job, now)
            .await?
        {
            tracing::info!(schedule = %schedule.name, job = %enqueued.job.id, "periodic job enqueued");
            self.publish("enqueued", &enqueued.job);
            self.wake(&Ready::of([&enqueued.job]));
        }
        Ok(())
    }
}
