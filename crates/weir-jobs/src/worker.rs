//! The Rust worker runtime: leases jobs over HTTP, runs each with its kind's handler, keeps
//! the lease alive with heartbeats (carrying progress), and reports the outcome.
//!
//! - **Concurrency**: at most `concurrency` jobs run at once (a semaphore). A lease request
//!   asks for as many jobs as there is room for: the free slots, plus, when jobs are short,
//!   some leased ahead that wait for a slot with their leases kept by heartbeats (see
//!   [`crate::pace`]). It long-polls when none is ready.
//! - **Reports**: completions go through one reporter task that batches them (see
//!   [`crate::completions`]); failures, releases and heartbeats are requests of their own.
//! - **Cancellation and timeouts**: each job gets a [`CancellationToken`]. It fires when a
//!   heartbeat reply says the job was cancelled, when the job's timeout passes, when the
//!   lease is lost, or at the shutdown deadline. Handlers check it at their await points.
//! - **Shutdown**: stop leasing (a lease already sent is answered, and the jobs it brings
//!   are released unrun), let running jobs finish until the deadline, then cancel the rest
//!   and release their leases, so they run again at once elsewhere.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::client::{Client, ClientError};
use crate::completions::Completions;
use crate::model::Progress;
use crate::pace::Pace;
use crate::protocol::{LeaseReply, LeasedJob};

/// What a handler returns: the result (JSON) or why it failed.
pub type HandlerResult = Result<Box<RawValue>, JobFailure>;

/// How a handler reports a failed attempt: the server keeps `message` in the job's error
/// history, and `retryable` says whether the job may run again.
#[derive(Debug, Clone)]
pub struct JobFailure {
    /// What went wrong.
    pub message: String,
    /// False when another attempt cannot help (bad input): the job is discarded.
    pub retryable: bool,
}

impl JobFailure {
    /// A failure worth retrying.
    pub fn retry(message: impl Into<String>) -> JobFailure {
        JobFailure {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure no retry can fix.
    pub fn fatal(message: impl Into<String>) -> JobFailure {
        JobFailure {
            message: message.into(),
            retryable: false,
        }
    }
}

/// What a handler gets: the job, its cancellation token and a way to report progress.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job as the lease delivered it: its input, attempt number, timeout and the fencing
    /// token every report carries.
    pub job: Arc<LeasedJob>,
    /// Fires when the job must stop (cancelled, timed out, lease lost, shutdown).
    pub cancel: CancellationToken,
    progress: Arc<Mutex<Option<Progress>>>,
}

impl JobContext {
    /// Records progress; it travels with the next heartbeat.
    pub fn progress(&self, percent: f64, message: impl Into<String>) {
        if let Ok(mut slot) = self.progress.lock() {
            *slot = Some(Progress {
                percent: percent.clamp(0.0, 100.0),
                message: message.into(),
            });
        }
    }

    fn take_progress(&self) -> Option<Progress> {
        self.progress.lock().ok().and_then(|mut slot| slot.take())
    }
}

type BoxedHandler =
    Arc<dyn Fn(JobContext) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>> + Send + Sync>;

/// Handlers by job kind.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, BoxedHandler>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<&String> = self.handlers.keys().collect();
        kinds.sort();
        f.debug_struct("Registry").field("kinds", &kinds).finish()
    }
}

impl Registry {
    /// A registry with no handlers ([`Registry::with_builtins`] has `echo` and `sleep`).
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `handler` for jobs of `kind`.
    pub fn register<F, Fut>(&mut self, kind: &str, handler: F) -> &mut Registry
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.handlers.insert(
            kind.to_string(),
            Arc::new(move |ctx| Box::pin(handler(ctx))),
        );
        self
    }

    /// The registry with the built-in kinds: `echo` and `sleep`.
    pub fn with_builtins() -> Registry {
        let mut registry = Registry::new();
        registry.register("echo", |ctx: JobContext| async move {
            Ok(ctx.job.payload.clone())
        });
        registry.register("sleep", sleep_job);
        registry
    }

    /// Keeps only the kinds `keep` says yes to (a worker runs the built-in kinds its
    /// operator chose).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) -> &mut Registry {
        self.handlers.retain(|kind, _| keep(kind));
        self
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }
}

