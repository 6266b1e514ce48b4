//! The jobs HTTP API: producers enqueue and inspect jobs; workers lease, heartbeat and report.
//!
//! Producer routes need the `enqueue` scope, worker routes `work`. Every refusal is JSON
//! `{"error": "..."}` naming the field at fault; nothing changes on a refusal. The requests
//! and answers are weir-jobs' [`protocol`](weir_jobs::protocol) types, which the client
//! uses too.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use weir_auth::{Scope, Tokens};
use weir_http::{Method, Request, Response, Router, StatusCode};
use weir_jobs::protocol::{
    BatchRequest, CompleteBatch, CompleteBatchReply, CompleteRequest, CompletionOutcome,
    FailRequest, HeartbeatReply, HeartbeatRequest, JobRequest, LeaseReply, LeaseRequest,
    ReleaseRequest, DEFAULT_PAGE, FIELDS_OVERHEAD, MAX_ERROR_TEXT, MAX_PAGE, MAX_WORKER_NAME,
};
use weir_jobs::{
    Action, Change, Claim, Enqueued, Job, JobId, JobState, Jobs, ListQuery, Timestamp,
};

use super::error::{change_refusal_status, read_json, ApiError};

/// Shared by every jobs route.
#[derive(Debug, Clone)]
struct JobsApi {
    jobs: Jobs,
    tokens: Arc<Tokens>,
    /// Ends long-polls at shutdown, so draining does not wait for them.
    stop: CancellationToken,
    max_body: u64,
}

/// Adds the jobs routes to `router`.
pub(crate) fn add_job_routes(
    router: Router,
    jobs: Jobs,
    tokens: Arc<Tokens>,
    stop: CancellationToken,
    max_body: u64,
) -> Router {
    let api = JobsApi {
        jobs,
        tokens,
        stop,
        max_body,
    };
    let route = |router: Router,
                 path: &'static str,
                 method: Method,
                 scope: Scope,
                 handler: fn(JobsApi, Request) -> HandlerFuture| {
        let api = api.clone();
        router.route(path, method, move |req: Request| {
            let allowed = api.tokens.authorize(&req, scope);
            let api = api.clone();
            async move {
                match allowed {
                    Ok(()) => handler(api, req)
                        .await
                        .unwrap_or_else(ApiError::into_response),
                    Err(denied) => *denied,
                }
            }
        })
    };
    // Every route: path, method, the scope it needs, and its handler.
    let routes: [JobRoute; 13] = [
        ("/v1/jobs", Method::POST, Scope::Enqueue, |api, req| {
            Box::pin(enqueue(api, req, false))
        }),
        (
            "/v1/jobs/batch",
            Method::POST,
            Scope::Enqueue,
            |api, req| Box::pin(enqueue(api, req, true)),
        ),
        ("/v1/jobs", Method::GET, Scope::Enqueue, |api, req| {
            Box::pin(list(api, req))
        }),
        ("/v1/jobs/{id}", Method::GET, Scope::Enqueue, |api, req| {
            Box::pin(get(api, req))
        }),
        (
            "/v1/jobs/{id}/cancel",
            Method::POST,
            Scope::Enqueue,
            |api, req| Box::pin(operate(api, req, Action::Cancel)),
        ),
        (
            "/v1/jobs/{id}/retry",
            Method::POST,
            Scope::Enqueue,
            |api, req| Box::pin(operate(api, req, Action::Retry)),
        ),
        ("/v1/queues", Method::GET, Scope::Enqueue, |api, req| {
            Box::pin(queues(api, req))
        }),
        ("/v1/lease", Method::POST, Scope::Work, |api, req| {
            Box::pin(lease(api, req))
        }),
        (
            "/v1/jobs/complete",
            Method::POST,
            Scope::Work,
            |api, req| Box::pin(complete_batch(api, req)),
        ),
        (
            "/v1/jobs/{id}/heartbeat",
            Method::POST,
            Scope::Work,
            |api, req| Box::pin(report(api, req, Report::Heartbeat)),
        ),
        (
            "/v1/jobs/{id}/complete",
            Method::POST,
            Scope::Work,
            |api, req| Box::pin(report(api, req, Report::Complete)),
        ),
        (
            "/v1/jobs/{id}/fail",
            Method::POST,
            Scope::Work,
            |api, req| Box::pin(report(api, req, Report::Fail)),
        ),
        (
            "/v1/jobs/{id}/release",
            Method::POST,
            Scope::Work,
            |api, req| Box::pin(report(api, req, Report::Release)),
        ),
    ];
    routes
        .into_iter()
        .fold(router, |router, (path, method, scope, handler)| {
            route(router, path, method, scope, handler)
        })
}

/// A jobs route: path, method, the scope it needs, and its handler.
type JobRoute = (
    &'static str,
    Method,
    Scope,
    fn(JobsApi, Request) -> HandlerFuture,
);

type HandlerFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, ApiError>> + Send>>;

