//! Job kind `http`: one HTTP request, sent through weir-client with the worker's per-host
//! rate and concurrency limits.
//!
//! Payload: `{"url": …, "method": "POST", "headers": {…}, "body": "text" or any JSON,
//! "idempotent": false}`. The result holds the status, headers, timing and the start of the
//! body. 2xx and 3xx complete the job; 408, 429 and 5xx (and network errors) fail it for a
//! retry; any other 4xx discards it, since sending the same request again cannot succeed.
//!
//! Requests reach only public addresses unless the operator allows more (`--egress-allow`;
//! see `weir_client::egress`): a job whose URL, redirect or name leads elsewhere is
//! discarded with the address and the setting. With `--webhook-secret` every request is
//! signed as Standard Webhooks specifies (`webhook-id` is the job's, the same on every
//! attempt); the secret is the operator's, and a job may not set those header fields.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;
use weir_client::reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use weir_client::reqwest::{self, Method};
use weir_client::{Client, RequestOptions, WebhookSigner};
use weir_jobs::worker::{HandlerResult, JobContext, JobFailure};

use super::job_io;

/// Body bytes kept in the result.
const BODY_IN_RESULT: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpJob {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    /// Whether sending it twice is harmless (default: by method; POST and PATCH are not).
    #[serde(default)]
    idempotent: Option<bool>,
}

const SHAPE: &str =
    r#"{"url": "https://…", "method": "POST", "headers": {…}, "body": "…" or JSON}"#;

pub(crate) async fn run(
    client: Client,
    signer: Option<Arc<WebhookSigner>>,
    ctx: JobContext,
) -> HandlerResult {
    let job: HttpJob = job_io::payload(&ctx, SHAPE)?;
    let idempotent = job.idempotent;
    let mut request = build(&client, job)?;
    if let Some(signer) = &signer {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        signer
            .sign(&mut request, &format!("weir_job_{}", ctx.job.id), now)
            .map_err(JobFailure::fatal)?;
    }
    let (method, url) = (request.method().clone(), request.url().clone());
    let options = RequestOptions {
        idempotent,
        // The job's own timeout bounds everything, waits for rate-limit slots included.
        deadline: Some(Instant::now() + Duration::from_millis(ctx.job.timeout_ms)),
        ..RequestOptions::default()
    };
    let started = Instant::now();
    let sent = tokio::select! {
        sent = client.execute(request, options) => sent,
        () = ctx.cancel.cancelled() => return Err(JobFailure::retry("stopped before the response came")),
    };
    let mut response = sent.map_err(|error| match error {
        weir_client::Error::Refused(refused) => JobFailure::fatal(format!(
            "{method} {url}: {refused} (weir worker --egress-allow)"
        )),
        error => JobFailure::retry(format!("{method} {url}: {error}")),
    })?;
    let status = response.status();
    let head_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut headers = serde_json::Map::new();
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let (body, truncated) = response
        .body_up_to(BODY_IN_RESULT)
        .await
        .map_err(|error| JobFailure::retry(format!("{method} {url}: reading the body: {error}")))?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let code = status.as_u16();
    if code == 408 || code == 429 || status.is_server_error() {
        return Err(JobFailure::retry(format!(
            "{method} {url}: {status}: {}",
            first_line(&body)
        )));
    }
    if status.is_client_error() {
        return Err(JobFailure::fatal(format!(
            "{method} {url}: {status}: {}",
            first_line(&body)
        )));
    }
    job_io::result(&json!({
        "status": code,
        "url": response.url().as_str(),
        "headers": headers,
        "body": body,
        "body_truncated": truncated,
        "attempts": response.attempts(),
        "head_ms": (head_ms * 1000.0).round() / 1000.0,
        "total_ms": (started.elapsed().as_secs_f64() * 1e6).round() / 1000.0,
    }))
}

fn build(client: &Client, job: HttpJob) -> Result<reqwest::Request, JobFailure> {
    let fatal = |message: String| JobFailure::fatal(message);
    let url = reqwest::Url::parse(&job.url)
        .map_err(|error| fatal(format!("url `{}`: {error}", job.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(fatal(format!("url `{url}`: only http and https")));
    }
    let method_text =
        job.method
            .as_deref()
            .unwrap_or(if job.body.is_some() { "POST" } else { "GET" });
    let method = Method::from_bytes(method_text.to_ascii_uppercase().as_bytes())
        .map_err(|_| fatal(format!("method `{method_text}` is not an HTTP method")))?;
    let mut request = client.http().request(method, url);
    let mut has_content_type = false;
    for (name, value) in &job.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| fatal(format!("header name `{name}` is not valid")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| fatal(format!("header `{name}` has a value that is not valid")))?;
        has_content_type |= name == CONTENT_TYPE;
        request = request.header(name, value);
    }
    request = match job.body {
        None | Some(Value::Null) => request,
        Some(Value::String(text)) => request.body(text),
        Some(json) => {
            if !has_content_type {
                request = request.header(CONTENT_TYPE, "application/json");
            }
            request.body(json.to_string())
        }
    };
    request
        .build()
        .map_err(|error| fatal(format!("request: {error}")))
}

fn first_line(body: &str) -> &str {
    let line = body.lines().next().unwrap_or_default();
    let mut end = line.len().min(200);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}