/// `sleep`: payload `{"ms": N}`; reports progress every tenth and stops when cancelled.
async fn sleep_job(ctx: JobContext) -> HandlerResult {
    #[derive(serde::Deserialize)]
    struct Sleep {
        ms: u64,
    }
    let sleep: Sleep = serde_json::from_str(ctx.job.payload.get())
        .map_err(|error| JobFailure::fatal(format!("payload: expected {{\"ms\": N}}: {error}")))?;
    let step = Duration::from_millis(sleep.ms) / 10;
    for tenth in 1..=10u32 {
        tokio::select! {
            () = tokio::time::sleep(step) => ctx.progress(f64::from(tenth * 10), format!("slept {}0%", tenth)),
            () = ctx.cancel.cancelled() => return Err(JobFailure::retry("cancelled while sleeping")),
        }
    }
    RawValue::from_string(format!("{{\"slept_ms\":{}}}", sleep.ms))
        .map_err(|error| JobFailure::fatal(error.to_string()))
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Name shown in leases (host and process id by default).
    pub name: String,
    /// Queues to take jobs from.
    pub queues: Vec<String>,
    /// Most jobs running at once, each in a slot of its own; 0 counts as 1.
    pub concurrency: usize,
    /// Most jobs leased ahead of the free slots, queued in the worker (heartbeats keep
    /// their leases) so that a slot that frees starts its next job at once and leases and
    /// completions carry more jobs each. 0: none.
    pub prefetch: usize,
    /// Lease ahead only as many jobs as the slots should start within this time, judged
    /// from the jobs' recent run times (see `pace`): queued jobs cannot run elsewhere
    /// meanwhile. `None`: always `prefetch`.
    pub prefetch_within: Option<Duration>,
    /// Running jobs get this long to finish at shutdown before they are released.
    pub shutdown_deadline: Duration,
    /// Longest wait of one lease request. It also bounds how long an idle worker takes to
    /// stop: a lease in flight at the stop is waited for (see `Worker::run`).
    pub lease_wait: Duration,
}

/// The worker runtime: leases jobs through a [`Client`], runs them with the
/// [`Registry`]'s handlers and reports the outcomes (see the module docs).
#[derive(Debug)]
pub struct Worker {
    client: Arc<Client>,
    registry: Arc<Registry>,
    config: WorkerConfig,
}

/// How one job ended on this worker.
enum Outcome {
    Done(HandlerResult),
    /// The lease is gone: say nothing more about the job.
    LeaseLost,
    /// Give the job back unfinished: the shutdown deadline passed, or the worker stopped
    /// or the job was cancelled before it started.
    Release,
    /// The job's timeout passed: a failed attempt.
    TimedOut,
}

impl Worker {
    /// A worker using `client` and `registry`.
    pub fn new(client: Client, registry: Registry, config: WorkerConfig) -> Worker {
        Worker {
            client: Arc::new(client),
            registry: Arc::new(registry),
            config,
        }
    }

