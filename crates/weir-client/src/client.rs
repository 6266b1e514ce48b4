//! The client: reqwest behind the rate limit, the concurrency limits and the retry policy.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use thiserror::Error;
use tokio::time::Instant;
use tracing::Instrument;

use crate::concurrency::{ConcurrencyLimits, Permits};
use crate::egress::{refusal, Egress, GuardedResolver, Refused};
use crate::rate::{Quota, RateLimiter};
use crate::retry::{parse_retry_after, retryable_status, RetryBudget, RetryPolicy};

/// Why a request got no response.
#[derive(Debug, Error)]
pub enum Error {
    /// The overall deadline passed (while waiting for a slot, a permit or the server).
    #[error("deadline passed after {attempts} attempt(s)")]
    Deadline {
        /// Attempts started, counting the one the deadline cut short (which may still have
        /// been waiting for its slot or permit).
        attempts: u32,
    },
    /// The last attempt failed in transport (connect, timeout, reset, body).
    #[error("{source} (after {attempts} attempt(s))")]
    Transport {
        /// The last attempt's error; earlier failures were retried and are not kept.
        #[source]
        source: reqwest::Error,
        /// Attempts made, the failed last one included.
        attempts: u32,
    },
    /// The request has no host to key limits by, or was otherwise malformed.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The URL, a redirect or a name's addresses lead where the [`Egress`] policy does not
    /// permit. Never retried.
    #[error("{0}")]
    Refused(Refused),
}

/// Per-request settings; the defaults come from the client.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// The rate and concurrency key (default: the URL's host and port).
    pub key: Option<String>,
    /// Time one attempt may take, to the end of the response head.
    pub timeout: Option<Duration>,
    /// When the whole request, all attempts and waits included, must have its response.
    pub deadline: Option<Instant>,
    /// Whether retrying is safe; by default only for idempotent methods.
    pub idempotent: Option<bool>,
    /// The caller already took the first attempt's rate-limit slot (with
    /// [`RateLimiter::try_acquire`], as a scheduler that picks a ready host does); retries
    /// still wait for theirs.
    pub slot_taken: bool,
}

/// A response, holding the request's concurrency permits until it is dropped (reading a
/// large body still counts as in flight).
#[derive(Debug)]
pub struct Response {
    inner: reqwest::Response,
    attempts: u32,
    _permits: Permits,
}

impl Response {
    /// The last attempt's status: once retries run out, a retryable one (408, 429, 5xx) is
    /// returned here, not as an [`Error`].
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// The header fields of the last attempt's response, after any redirects the client
    /// followed.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The URL that answered (after redirects, when the client follows them).
    pub fn url(&self) -> &Url {
        self.inner.url()
    }

    /// Attempts it took (1 when the first one answered).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The next piece of the body, `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, reqwest::Error> {
        self.inner.chunk().await
    }

    /// Reads the body up to `limit` bytes; the flag says whether it was longer (the rest is
    /// not read).
    pub async fn body_up_to(&mut self, limit: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
        let mut body = Vec::new();
        while let Some(chunk) = self.inner.chunk().await? {
            let room = limit - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                return Ok((body, true));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, false))
    }
}

/// Settings for a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    rate: Option<Quota>,
    key_quotas: Vec<(String, Quota)>,
    per_key_concurrency: Option<usize>,
    global_concurrency: Option<usize>,
    retry: RetryPolicy,
    budget_ratio: f64,
    budget_reserve: u32,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    max_redirects: usize,
    egress: Egress,
}

impl Default for ClientBuilder {
    fn default() -> ClientBuilder {
        ClientBuilder {
            rate: None,
            key_quotas: Vec::new(),
            per_key_concurrency: None,
            global_concurrency: None,
            retry: RetryPolicy::default(),
            budget_ratio: 0.2,
            budget_reserve: 10,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            user_agent: concat!("weir/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_redirects: 10,
            egress: Egress::default(),
        }
    }
}

impl ClientBuilder {
    /// The quota every key gets unless it has its own (default: none).
    pub fn rate(mut self, quota: Quota) -> Self {
        self.rate = Some(quota);
        self
    }

