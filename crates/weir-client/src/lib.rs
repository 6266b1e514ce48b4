//! A rate-limited HTTP client on reqwest (rustls), for webhook jobs and the crawler.
//!
//! Every request goes only where the [`Egress`] policy permits: by default public addresses,
//! checked on the addresses connected to (see [`egress`]). Every attempt of every request
//! passes, in this order:
//! 1. the keyed rate limit ([`RateLimiter`], GCRA; the key is the URL's host and port unless
//!    the caller names one), waiting for its slot without holding anything else;
//! 2. the per-key concurrency limit, then the global one (tokio's fair semaphores);
//! 3. the request itself, bounded by the per-attempt timeout and the overall deadline.
//!
//! A failed attempt is retried ([`RetryPolicy`]) on connect errors, timeouts, 408, 429 and
//! 5xx, after a full-jitter exponential backoff or the server's `Retry-After` (capped), while
//! the [`RetryBudget`] allows. Dropping the future at any point cancels the request and gives
//! back its permits and, when it is still the last one, its rate-limit slot.

mod client;
mod concurrency;
pub mod egress;
mod rate;
mod retry;
pub mod webhook;

/// The reqwest this client is built on, to build requests and read headers with.
pub use reqwest;

pub use client::{Client, ClientBuilder, Error, RequestOptions, Response};
pub use concurrency::{ConcurrencyLimits, Permits};
pub use egress::{Egress, Refused};
pub use rate::{Quota, RateLimiter, Slot};
pub use retry::{parse_retry_after, RetryBudget, RetryPolicy};
pub use webhook::WebhookSigner;