    /// Runs until `stop` fires, then shuts down gracefully (see the module docs).
    pub async fn run(&self, stop: CancellationToken) {
        // A job is in `pace`'s count from its lease to its report, and holds one of
        // `slots` while it runs.
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let pace = Arc::new(Pace::new(
            self.config.concurrency,
            self.config.prefetch,
            self.config.prefetch_within,
        ));
        let tracker = TaskTracker::new();
        // Fires at the shutdown deadline: running jobs are cancelled and released.
        let release_all = CancellationToken::new();
        let (completions, reporter) = Completions::start(Arc::clone(&self.client));
        let mut failures = 0u32;
        // Only jobs this worker has a handler for are leased.
        let kinds = self.registry.kinds();
        // The shutdown deadline, when it was set before the loop ended: one deadline
        // covers the wait for a lease in flight and the wait for running jobs.
        let mut stopped_at_deadline = None;
        while !stop.is_cancelled() {
            // Wait for room, then fill all of it with one lease request.
            let room = tokio::select! {
                room = pace.wait_for_room() => room,
                () = stop.cancelled() => break,
            };
            let lease = self.client.lease(
                &self.config.name,
                &self.config.queues,
                &kinds,
                room as u32,
                self.config.lease_wait,
            );
            tokio::pin!(lease);
            let reply = tokio::select! {
                reply = &mut lease => reply,
                () = stop.cancelled() => {
                    let deadline = Instant::now() + self.config.shutdown_deadline;
                    stopped_at_deadline = Some(deadline);
                    self.give_back_in_flight_lease(lease, &tracker, deadline).await;
                    break;
                }
            };
            let reply = match reply {
                Ok(reply) => {
                    failures = 0;
                    reply
                }
                Err(error) => {
                    failures = (failures + 1).min(6);
                    // 0.5 s, 1 s, … up to 16 s between attempts while no server answers.
                    let pause = Duration::from_millis(250 << failures);
                    tracing::warn!(%error, retry_in = ?pause, "lease request failed");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => break,
                    }
                    continue;
                }
            };
            let ttl = Duration::from_millis(reply.lease_ttl_ms.max(300));
            for job in reply.jobs {
                let held = pace.hold();
                let client = Arc::clone(&self.client);
                let registry = Arc::clone(&self.registry);
                let release_all = release_all.clone();
                let completions = completions.clone();
                let start = Start {
                    slots: Arc::clone(&slots),
                    stop: stop.clone(),
                    pace: Arc::clone(&pace),
                };
                let span = job_span(&job);
                tracker.spawn(
                    async move {
                        run_job(
                            &client,
                            &completions,
                            &registry,
                            job,
                            ttl,
                            start,
                            &release_all,
                        )
                        .await;
                        drop(held);
                    }
                    .instrument(span),
                );
            }
        }
        tracker.close();
        tracing::info!(
            running = tracker.len(),
            "worker stopping: no new jobs; waiting for running ones"
        );
        let deadline =
            stopped_at_deadline.unwrap_or_else(|| Instant::now() + self.config.shutdown_deadline);
        if tokio::time::timeout_at(deadline, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = tracker.len(),
                "shutdown deadline reached: releasing running jobs"
            );
            release_all.cancel();
            tracker.wait().await;
        }
        // Every job has its outcome; the reporter ends once nothing can send to it.
        drop(completions);
        if let Err(error) = reporter.await {
            tracing::error!(%error, "the completion reporter panicked");
        }
    }

    /// Waits for the answer to a lease sent before the stop and gives back the jobs it
    /// brings, unrun. Dropping the request instead would hang up on a lease the server may
    /// already have taken (its answer on the wire): those jobs would wait out their lease
    /// before running anywhere. The long-poll ends within `lease_wait`; past the shutdown
    /// deadline the request is dropped after all, and the lease's expiry returns its jobs.
    async fn give_back_in_flight_lease(
        &self,
        lease: Pin<&mut impl Future<Output = Result<LeaseReply, ClientError>>>,
        tracker: &TaskTracker,
        deadline: Instant,
    ) {
        let reply = match tokio::time::timeout_at(deadline, lease).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => return tracing::debug!(%error, "the last lease failed"),
            Err(_) => {
                return tracing::warn!(
                    "shutdown deadline reached waiting for a lease; its jobs, if any, \
                     return when it expires"
                )
            }
        };
        for job in reply.jobs {
            let client = Arc::clone(&self.client);
            let span = job_span(&job);
            tracker.spawn(
                async move {
                    match client.release(job.id, job.fencing_token).await {
                        Ok(()) => tracing::debug!("leased as the worker stopped; released"),
                        Err(error) => tracing::warn!(%error, "could not release a job leased as the worker stopped"),
                    }
                }
                .instrument(span),
            );
        }
    }
}

/// What a job waits on before it starts: a run slot, unless the worker stops first; and
/// where its run time goes.
struct Start {
    slots: Arc<Semaphore>,
    stop: CancellationToken,
    pace: Arc<Pace>,
}

/// The span a job's task runs in.
fn job_span(job: &LeasedJob) -> tracing::Span {
    tracing::info_span!("job", id = %job.id, kind = %job.kind, attempt = job.attempt)
}

