//! The HTTP client of the jobs API, for workers and for `weir jobs`: any language can do
//! the same with the requests documented in docs/workers.md.
//!
//! Several server URLs may be given (nodes of one cluster): a request that cannot reach one
//! (connection refused, timeout, 502–504) moves on to the next, so a worker outlives a node.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::model::{JobId, Progress};
use crate::time::Timestamp;

/// Why a request to the server failed.
#[derive(Debug, Clone, Error)]
pub enum ClientError {
    /// No server could be reached.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The last URL tried.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's `error` message.
        message: String,
        /// The lease is gone (409 with `lease_lost`): stop working on the job.
        lease_lost: bool,
    },
    /// The answer was not what the protocol says.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// A leased job, as a worker receives it.
#[derive(Debug, Clone, Deserialize)]
pub struct LeasedJob {
    /// Identifier.
    pub id: JobId,
    /// Queue.
    pub queue: String,
    /// Handler name.
    pub kind: String,
    /// Input.
    pub payload: Box<RawValue>,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Time this attempt may take.
    pub timeout_ms: u64,
    /// The lease's fencing token: every report carries it.
    pub fencing_token: i64,
}

/// The answer to a lease request.
#[derive(Debug, Deserialize)]
pub struct LeaseReply {
    /// Leased jobs (empty when none came within the wait).
    pub jobs: Vec<LeasedJob>,
    /// Lease length; heartbeat well within it.
    pub lease_ttl_ms: u64,
}

/// One job's completion in a batch (`POST /v1/jobs/complete`).
#[derive(Debug, Serialize)]
pub struct Completion {
    /// The job.
    pub id: JobId,
    /// The lease's fencing token.
    pub token: i64,
    /// What the handler returned.
    pub result: Box<RawValue>,
}

/// One completion's outcome in a batch's answer.
#[derive(Debug, Deserialize)]
struct CompletionAnswer {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    lease_lost: bool,
}

/// The answer to a heartbeat.
#[derive(Debug, Deserialize)]
pub struct HeartbeatReply {
    /// The job was cancelled: stop and report failure.
    pub cancel: bool,
    /// The lease now lasts until then.
    pub expires_at: Option<Timestamp>,
}

/// A client of one or more Weir nodes.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    servers: Vec<String>,
    token: Option<String>,
    /// The server that answered last: requests start there.
    current: AtomicUsize,
}

