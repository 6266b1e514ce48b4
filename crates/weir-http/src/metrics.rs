//! Server metrics: lock-free counters rendered in the Prometheus text format.
//!
//! Every update is one relaxed atomic add. Relaxed is enough: each counter is read on its
//! own by a scrape, and Prometheus tolerates a scrape that sees one counter a request ahead
//! of another.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::StatusCode;

/// Upper bounds of the latency histogram, in seconds: from 100 µs (a cached response on
/// loopback) to 10 s (the drain deadline), roughly ×2.5 apart.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0,
];

/// Counters of one HTTP server, shared by all its connections.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    open_connections: AtomicI64,
    accepted_connections: AtomicU64,
    /// Responses by status class: index 0 is 1xx … index 4 is 5xx.
    responses_by_class: [AtomicU64; 5],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
    /// Writes to sockets: with pipelining, many responses share one write.
    socket_writes: AtomicU64,
}

/// Counts a connection as open for as long as it lives.
#[derive(Debug)]
#[must_use = "the connection counts as open only while the guard lives"]
pub(crate) struct OpenConnection(Arc<HttpMetrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Relaxed);
    }
}

impl HttpMetrics {
    /// New, zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.accepted_connections.fetch_add(1, Relaxed);
        self.open_connections.fetch_add(1, Relaxed);
        OpenConnection(self.clone())
    }

    /// Records one response and the time from its request head to its last byte.
    pub(crate) fn record_response(&self, status: StatusCode, elapsed: Duration) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.responses_by_class[class].fetch_add(1, Relaxed);
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|&le| seconds <= le) {
            self.latency_buckets[bucket].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    pub(crate) fn socket_write(&self) {
        self.socket_writes.fetch_add(1, Relaxed);
    }

    /// Writes made to client sockets so far (one per batch of pipelined responses).
    pub fn socket_writes(&self) -> u64 {
        self.socket_writes.load(Relaxed)
    }

    /// Responses sent so far, of every status.
    pub fn responses(&self) -> u64 {
        self.responses_by_class
            .iter()
            .map(|c| c.load(Relaxed))
            .sum()
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> i64 {
        self.open_connections.load(Relaxed)
    }

    /// Responses sent with a status in the given class (1 for 1xx … 5 for 5xx).
    pub fn responses_in_class(&self, class: u16) -> u64 {
        match class {
            1..=5 => self.responses_by_class[class as usize - 1].load(Relaxed),
            _ => 0,
        }
    }

    /// Appends these metrics to `out` in the Prometheus text exposition format.
    pub fn render_prometheus(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP weir_http_open_connections HTTP connections open now."
        );
        let _ = writeln!(out, "# TYPE weir_http_open_connections gauge");
        let _ = writeln!(
            out,
            "weir_http_open_connections {}",
            self.open_connections()
        );
        let _ = writeln!(
            out,
            "# HELP weir_http_connections_total HTTP connections accepted."
        );
        let _ = writeln!(out, "# TYPE weir_http_connections_total counter");
        let _ = writeln!(
            out,
            "weir_http_connections_total {}",
            self.accepted_connections.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP weir_http_responses_total HTTP responses by status class."
        );
        let _ = writeln!(out, "# TYPE weir_http_responses_total counter");
        for (i, counter) in self.responses_by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "weir_http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                counter.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP weir_http_request_duration_seconds Time from request head to last response byte."
        );
        let _ = writeln!(out, "# TYPE weir_http_request_duration_seconds histogram");
        let mut cumulative = 0;
        for (le, counter) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += counter.load(Relaxed);
            let _ = writeln!(
                out,
                "weir_http_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "weir_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "weir_http_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "weir_http_request_duration_seconds_count {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_classes_count() {
        let metrics = Arc::new(HttpMetrics::new());
        metrics.record_response(StatusCode::OK, Duration::from_micros(50));
        metrics.record_response(StatusCode::NOT_FOUND, Duration::from_millis(3));
        metrics.record_response(StatusCode::INTERNAL_SERVER_ERROR, Duration::from_secs(60));
        {
            let _open = metrics.connection_opened();
            assert_eq!(metrics.open_connections(), 1);
        }
        assert_eq!(metrics.open_connections(), 0);
        let mut text = String::new();
        metrics.render_prometheus(&mut text);
        assert!(text.contains("weir_http_responses_total{class=\"2xx\"} 1"));
        assert!(text.contains("weir_http_responses_total{class=\"4xx\"} 1"));
        assert!(text.contains("weir_http_responses_total{class=\"5xx\"} 1"));
        assert!(text.contains("weir_http_request_duration_seconds_bucket{le=\"0.0001\"} 1"));
        assert!(text.contains("weir_http_request_duration_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("weir_http_request_duration_seconds_bucket{le=\"10\"} 2"));
        assert!(text.contains("weir_http_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("weir_http_connections_total 1"));
    }
}