/// Runs one job to its end and reports it: a completion through `completions` (batched
/// with other jobs'), anything else (rarer, or needing its own answer, as a heartbeat
/// does) straight to the server.
async fn run_job(
    client: &Client,
    completions: &Completions,
    registry: &Registry,
    job: LeasedJob,
    ttl: Duration,
    start: Start,
    release_all: &CancellationToken,
) {
    let (id, token) = (job.id, job.fencing_token);
    let Some(handler) = registry.handlers.get(&job.kind).cloned() else {
        // Another worker may know the kind: a retryable failure, with a clear message.
        let message = format!(
            "no handler for kind `{}` on this worker (it runs: {})",
            job.kind,
            registry.kinds().join(", ")
        );
        let _ = client.fail(id, token, &message, true).await;
        return;
    };
    let cancel = CancellationToken::new();
    let ctx = JobContext {
        job: Arc::new(job),
        cancel: cancel.clone(),
        progress: Arc::new(Mutex::new(None)),
    };
    let timeout = Duration::from_millis(ctx.job.timeout_ms);
    // Set when the job gets a slot and starts: its handler's future, and the slot.
    let mut work = None;
    let mut slot = None;
    let mut beat = tokio::time::interval(ttl / 3);
    // Ticks missed during a slow heartbeat collapse into one, and the ticks after it are a
    // full period apart again: no burst of heartbeats to catch up.
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    // Armed when the job starts: the timeout counts the run, not the wait for a slot.
    let deadline = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(deadline);
    // Made once, so the job keeps its place in the semaphore's queue across heartbeats.
    let acquire = start.slots.clone().acquire_owned();
    tokio::pin!(acquire);
    // The heartbeat in flight is a branch of its own, not awaited inside the tick's branch:
    // while it waits on a slow or unreachable server (up to the client's call timeout),
    // the handler goes on being polled and the deadline and the shutdown are still watched.
    let mut heartbeat: Option<Pin<Box<dyn Future<Output = _> + Send + '_>>> = None;
    let outcome = loop {
        tokio::select! {
            permit = &mut acquire, if slot.is_none() => {
                // The slot and the stop may come together: a job not started by the stop
                // does not start.
                if start.stop.is_cancelled() {
                    break Outcome::Release;
                }
                slot = Some((permit.expect("never closed"), Instant::now()));
                work = Some(handler(ctx.clone()));
                deadline.as_mut().reset(Instant::now() + timeout);
            }
            // Leased ahead and not started when the worker stops: given back unrun.
            () = start.stop.cancelled(), if slot.is_none() => break Outcome::Release,
            result = async { work.as_mut().expect("guarded by is_some").await },
                if work.is_some() => break Outcome::Done(result),
            _ = beat.tick(), if heartbeat.is_none() => {
                let progress = ctx.take_progress();
                heartbeat = Some(Box::pin(async move {
                    client.heartbeat(id, token, progress.as_ref()).await
                }));
            }
            reply = async { heartbeat.as_mut().expect("guarded by is_some").await },
                if heartbeat.is_some() =>
            {
                heartbeat = None;
                match reply {
                    // Cancelled before it started: given back, which the server turns into
                    // the cancel, with no attempt used and no error recorded.
                    Ok(reply) if reply.cancel && work.is_none() => break Outcome::Release,
                    Ok(reply) if reply.cancel => cancel.cancel(),
                    Ok(_) => {}
                    Err(ClientError::Refused { lease_lost: true, .. }) => {
                        cancel.cancel();
                        tracing::warn!("lease lost; abandoning the job");
                        break Outcome::LeaseLost;
                    }
                    // The server is away: keep working; the next beat may get through.
                    Err(error) => tracing::warn!(%error, "heartbeat failed"),
                }
            }
            () = &mut deadline, if work.is_some() => {
                // Dropping `work` (on leaving the loop) cancels the handler at its current
                // await point; the token tells any task it spawned.
                cancel.cancel();
                break Outcome::TimedOut;
            }
            () = release_all.cancelled() => {
                cancel.cancel();
                break Outcome::Release;
            }
        }
    };
    // The handler is done or abandoned (dropping its future stops it at its await point;
    // the token told anything it spawned): its slot goes to a queued job while this one
    // reports.
    drop(work);
    if let Some((slot, started)) = slot {
        start.pace.ran(started.elapsed());
        drop(slot);
    }
    let mut report: Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send + '_>> =
        match outcome {
            Outcome::LeaseLost => return,
            Outcome::Release => Box::pin(client.release(id, token)),
            Outcome::TimedOut => Box::pin(async move {
                let message = format!("timed out after {} ms", timeout.as_millis());
                client.fail(id, token, &message, true).await
            }),
            Outcome::Done(Ok(result)) => Box::pin(completions.complete(id, token, result)),
            Outcome::Done(Err(failure)) => Box::pin(async move {
                client
                    .fail(id, token, &failure.message, failure.retryable)
                    .await
            }),
        };
    // A completion may wait behind a batch in flight, and a slow server makes any report
    // slow: the heartbeats go on until the report is answered, so the lease cannot run out
    // in between and the job run again. Their answers no longer matter.
    let report = loop {
        tokio::select! {
            report = &mut report => break report,
            _ = beat.tick(), if heartbeat.is_none() => {
                heartbeat = Some(Box::pin(client.heartbeat(id, token, None)));
            }
            _ = async { heartbeat.as_mut().expect("guarded by is_some").await },
                if heartbeat.is_some() => heartbeat = None,
        }
    };
    match report {
        Ok(()) => tracing::debug!("reported"),
        Err(ClientError::Refused {
            lease_lost: true, ..
        }) => {
            tracing::warn!("lease lost before the report; the job ran elsewhere too")
        }
        // Unreported: the lease expires and the job runs again (at-least-once).
        Err(error) => tracing::warn!(%error, "could not report the job's outcome"),
    }
}
