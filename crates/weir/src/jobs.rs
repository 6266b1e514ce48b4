//! The jobs HTTP API: producers enqueue and inspect jobs; workers lease, heartbeat and report.
//!
//! Producer routes need the `enqueue` scope, worker routes `work`. Every refusal is JSON
//! `{"error": "..."}` naming the field at fault; nothing changes on a refusal.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use weir_http::{Method, Request, Response, Router, StatusCode};
use weir_jobs::{
    Action, Change, ChangeError, Claim, Enqueued, Job, JobId, JobState, Jobs, JobsError, ListQuery,
    NewJob, Progress, Timestamp,
};

use crate::auth::{Scope, Tokens};

/// A job as a producer submits it. Unknown fields are refused (a typo is not ignored).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRequest {
    #[serde(default)]
    queue: Option<String>,
    kind: String,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    priority: Option<i32>,
    /// RFC 3339; or `delay_ms` from now.
    #[serde(default)]
    run_at: Option<Timestamp>,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    unique_key: Option<String>,
    #[serde(default)]
    concurrency_key: Option<String>,
    #[serde(default)]
    key_limit: Option<u32>,
}

impl JobRequest {
    fn into_new_job(self, field: &str) -> Result<NewJob, JobsError> {
        if self.run_at.is_some() && self.delay_ms.is_some() {
            return Err(JobsError::Invalid {
                field: format!("{field}run_at"),
                message: "give run_at or delay_ms, not both".into(),
            });
        }
        let payload = self
            .payload
            .unwrap_or_else(|| RawValue::from_string("{}".into()).expect("valid JSON"));
        let mut job = NewJob::new(
            self.queue
                .as_deref()
                .unwrap_or(weir_jobs::model::defaults::QUEUE),
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    jobs: Vec<JobRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseRequest {
    worker: String,
    #[serde(default)]
    queues: Option<Vec<String>>,
    #[serde(default)]
    max: Option<u32>,
    #[serde(default)]
    wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatRequest {
    token: i64,
    #[serde(default)]
    progress: Option<Progress>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    token: i64,
    #[serde(default)]
    result: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteOne {
    id: i64,
    token: i64,
    #[serde(default)]
    result: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBatch {
    jobs: Vec<CompleteOne>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailRequest {
    token: i64,
    error: String,
    #[serde(default = "yes")]
    retryable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    token: i64,
}

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
                    Ok(()) => handler(api, req).await,
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

type HandlerFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

fn json_error(status: StatusCode, message: &str) -> Response {
    Response::json(status, serde_json::json!({ "error": message }).to_string())
}

/// The response for a refused or failed request.
fn refusal(error: JobsError) -> Response {
    let status = match &error {
        JobsError::Invalid { field, message }
            if field.ends_with("payload") && message.contains("exceeds") =>
        {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        JobsError::Invalid { .. } => StatusCode::BAD_REQUEST,
        JobsError::Refused(refused) => change_refusal_status(refused),
        JobsError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut body = serde_json::json!({ "error": error.to_string() });
    if let JobsError::Refused(ChangeError::LeaseLost { .. }) = error {
        // Workers test this flag rather than parse the message: stop working on the job.
        body["lease_lost"] = serde_json::Value::Bool(true);
    }
    Response::json(status, body.to_string())
}

/// The status of a refused change, alone or as one of a batch's outcomes.
fn change_refusal_status(error: &ChangeError) -> StatusCode {
    match error {
        ChangeError::NotFound(_) => StatusCode::NOT_FOUND,
        ChangeError::LeaseLost { .. } | ChangeError::WrongState { .. } => StatusCode::CONFLICT,
    }
}

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

/// Leased jobs and the lease's length.
#[derive(Serialize)]
struct Leased<'a> {
    jobs: Vec<Cow<'a, Job>>,
    lease_ttl_ms: u64,
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    req: &mut Request,
    limit: u64,
) -> Result<T, Response> {
    let body = match req.body_mut().collect(limit).await {
        Ok(body) => body,
        Err(weir_http::BodyError::TooLarge { limit }) => {
            return Err(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body exceeds {limit} bytes"),
            ))
        }
        Err(error) => return Err(json_error(error.status(), &error.to_string())),
    };
    serde_json::from_slice(&body).map_err(|error| {
        json_error(
            StatusCode::BAD_REQUEST,
            &format!("invalid JSON body: {error}"),
        )
    })
}

fn job_id(req: &Request) -> Result<JobId, Response> {
    let text = req.param("id").unwrap_or_default();
    text.parse::<i64>().map(JobId).map_err(|_| {
        json_error(
            StatusCode::NOT_FOUND,
            &format!("id: `{text}` is not a job id (a number)"),
        )
    })
}

async fn enqueue(api: JobsApi, mut req: Request, batch: bool) -> Response {
    // Room for the payload limit plus the other fields, per job.
    let limit = if batch {
        api.max_body
    } else {
        (api.jobs.config().max_payload as u64).saturating_add(64 * 1024)
    };
    let requests = if batch {
        match read_json::<BatchRequest>(&mut req, limit).await {
            Ok(batch) => batch.jobs,
            Err(response) => return response,
        }
    } else {
        match read_json::<JobRequest>(&mut req, limit).await {
            Ok(one) => vec![one],
            Err(response) => return response,
        }
    };
    let mut new_jobs = Vec::with_capacity(requests.len());
    for (index, request) in requests.into_iter().enumerate() {
        let field = if batch {
            format!("jobs[{index}].")
        } else {
            String::new()
        };
        match request.into_new_job(&field) {
            Ok(job) => new_jobs.push(job),
            Err(error) => return refusal(error),
        }
    }
    match api.jobs.enqueue(new_jobs).await {
        Ok(mut enqueued) if !batch => {
            let one = enqueued.pop().expect("one job in, one out");
            // An existing unique job is not created again: 200, not 201.
            let status = if one.existing {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Response::json(status, json_text(&EnqueuedView::of(&one)))
        }
        Ok(enqueued) => {
            #[derive(Serialize)]
            struct Batch<'a> {
                jobs: Vec<EnqueuedView<'a>>,
            }
            let jobs = enqueued.iter().map(EnqueuedView::of).collect();
            Response::json(StatusCode::CREATED, json_text(&Batch { jobs }))
        }
        Err(error) => refusal(error),
    }
}

async fn get(api: JobsApi, req: Request) -> Response {
    let id = match job_id(&req) {
        Ok(id) => id,
        Err(response) => return response,
    };
    match api.jobs.get(id).await {
        Ok(job) => Response::json(StatusCode::OK, json_text(&job_view(&job))),
        Err(error) => refusal(error),
    }
}

async fn list(api: JobsApi, req: Request) -> Response {
    let invalid = |field: &str, message: &str| {
        refusal(JobsError::Invalid {
            field: field.into(),
            message: message.into(),
        })
    };
    let state = match req.query_param("state").map(str::parse::<JobState>) {
        None => None,
        Some(Ok(state)) => Some(state),
        Some(Err(message)) => return invalid("state", &message),
    };
    let limit = match req.query_param("limit").map(str::parse::<u32>) {
        None => 50,
        Some(Ok(n @ 1..=500)) => n,
        Some(_) => return invalid("limit", "must be 1–500"),
    };
    let before = match req.query_param("before").map(str::parse::<i64>) {
        None => None,
        Some(Ok(id)) => Some(JobId(id)),
        Some(Err(_)) => return invalid("before", "must be a job id"),
    };
    let query = ListQuery {
        queue: req.query_param("queue").map(str::to_string),
        kind: req.query_param("kind").map(str::to_string),
        state,
        before,
        limit,
    };
    match api.jobs.list(query).await {
        Ok(jobs) => {
            let next = (jobs.len() as u32 == limit)
                .then(|| jobs.last().map(|j| j.id))
                .flatten();
            let answer = Page {
                jobs: jobs.iter().map(job_view).collect(),
                next_before: next,
            };
            Response::json(StatusCode::OK, json_text(&answer))
        }
        Err(error) => refusal(error),
    }
}

async fn queues(api: JobsApi, _req: Request) -> Response {
    match api.jobs.counts().await {
        Ok(counts) => {
            let mut queues = serde_json::Map::new();
            for count in counts {
                let entry = queues
                    .entry(count.queue)
                    .or_insert_with(|| serde_json::json!({}));
                entry[count.state.as_str()] = serde_json::Value::from(count.count);
            }
            Response::json(
                StatusCode::OK,
                serde_json::json!({ "queues": queues }).to_string(),
            )
        }
        Err(error) => refusal(error),
    }
}

async fn operate(api: JobsApi, req: Request, action: Action) -> Response {
    let id = match job_id(&req) {
        Ok(id) => id,
        Err(response) => return response,
    };
    match api.jobs.act(id, action).await {
        Ok(job) => Response::json(StatusCode::OK, json_text(&job_view(&job))),
        Err(error) => refusal(error),
    }
}

async fn lease(api: JobsApi, mut req: Request) -> Response {
    let request: LeaseRequest = match read_json(&mut req, 64 * 1024).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    // Hand the connection back to the server while this waits: a worker that disconnects
    // then cancels the wait, rather than leaving it to lease jobs for nobody.
    drop(req);
    if request.worker.is_empty() || request.worker.len() > 200 {
        return refusal(JobsError::Invalid {
            field: "worker".into(),
            message: "name the worker in 1–200 bytes".into(),
        });
    }
    let queues = request
        .queues
        .unwrap_or_else(|| vec![weir_jobs::model::defaults::QUEUE.to_string()]);
    // The same rule as for enqueueing: a queue no job can be in is a typo, not a wait.
    for (index, queue) in queues.iter().enumerate() {
        let probe = NewJob::new(
            queue,
            "probe",
            RawValue::from_string("{}".into()).expect("JSON"),
        );
        if let Err(JobsError::Invalid { message, .. }) =
            weir_jobs::validate(&probe, api.jobs.config())
        {
            return refusal(JobsError::Invalid {
                field: format!("queues[{index}]"),
                message,
            });
        }
    }
    let claim = Claim {
        worker: request.worker,
        queues,
        max: request.max.unwrap_or(1),
        lease_ttl: api.jobs.config().lease_ttl,
    };
    let wait = Duration::from_millis(request.wait_ms.unwrap_or(0));
    match api.jobs.lease(claim, wait, &api.stop).await {
        Ok(jobs) => {
            let answer = Leased {
                jobs: jobs.iter().map(job_view).collect(),
                lease_ttl_ms: api.jobs.config().lease_ttl.as_millis() as u64,
            };
            Response::json(StatusCode::OK, json_text(&answer))
        }
        Err(error) => refusal(error),
    }
}

#[derive(Debug, Clone, Copy)]
enum Report {
    Heartbeat,
    Complete,
    Fail,
    Release,
}

async fn report(api: JobsApi, mut req: Request, report: Report) -> Response {
    let id = match job_id(&req) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let limit = (api.jobs.config().max_payload as u64).saturating_add(64 * 1024);
    let lease_ttl = api.jobs.config().lease_ttl;
    let action = match report {
        Report::Heartbeat => read_json::<HeartbeatRequest>(&mut req, limit)
            .await
            .map(|r| Action::Heartbeat {
                token: r.token,
                progress: r.progress,
                lease_ttl,
            }),
        Report::Complete => read_json::<CompleteRequest>(&mut req, limit)
            .await
            .map(|r| Action::Complete {
                token: r.token,
                result: r.result,
            }),
        Report::Fail => read_json::<FailRequest>(&mut req, limit)
            .await
            .map(|r| Action::Fail {
                token: r.token,
                // Error text is kept per attempt: bounded so a chatty worker cannot bloat rows.
                error: truncate(r.error, 8 * 1024),
                retryable: r.retryable,
            }),
        Report::Release => read_json::<ReleaseRequest>(&mut req, limit)
            .await
            .map(|r| Action::Release { token: r.token }),
    };
    let action = match action {
        Ok(action) => action,
        Err(response) => return response,
    };
    if let Action::Heartbeat {
        progress: Some(progress),
        ..
    } = &action
    {
        if !(0.0..=100.0).contains(&progress.percent) {
            return refusal(JobsError::Invalid {
                field: "progress.percent".into(),
                message: "must be 0–100".into(),
            });
        }
    }
    match api.jobs.act(id, action).await {
        Ok(job) => {
            let body = if let Report::Heartbeat = report {
                // What the worker needs from a heartbeat: stop or go on, and until when.
                serde_json::json!({
                    "cancel": job.cancel_requested,
                    "expires_at": job.lease.as_ref().map(|l| l.expires_at),
                })
                .to_string()
            } else {
                json_text(&job_view(&job))
            };
            Response::json(StatusCode::OK, body)
        }
        Err(error) => refusal(error),
    }
}

/// `POST /v1/jobs/complete`: many completions in one store transaction. Each stands alone:
/// the answer lists, in order, `{"id", "ok": true}` or `{"id", "status", "error",
/// "lease_lost"}`, `status` being what the single-job endpoint would have answered.
async fn complete_batch(api: JobsApi, mut req: Request) -> Response {
    let batch: CompleteBatch = match read_json(&mut req, api.max_body).await {
        Ok(batch) => batch,
        Err(response) => return response,
    };
    if batch.jobs.is_empty() || batch.jobs.len() > api.jobs.config().max_batch {
        return refusal(JobsError::Invalid {
            field: "jobs".into(),
            message: format!("1–{} completions", api.jobs.config().max_batch),
        });
    }
    let changes = batch
        .jobs
        .into_iter()
        .map(|one| Change {
            id: JobId(one.id),
            action: Action::Complete {
                token: one.token,
                result: one.result,
            },
        })
        .collect();
    match api.jobs.change(changes).await {
        Ok(outcomes) => {
            let answers: Vec<serde_json::Value> = outcomes
                .iter()
                .map(|outcome| match outcome {
                    Ok(job) => serde_json::json!({ "id": job.id, "ok": true }),
                    Err(error) => serde_json::json!({
                        "id": error.job_id(),
                        "status": change_refusal_status(error).as_u16(),
                        "error": error.to_string(),
                        "lease_lost": matches!(error, ChangeError::LeaseLost { .. }),
                    }),
                })
                .collect();
            Response::json(
                StatusCode::OK,
                serde_json::json!({ "jobs": answers }).to_string(),
            )
        }
        Err(error) => refusal(error),
    }
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