    /// A quota for one key (a host, `host:port`, or a caller's key).
    pub fn key_rate(mut self, key: impl Into<String>, quota: Quota) -> Self {
        self.key_quotas.push((key.into(), quota));
        self
    }

    /// Requests in flight per key (default: no limit).
    pub fn per_key_concurrency(mut self, limit: usize) -> Self {
        self.per_key_concurrency = Some(limit);
        self
    }

    /// Requests in flight in all (default: no limit).
    pub fn global_concurrency(mut self, limit: usize) -> Self {
        self.global_concurrency = Some(limit);
        self
    }

    /// The retry policy (default: 3 retries, 100 ms doubling to 10 s, `Retry-After` ≤ 60 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The retry budget: at most `ratio` of requests retried, plus `reserve` (default 20%, 10).
    pub fn retry_budget(mut self, ratio: f64, reserve: u32) -> Self {
        self.budget_ratio = ratio;
        self.budget_reserve = reserve;
        self
    }

    /// Default per-attempt timeout (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `User-Agent` sent.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// Redirects followed inside one attempt (0: return 3xx responses to the caller, as a
    /// crawler wants, so each hop passes the limits of its own host).
    pub fn max_redirects(mut self, limit: usize) -> Self {
        self.max_redirects = limit;
        self
    }

    /// Where requests may go (default: public addresses only; see [`Egress`]).
    pub fn egress(mut self, egress: Egress) -> Self {
        self.egress = egress;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client, Error> {
        let egress = Arc::new(self.egress);
        let redirect = match self.max_redirects {
            0 => reqwest::redirect::Policy::none(),
            limit => {
                let egress = Arc::clone(&egress);
                // Every hop is checked as the first URL was: a public URL must not lead
                // to a private one.
                reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() > limit {
                        attempt.error(format!("more than {limit} redirects"))
                    } else if let Err(refused) = egress.check_url(attempt.url()) {
                        attempt.error(refused)
                    } else {
                        attempt.follow()
                    }
                })
            }
        };
        let mut http = reqwest::Client::builder()
            .user_agent(self.user_agent)
            .connect_timeout(self.connect_timeout)
            .redirect(redirect)
            .tcp_nodelay(true);
        if !egress.is_open() {
            // A proxy would resolve the names itself, out of the check's sight.
            http = http
                .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&egress))))
                .no_proxy();
        }
        let http = http
            .build()
            .map_err(|error| Error::Invalid(error.to_string()))?;
        let rate = Arc::new(RateLimiter::new(self.rate));
        for (key, quota) in &self.key_quotas {
            rate.set_quota(key, *quota);
        }
        Ok(Client {
            http,
            egress,
            rate,
            limits: Arc::new(ConcurrencyLimits::new(
                self.per_key_concurrency,
                self.global_concurrency,
            )),
            retry: self.retry,
            budget: Arc::new(RetryBudget::new(self.budget_ratio, self.budget_reserve)),
            timeout: self.timeout,
        })
    }
}

/// A rate-limited, retrying HTTP client. Cheap to clone; clones share limits and budget.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    egress: Arc<Egress>,
    rate: Arc<RateLimiter>,
    limits: Arc<ConcurrencyLimits>,
    retry: RetryPolicy,
    budget: Arc<RetryBudget>,
    timeout: Duration,
}

/// What one attempt came to.
enum Attempt {
    Done(Result<reqwest::Response, reqwest::Error>),
    /// Worth retrying, after the server's `Retry-After` if it gave one.
    Again(Result<reqwest::Response, reqwest::Error>, Option<Duration>),
}

impl Client {
    /// Settings with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The underlying reqwest client, to build requests with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The rate limiter, to set per-key quotas or pause a key while running.
    pub fn rate_limiter(&self) -> &Arc<RateLimiter> {
        &self.rate
    }