/// A job as the API shows it: its state as of now (a scheduled job whose time came is
/// `available`). Answers are serialized from it directly: building a `serde_json::Value`
/// tree first (a map per job) was the larger part of a lease's JSON work on the server.
fn job_view(job: &Job) -> Cow<'_, Job> {
    let state = job.state_at(Timestamp::now());
    if state == job.state {
        Cow::Borrowed(job)
    } else {
        let mut shown = job.clone();
        shown.state = state;
        Cow::Owned(shown)
    }
}

/// An answer as JSON text (these types always serialize).
fn json_text(answer: &impl Serialize) -> String {
    serde_json::to_string(answer).expect("an answer serializes")
}

/// An enqueued job, and whether it existed already (a unique job enqueued again).
#[derive(Serialize)]
struct EnqueuedView<'a> {
    #[serde(flatten)]
    job: Cow<'a, Job>,
    existing: bool,
}

impl<'a> EnqueuedView<'a> {
    fn of(one: &'a Enqueued) -> EnqueuedView<'a> {
        EnqueuedView {
            job: job_view(&one.job),
            existing: one.existing,
        }
    }
}

/// A page of jobs and the cursor of the next (null on the last page).
#[derive(Serialize)]
struct Page<'a> {
    jobs: Vec<Cow<'a, Job>>,
    next_before: Option<JobId>,
}

fn job_id(req: &Request) -> Result<JobId, ApiError> {
    let text = req.param("id").unwrap_or_default();
    text.parse::<i64>().map(JobId).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("id: `{text}` is not a job id (a number)"),
        )
    })
}

async fn enqueue(api: JobsApi, mut req: Request, batch: bool) -> Result<Response, ApiError> {
    // Room for the payload limit plus the other fields, per job.
    let limit = if batch {
        api.max_body
    } else {
        (api.jobs.config().max_payload as u64).saturating_add(FIELDS_OVERHEAD)
    };
    let requests = if batch {
        read_json::<BatchRequest>(&mut req, limit).await?.jobs
    } else {
        vec![read_json::<JobRequest>(&mut req, limit).await?]
    };
    let mut new_jobs = Vec::with_capacity(requests.len());
    for (index, request) in requests.into_iter().enumerate() {
        let field = if batch {
            format!("jobs[{index}].")
        } else {
            String::new()
        };
        new_jobs.push(request.into_new_job(&field)?);
    }
    let mut enqueued = api.jobs.enqueue(new_jobs).await?;
    if !batch {
        let one = enqueued.pop().expect("one job in, one out");
        // An existing unique job is not created again: 200, not 201.
        let status = if one.existing {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        return Ok(Response::json(status, json_text(&EnqueuedView::of(&one))));
    }
    #[derive(Serialize)]
    struct Batch<'a> {
        jobs: Vec<EnqueuedView<'a>>,
    }
    let jobs = enqueued.iter().map(EnqueuedView::of).collect();
    Ok(Response::json(
        StatusCode::CREATED,
        json_text(&Batch { jobs }),
    ))
}

async fn get(api: JobsApi, req: Request) -> Result<Response, ApiError> {
    let job = api.jobs.get(job_id(&req)?).await?;
    Ok(Response::json(StatusCode::OK, json_text(&job_view(&job))))
}

async fn list(api: JobsApi, req: Request) -> Result<Response, ApiError> {
    let state = match req.query_param("state").map(str::parse::<JobState>) {
        None => None,
        Some(Ok(state)) => Some(state),
        Some(Err(message)) => return Err(ApiError::invalid("state", &message)),
    };
    let limit = match req.query_param("limit").map(str::parse::<u32>) {
        None => DEFAULT_PAGE,
        Some(Ok(n @ 1..=MAX_PAGE)) => n,
        Some(_) => return Err(ApiError::invalid("limit", &format!("must be 1–{MAX_PAGE}"))),
    };
    let before = match req.query_param("before").map(str::parse::<i64>) {
        None => None,
        Some(Ok(id)) => Some(JobId(id)),
        Some(Err(_)) => return Err(ApiError::invalid("before", "must be a job id")),
    };
    let query = ListQuery {
        queue: req.query_param("queue").map(str::to_string),
        kind: req.query_param("kind").map(str::to_string),
        state,
        before,
        limit,
    };
    let jobs = api.jobs.list(query).await?;
    let next = (jobs.len() as u32 == limit)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    let answer = Page {
        jobs: jobs.iter().map(job_view).collect(),
        next_before: next,
    };
    Ok(Response::json(StatusCode::OK, json_text(&answer)))
}

async fn queues(api: JobsApi, _req: Request) -> Result<Response, ApiError> {
    let mut queues = serde_json::Map::new();
    for count in api.jobs.counts().await? {
        let entry = queues
            .entry(count.queue)
            .or_insert_with(|| serde_json::json!({}));
        entry[count.state.as_str()] = serde_json::Value::from(count.count);
    }
    Ok(Response::json(
        StatusCode::OK,
        serde_json::json!({ "queues": queues }).to_string(),
    ))
}

async fn operate(api: JobsApi, req: Request, action: Action) -> Result<Response, ApiError> {
    let job = api.jobs.act(job_id(&req)?, action).await?;
    Ok(Response::json(StatusCode::OK, json_text(&job_view(&job))))
}

