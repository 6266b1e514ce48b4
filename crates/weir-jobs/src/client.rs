//! The HTTP client of the jobs API, for workers and for `weir jobs`: any language can do
//! the same with the requests documented in docs/workers.md.
//!
//! Several server URLs may be given (nodes of one cluster): a request that cannot reach one
//! (connection refused, timeout, 502–504) moves on to the next, so a worker outlives a node.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::model::{JobId, Progress};
use crate::protocol::{
    CompleteBatch, CompleteBatchReply, CompleteRequest, Completion, CompletionOutcome, FailRequest,
    HeartbeatReply, HeartbeatRequest, LeaseReply, LeaseRequest, ReleaseRequest,
};

/// Why a request to the server failed.
#[derive(Debug, Clone, Error)]
pub enum ClientError {
    /// No server could be reached (or answered 502–504), or the connection broke while an
    /// answer was read.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The last URL tried.
        url: String,
        /// Why that URL failed: the transport error, or `status 502` to `status 504`.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{status}: {message}")]
    Refused {
        /// The HTTP status: any outside 200–299 except 502–504, which count as unreachable.
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

    /// `POST /v1/lease`: up to `max` jobs of `kinds` from `queues`.
    pub async fn lease(
        &self,
        worker: &str,
        queues: &[String],
        kinds: &[String],
        max: u32,
        wait: Duration,
    ) -> Result<LeaseReply, ClientError> {
        let body = LeaseRequest {
            worker: worker.to_owned(),
            queues: Some(queues.to_vec()),
            kinds: kinds.to_vec(),
            max: Some(max),
            wait_ms: Some(wait.as_millis() as u64),
        };
        self.call(
            "/v1/lease",
            Some(body_text(&body)),
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
        let body = HeartbeatRequest {
            token,
            progress: progress.cloned(),
        };
        self.report(id, "heartbeat", &body).await
    }

    /// `POST /v1/jobs/{id}/complete`.
    pub async fn complete(
        &self,
        id: JobId,
        token: i64,
        result: &RawValue,
    ) -> Result<(), ClientError> {
        let body = CompleteRequest {
            token,
            result: Some(result.to_owned()),
        };
        self.report::<serde_json::Value>(id, "complete", &body)
            .await
            .map(drop)
    }

    /// `POST /v1/jobs/complete`: several completions in one request. Each gets its own
    /// outcome, in order; a refused one (its lease lost, say) does not affect the others.
    pub async fn complete_many(
        &self,
        completions: &[Completion],
    ) -> Result<Vec<Result<(), ClientError>>, ClientError> {
        let body = CompleteBatch {
            jobs: Cow::Borrowed(completions),
        };
        let answer: CompleteBatchReply = self
            .call(
                "/v1/jobs/complete",
                Some(body_text(&body)),
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
                CompletionOutcome { ok: true, .. } => Ok(()),
                CompletionOutcome {
                    status,
                    error,
                    lease_lost,
                    ..
                } => Err(ClientError::Refused {
                    // The server names each refusal's status; a conflict if not.
                    status: status.unwrap_or(409),
                    message: error.unwrap_or_else(|| "refused".into()),
                    lease_lost: lease_lost.unwrap_or(false),
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
        let body = FailRequest {
            token,
            error: error.to_owned(),
            retryable,
        };
        self.report::<serde_json::Value>(id, "fail", &body)
            .await
            .map(drop)
    }

    /// `POST /v1/jobs/{id}/release`.
    pub async fn release(&self, id: JobId, token: i64) -> Result<(), ClientError> {
        self.report::<serde_json::Value>(id, "release", &ReleaseRequest { token })
            .await
            .map(drop)
    }

    async fn report<T: DeserializeOwned>(
        &self,
        id: JobId,
        what: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        self.call(
            &format!("/v1/jobs/{id}/{what}"),
            Some(body_text(body)),
            Duration::from_secs(10),
        )
        .await
    }
}

/// A request body as JSON text (these types always serialize).
fn body_text(body: &impl Serialize) -> String {
    serde_json::to_string(body).expect("a request serializes")
}