    /// The key a URL's requests are limited under: its host and, when not the scheme's
    /// default, its port.
    pub fn key_of(url: &Url) -> Option<String> {
        let host = url.host_str()?;
        Some(match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        })
    }

    /// Sends `request` under the limits, retrying as the policy and budget allow.
    ///
    /// Returns the last response, whatever its status (a 503 after the last retry is a
    /// response, not an error); an error only when no response came.
    pub async fn execute(
        &self,
        request: reqwest::Request,
        options: RequestOptions,
    ) -> Result<Response, Error> {
        // An address in the URL is connected to without resolving: checked here.
        self.egress
            .check_url(request.url())
            .map_err(Error::Refused)?;
        let key = match options.key.clone() {
            Some(key) => key,
            None => Client::key_of(request.url())
                .ok_or_else(|| Error::Invalid(format!("`{}` has no host", request.url())))?,
        };
        let span = tracing::debug_span!("http_request", method = %request.method(), url = %request.url(), %key);
        let mut attempts = 0;
        let work = self
            .attempt_until_done(request, &key, &options, &mut attempts)
            .instrument(span);
        match options.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, work).await {
                Ok(result) => result,
                Err(_) => Err(Error::Deadline { attempts }),
            },
            None => work.await,
        }
    }

    async fn attempt_until_done(
        &self,
        mut request: reqwest::Request,
        key: &str,
        options: &RequestOptions,
        attempts: &mut u32,
    ) -> Result<Response, Error> {
        let idempotent = options
            .idempotent
            .unwrap_or_else(|| is_idempotent(request.method()));
        let may_retry = idempotent || self.retry.retry_non_idempotent;
        self.budget.deposit();
        loop {
            *attempts += 1;
            let retry_copy = request.try_clone();
            if *attempts > 1 || !options.slot_taken {
                self.rate.acquire(key).await;
            }
            let permits = self.limits.acquire(key).await;
            *request.timeout_mut() = Some(options.timeout.unwrap_or(self.timeout));
            let attempt = self.judge(self.http.execute(request).await);
            let (result, retry_after) = match attempt {
                Attempt::Done(result) => return finish(result, permits, *attempts),
                Attempt::Again(result, retry_after) => (result, retry_after),
            };
            let next = retry_copy.filter(|_| may_retry && *attempts <= self.retry.max_retries);
            let wait = match retry_after {
                Some(wait) if wait > self.retry.retry_after_cap => None,
                Some(wait) => Some(wait),
                None => Some(self.retry.backoff(*attempts)),
            };
            let (Some(next), Some(wait)) = (next, wait) else {
                return finish(result, permits, *attempts);
            };
            if !self.budget.try_withdraw() {
                tracing::debug!("retry budget spent; returning the failure");
                return finish(result, permits, *attempts);
            }
            if retry_after.is_some() {
                // The server asked the whole host to wait, not just this request.
                self.rate.defer(key, Instant::now() + wait);
            }
            tracing::debug!(
                attempt = *attempts,
                wait_ms = wait.as_millis() as u64,
                "retrying"
            );
            drop((result, permits));
            tokio::time::sleep(wait).await;
            request = next;
        }
    }

    fn judge(&self, result: Result<reqwest::Response, reqwest::Error>) -> Attempt {
        match &result {
            Ok(response) if retryable_status(response.status()) => {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, SystemTime::now()));
                Attempt::Again(result, retry_after)
            }
            // A refusal stays one however often it is tried.
            Err(error) if refusal(error).is_some() => Attempt::Done(result),
            Err(error) if error.is_connect() || error.is_timeout() || error.is_request() => {
                Attempt::Again(result, None)
            }
            _ => Attempt::Done(result),
        }
    }
}

fn finish(
    result: Result<reqwest::Response, reqwest::Error>,
    permits: Permits,
    attempts: u32,
) -> Result<Response, Error> {
    match result {
        Ok(inner) => Ok(Response {
            inner,
            attempts,
            _permits: permits,
        }),
        Err(source) => match refusal(&source) {
            Some(refused) => Err(Error::Refused(refused.clone())),
            None => Err(Error::Transport { source, attempts }),
        },
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
