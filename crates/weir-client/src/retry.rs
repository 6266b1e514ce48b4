//! When and how long to wait before trying a request again.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

/// Retries of one request.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: never retry).
    pub max_retries: u32,
    /// The first backoff's upper bound; it doubles per retry.
    pub base: Duration,
    /// The upper bound no backoff passes.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured. A server asking for longer gets its answer
    /// returned to the caller instead of a wait (a job can retry much later; a request
    /// should not hang for an hour).
    pub retry_after_cap: Duration,
    /// Retry methods that are not idempotent (POST, PATCH) too. Off by default: a POST that
    /// timed out may have been done, and doing it twice is the caller's decision.
    pub retry_non_idempotent: bool,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            retry_after_cap: Duration::from_secs(60),
            retry_non_idempotent: false,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (1 for the first): "full jitter", a uniform
    /// draw from zero to the exponential bound, which spreads retrying clients best.
    pub fn backoff(&self, retry: u32) -> Duration {
        let bound = self
            .base
            .saturating_mul(1 << retry.saturating_sub(1).min(30))
            .min(self.max_backoff);
        bound.mul_f64(fastrand::f64())
    }
}

/// Statuses worth another try: 408, 429 and every 5xx.
pub(crate) fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP-date (a date in the past means
/// now). `None` for anything else.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Milli-tokens per retry.
const TOKEN: i64 = 1000;

/// Retries at most a set fraction of requests, so a failing server sees its load grow by
/// that fraction rather than multiplied by the retry count.
///
/// Each request deposits `ratio` of a token and each retry withdraws one; a small reserve
/// lets a quiet client retry at all. The balance never passes the reserve plus the savings
/// of 1,000 requests, so a long calm spell cannot fund a retry storm.
#[derive(Debug)]
pub struct RetryBudget {
    per_request: i64,
    ceiling: i64,
    balance: AtomicI64,
}

impl RetryBudget {
    /// Retries at most `ratio` (0.0–1.0) of requests, plus `reserve` retries.
    pub fn new(ratio: f64, reserve: u32) -> RetryBudget {
        let per_request = (ratio.clamp(0.0, 1.0) * TOKEN as f64) as i64;
        let reserve = i64::from(reserve) * TOKEN;
        RetryBudget {
            per_request,
            ceiling: reserve + per_request * 1000,
            balance: AtomicI64::new(reserve),
        }
    }

    /// Counts one request.
    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                Some((balance + self.per_request).min(self.ceiling))
            });
    }

    /// Takes one retry from the budget, if it has one.
    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                (balance >= TOKEN).then_some(balance - TOKEN)
            })
            .is_ok()
    }
}

impl Default for RetryBudget {
    /// 20% of requests, plus 10 retries.
    fn default() -> RetryBudget {
        RetryBudget::new(0.2, 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_below_a_doubling_bound() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for retry in 1..=8 {
            let bound = Duration::from_millis(100 << (retry - 1)).min(Duration::from_secs(1));
            let waits: Vec<Duration> = (0..200).map(|_| policy.backoff(retry)).collect();
            assert!(waits.iter().all(|wait| *wait <= bound));
            // Full jitter: the draws spread over the range, not around one value.
            assert!(waits.iter().any(|wait| *wait < bound / 4));
            assert!(waits.iter().any(|wait| *wait > bound * 3 / 4));
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn the_budget_allows_the_reserve_then_the_ratio() {
        let budget = RetryBudget::new(0.1, 2);
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
        let mut retries = 0;
        for _ in 0..1000 {
            budget.deposit();
            if budget.try_withdraw() {
                retries += 1;
            }
        }
        assert_eq!(retries, 100);
    }

    #[test]
    fn retryable_statuses() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(
                retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [200, 301, 400, 401, 404, 409] {
            assert!(
                !retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }
}