impl Client {
    /// A client of `servers` (base URLs such as `http://127.0.0.1:7070`), sending `token`
    /// as a bearer token when given.
    pub fn new(servers: Vec<String>, token: Option<String>) -> Result<Client, ClientError> {
        if servers.is_empty() {
            return Err(ClientError::Protocol("no server URL given".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| ClientError::Protocol(error.to_string()))?;
        Ok(Client {
            http,
            servers: servers
                .into_iter()
                .map(|s| s.trim_end_matches('/').to_string())
                .collect(),
            token,
            current: AtomicUsize::new(0),
        })
    }

    /// Sends one request (GET when `body` is `None`, else POST with the JSON body), trying
    /// each server once, starting with the last one that answered.
    pub async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for step in 0..self.servers.len() {
            let index = (start + step) % self.servers.len();
            let url = format!("{}{path}", self.servers[index]);
            let mut request = match &body {
                Some(body) => self
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone()),
                None => self.http.get(&url),
            }
            .timeout(timeout);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    last = Some(ClientError::Unreachable {
                        url,
                        reason: error.to_string(),
                    });
                    continue;
                }
            };
            let status = response.status().as_u16();
            if matches!(status, 502..=504) {
                last = Some(ClientError::Unreachable {
                    url,
                    reason: format!("status {status}"),
                });
                continue;
            }
            self.current.store(index, Ordering::Relaxed);
            let bytes = response
                .bytes()
                .await
                .map_err(|error| ClientError::Unreachable {
                    url: url.clone(),
                    reason: error.to_string(),
                })?;
            if !(200..300).contains(&status) {
                let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                return Err(ClientError::Refused {
                    status,
                    message: value["error"].as_str().map_or_else(
                        || String::from_utf8_lossy(&bytes).into_owned(),
                        str::to_string,
                    ),
                    lease_lost: value["lease_lost"].as_bool() == Some(true),
                });
            }
            return serde_json::from_slice(&bytes)
                .map_err(|error| ClientError::Protocol(format!("{path}: {error}")));
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol("no server".into())))
    }

    /// `POST /v1/lease`.
    pub async fn lease(
        &self,
        worker: &str,
        queues: &[String],
        max: u32,
        wait: Duration,
    ) -> Result<LeaseReply, ClientError> {
        let body = serde_json::json!({
            "worker": worker, "queues": queues, "max": max, "wait_ms": wait.as_millis() as u64,
        });
        self.call(
            "/v1/lease",
            Some(body.to_string()),
            wait + Duration::from_secs(10),
        )
        .await
    }

    /// `POST /v1/jobs/{id}/heartbeat`.
    pub async fn heartbeat(
        &self,
        id: JobId,
        token: i64,
        progress: Option<&Progress>,
    ) -> Result<HeartbeatReply, ClientError> {
        let body = serde_json::json!({ "token": token, "progress": progress });
        self.report(id, "heartbeat", body).await
    }

    /// `POST /v1/jobs/{id}/complete`.
    pub async fn complete(
        &self,
        id: JobId,
        token: i64,
        result: &RawValue,
    ) -> Result<(), ClientError> {
        let body = serde_json::json!({ "token": token, "result": result });
        self.report::<serde_json::Value>(id, "complete", body)
            .await
            .map(drop)
    }

    /// `POST /v1/jobs/complete`: several completions in one request. Each gets its own
    /// outcome, in order; a refused one (its lease lost, say) does not affect the others.
    pub async fn complete_many(
        &self,
        completions: &[Completion],
    ) -> Result<Vec<Result<(), ClientError>>, ClientError> {
        #[derive(Deserialize)]
        struct Answer {
            jobs: Vec<CompletionAnswer>,
        }
        let body = serde_json::json!({ "jobs": completions });
        let answer: Answer = self
            .call(
                "/v1/jobs/complete",
                Some(body.to_string()),
                Duration::from_secs(10),
            )
            .await?;
        if answer.jobs.len() != completions.len() {
            return Err(ClientError::Protocol(format!(
                "{} outcomes for {} completions",
                answer.jobs.len(),
                completions.len()
            )));
        }
        Ok(answer
            .jobs
            .into_iter()
            .map(|one| match one {
                CompletionAnswer { ok: true, .. } => Ok(()),
                CompletionAnswer {
                    status,
                    error,
                    lease_lost,
                    ..
                } => Err(ClientError::Refused {
                    // The server names each refusal's status; a conflict if not.
                    status: status.unwrap_or(409),
                    message: error.unwrap_or_else(|| "refused".into()),
                    lease_lost,
                }),
            })
            .collect())
    }

    /// `POST /v1/jobs/{id}/fail`.
    pub async fn fail(
        &self,
        id: JobId,
        token: i64,
        error: &str,
        retryable: bool,
    ) -> Result<(), ClientError> {
        let body = serde_json::json!({ "token": token, "error": error, "retryable": retryable });
        self.report::<serde_json::Value>(id, "fail", body)
            .await
            .map(drop)
    }

    /// `POST /v1/jobs/{id}/release`.
    pub async fn release(&self, id: JobId, token: i64) -> Result<(), ClientError> {
        let body = serde_json::json!({ "token": token });
        self.report::<serde_json::Value>(id, "release", body)
            .await
            .map(drop)
    }

    async fn report<T: DeserializeOwned>(
        &self,
        id: JobId,
        what: &str,
        body: serde_json::Value,
    ) -> Result<T, ClientError> {
        self.call(
            &format!("/v1/jobs/{id}/{what}"),
            Some(body.to_string()),
            Duration::from_secs(10),
        )
        .await
    }
}