async fn lease(api: JobsApi, mut req: Request) -> Result<Response, ApiError> {
    let request: LeaseRequest = read_json(&mut req, FIELDS_OVERHEAD).await?;
    // Hand the connection back to the server while this waits: a worker that disconnects
    // then cancels the wait, rather than leaving it to lease jobs for nobody.
    drop(req);
    if request.worker.is_empty() || request.worker.len() > MAX_WORKER_NAME {
        return Err(ApiError::invalid(
            "worker",
            &format!("name the worker in 1–{MAX_WORKER_NAME} bytes"),
        ));
    }
    let queues = request
        .queues
        .unwrap_or_else(|| vec![weir_jobs::model::defaults::QUEUE.to_string()]);
    // The same rule as for enqueueing: a queue no job can be in is a typo, not a wait.
    for (index, queue) in queues.iter().enumerate() {
        weir_jobs::validate_queue(queue, &format!("queues[{index}]"))?;
    }
    let claim = Claim {
        worker: request.worker,
        queues,
        kinds: request.kinds,
        max: request.max.unwrap_or(1),
        lease_ttl: api.jobs.config().lease_ttl,
    };
    let wait = Duration::from_millis(request.wait_ms.unwrap_or(0));
    let jobs = api.jobs.lease(claim, wait, &api.stop).await?;
    let answer = LeaseReply {
        jobs: jobs.iter().map(job_view).collect(),
        lease_ttl_ms: api.jobs.config().lease_ttl.as_millis() as u64,
    };
    Ok(Response::json(StatusCode::OK, json_text(&answer)))
}

#[derive(Debug, Clone, Copy)]
enum Report {
    Heartbeat,
    Complete,
    Fail,
    Release,
}

async fn report(api: JobsApi, mut req: Request, report: Report) -> Result<Response, ApiError> {
    let id = job_id(&req)?;
    let limit = (api.jobs.config().max_payload as u64).saturating_add(FIELDS_OVERHEAD);
    let lease_ttl = api.jobs.config().lease_ttl;
    let action = match report {
        Report::Heartbeat => {
            let r: HeartbeatRequest = read_json(&mut req, limit).await?;
            Action::Heartbeat {
                token: r.token,
                progress: r.progress,
                lease_ttl,
            }
        }
        Report::Complete => {
            let r: CompleteRequest = read_json(&mut req, limit).await?;
            Action::Complete {
                token: r.token,
                result: r.result,
            }
        }
        Report::Fail => {
            let r: FailRequest = read_json(&mut req, limit).await?;
            Action::Fail {
                token: r.token,
                error: truncate(r.error, MAX_ERROR_TEXT),
                retryable: r.retryable,
            }
        }
        Report::Release => {
            let r: ReleaseRequest = read_json(&mut req, limit).await?;
            Action::Release { token: r.token }
        }
    };
    if let Action::Heartbeat {
        progress: Some(progress),
        ..
    } = &action
    {
        if !(0.0..=100.0).contains(&progress.percent) {
            return Err(ApiError::invalid("progress.percent", "must be 0–100"));
        }
    }
    let job = api.jobs.act(id, action).await?;
    let body = if let Report::Heartbeat = report {
        // What the worker needs from a heartbeat: stop or go on, and until when.
        json_text(&HeartbeatReply {
            cancel: job.cancel_requested,
            expires_at: job.lease.as_ref().map(|l| l.expires_at),
        })
    } else {
        json_text(&job_view(&job))
    };
    Ok(Response::json(StatusCode::OK, body))
}

/// `POST /v1/jobs/complete`: many completions in one store transaction. Each stands alone:
/// the answer lists, in order, `{"id", "ok": true}` or `{"id", "status", "error",
/// "lease_lost"}`, `status` being what the single-job endpoint would have answered.
async fn complete_batch(api: JobsApi, mut req: Request) -> Result<Response, ApiError> {
    let batch: CompleteBatch<'static> = read_json(&mut req, api.max_body).await?;
    if batch.jobs.is_empty() || batch.jobs.len() > api.jobs.config().max_batch {
        return Err(ApiError::invalid(
            "jobs",
            &format!("1–{} completions", api.jobs.config().max_batch),
        ));
    }
    let changes = batch
        .jobs
        .into_owned()
        .into_iter()
        .map(|one| Change {
            id: one.id,
            action: Action::Complete {
                token: one.token,
                result: Some(one.result),
            },
        })
        .collect();
    let outcomes = api.jobs.change(changes).await?;
    let answer = CompleteBatchReply {
        jobs: outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(job) => CompletionOutcome {
                    id: job.id,
                    ok: true,
                    status: None,
                    error: None,
                    lease_lost: None,
                },
                Err(error) => CompletionOutcome {
                    id: error.job_id(),
                    ok: false,
                    status: Some(change_refusal_status(error).as_u16()),
                    error: Some(error.to_string()),
                    lease_lost: Some(matches!(error, weir_jobs::ChangeError::LeaseLost { .. })),
                },
            })
            .collect(),
    };
    Ok(Response::json(StatusCode::OK, json_text(&answer)))
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}
