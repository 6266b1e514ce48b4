//! The HTTP API routes that belong to the server itself: health and metrics.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use weir_http::{HttpMetrics, Method, Request, Response, Router, StatusCode};
use weir_jobs::{Jobs, JobsError, QueueCount};
use weir_pubsub::{Hub, RelayStats};

use weir_auth::{Scope, Tokens};

/// Adds `/healthz` and `/metrics` to `router`.
///
/// `/healthz` is open (load balancers probe it); `/metrics` names connections, so it needs
/// the `admin` scope once tokens are set.
pub(crate) fn add_operational_routes(
    router: Router,
    metrics: Arc<HttpMetrics>,
    hub: Hub,
    jobs: Jobs,
    tokens: Arc<Tokens>,
) -> Router {
    router
        .route("/healthz", Method::GET, |_: Request| async {
            Response::text(StatusCode::OK, "ok\n")
        })
        .route("/metrics", Method::GET, move |req: Request| {
            let allowed = tokens.authorize(&req, Scope::Admin);
            let metrics = metrics.clone();
            let hub = hub.clone();
            let jobs = jobs.clone();
            async move {
                if let Err(denied) = allowed {
                    return *denied;
                }
                let mut text = String::with_capacity(4096);
                let _ = writeln!(text, "# HELP weir_build_info Weir version.");
                let _ = writeln!(text, "# TYPE weir_build_info gauge");
                let _ = writeln!(
                    text,
                    "weir_build_info{{version=\"{}\"}} 1",
                    env!("CARGO_PKG_VERSION")
                );
                metrics.render_prometheus(&mut text);
                render_pubsub(&hub, &mut text);
                render_jobs(&jobs, &mut text).await;
                Response::text(StatusCode::OK, text)
                    .with_content_type("text/plain; version=0.0.4; charset=utf-8")
            }
        })
}

/// The hub's gauges, and the subscribers that fell behind, by name: a slow consumer is
/// visible, not silently dropped.
fn render_pubsub(hub: &Hub, text: &mut String) {
    let topics = hub.topics();
    let _ = writeln!(text, "# HELP weir_pubsub_topics Topics held by the hub.");
    let _ = writeln!(text, "# TYPE weir_pubsub_topics gauge");
    let _ = writeln!(text, "weir_pubsub_topics {}", topics.len());
    let _ = writeln!(
        text,
        "# HELP weir_pubsub_retained_bytes Bytes the topics retain for replay (payloads and a fixed cost per message), against pubsub.max_retained_bytes."
    );
    let _ = writeln!(text, "# TYPE weir_pubsub_retained_bytes gauge");
    let _ = writeln!(text, "weir_pubsub_retained_bytes {}", hub.retained_bytes());
    let published: u64 = topics.iter().map(|t| t.next_offset).sum();
    let _ = writeln!(
        text,
        "# HELP weir_pubsub_messages_total Messages published, all topics."
    );
    let _ = writeln!(text, "# TYPE weir_pubsub_messages_total counter");
    let _ = writeln!(text, "weir_pubsub_messages_total {published}");
    let _ = writeln!(
        text,
        "# HELP weir_pubsub_subscriber_missed Messages a connected subscriber skipped or was cut off at, by subscriber (its peer address)."
    );
    let _ = writeln!(text, "# TYPE weir_pubsub_subscriber_missed gauge");
    // The worst 50: enough to find the culprits, a bound on the scrape's size.
    for slow in hub.slow_subscribers().iter().take(50) {
        let _ = writeln!(
            text,
            "weir_pubsub_subscriber_missed{{subscriber=\"{}\"}} {}",
            escape_label(&slow.label),
            slow.missed
        );
    }
    if let Some(relay) = hub.relay_stats() {
        render_relay(relay, text);
    }
}

/// The relay between nodes (PostgreSQL only): what went out, came in, and went missing.
fn render_relay(relay: RelayStats, text: &mut String) {
    let counters = [
        ("sent", relay.sent, "Messages sent to other nodes."),
        ("received", relay.received, "Messages received from other nodes."),
        ("dropped", relay.dropped, "Messages another node wanted that this node could not send (its queue to them full or closed, the message over 16 MiB, or the database failing)."),
        ("lost", relay.lost, "Messages from other nodes lost on the way (this node was not listening)."),
    ];
    for (name, value, help) in counters {
        let _ = writeln!(text, "# HELP weir_pubsub_relay_{name}_total {help}");
        let _ = writeln!(text, "# TYPE weir_pubsub_relay_{name}_total counter");
        let _ = writeln!(text, "weir_pubsub_relay_{name}_total {value}");
    }
    let _ = writeln!(
        text,
        "# HELP weir_pubsub_relay_peers Other nodes seen in the last {} s.",
        weir_pubsub::postgres_relay::PEER_TIMEOUT.as_secs()
    );
    let _ = writeln!(text, "# TYPE weir_pubsub_relay_peers gauge");
    let _ = writeln!(text, "weir_pubsub_relay_peers {}", relay.peers);
}

/// Longest the job counts may take in a scrape; past it (a large table on a busy database)
/// the scrape answers without them and says so, rather than hang the scraper.
const JOB_COUNTS_DEADLINE: Duration = Duration::from_secs(2);

/// Unfinished jobs by queue and state from the store (finished ones are left out: counting
/// them reads the whole history), the lease requests waiting on this node, and the finished
/// jobs it deleted after their retention.
async fn render_jobs(jobs: &Jobs, text: &mut String) {
    render_job_counts(jobs.unfinished_counts(), text).await;
    let _ = writeln!(
        text,
        "# HELP weir_jobs_pruned_total Finished jobs this node deleted after their retention, by the state they finished in."
    );
    let _ = writeln!(text, "# TYPE weir_jobs_pruned_total counter");
    let pruned = jobs.pruned_total();
    for state in weir_jobs::retention::FINISHED {
        let _ = writeln!(
            text,
            "weir_jobs_pruned_total{{state=\"{}\"}} {}",
            state.as_str(),
            pruned.of(state)
        );
    }
    let _ = writeln!(
        text,
        "# HELP weir_jobs_leases_waiting Lease requests on this node waiting for a job, by queue."
    );
    let _ = writeln!(text, "# TYPE weir_jobs_leases_waiting gauge");
    let waiting = jobs.waiting_leases_by_queue();
    let waiting = if waiting.len() > MAX_QUEUE_LABELS {
        let mut sorted = waiting;
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let other: usize = sorted[MAX_QUEUE_LABELS..].iter().map(|(_, n)| n).sum();
        sorted.truncate(MAX_QUEUE_LABELS);
        sorted.push((OTHER_QUEUES.to_string(), other));
        sorted
    } else {
        waiting
    };
    for (queue, waiting) in waiting {
        let _ = writeln!(
            text,
            "weir_jobs_leases_waiting{{queue=\"{}\"}} {waiting}",
            escape_label(&queue)
        );
    }
}

/// Queues named in a metric's labels at most; the rest are summed under [`OTHER_QUEUES`].
/// Queue names come from whoever enqueues, and every label value is a time series a
/// Prometheus server keeps: 100 bounds what a careless or hostile producer can cost it.
const MAX_QUEUE_LABELS: usize = 100;
/// The label value of the queues past [`MAX_QUEUE_LABELS`]: parentheses are not allowed in
/// queue names, so it is never a queue's own.
const OTHER_QUEUES: &str = "(other)";

/// `counts` with at most [`MAX_QUEUE_LABELS`] queues, those with the most jobs, and the
/// others' counts summed per state under [`OTHER_QUEUES`].
fn bounded_queues(counts: Vec<QueueCount>) -> Vec<QueueCount> {
    let mut totals: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for count in &counts {
        *totals.entry(count.queue.as_str()).or_default() += count.count;
    }
    if totals.len() <= MAX_QUEUE_LABELS {
        return counts;
    }
    let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let named: std::collections::HashSet<String> = ranked[..MAX_QUEUE_LABELS]
        .iter()
        .map(|(queue, _)| (*queue).to_owned())
        .collect();
    let mut other: std::collections::BTreeMap<&'static str, QueueCount> = Default::default();
    let mut bounded = Vec::new();
    for count in counts {
        if named.contains(&count.queue) {
            bounded.push(count);
        } else {
            other
                .entry(count.state.as_str())
                .or_insert_with(|| QueueCount {
                    queue: OTHER_QUEUES.to_owned(),
                    state: count.state,
                    count: 0,
                })
                .count += count.count;
        }
    }
    bounded.extend(other.into_values());
    bounded
}

/// The job counts `counts` reads, or `weir_jobs_scrape_ok 0` when it fails or passes its
/// deadline.
async fn render_job_counts(
    counts: impl Future<Output = Result<Vec<QueueCount>, JobsError>>,
    text: &mut String,
) {
    let counts = tokio::time::timeout(JOB_COUNTS_DEADLINE, counts).await;
    let _ = writeln!(
        text,
        "# HELP weir_jobs_scrape_ok Whether this scrape read the job counts (0: the store failed or took longer than {} s).",
        JOB_COUNTS_DEADLINE.as_secs()
    );
    let _ = writeln!(text, "# TYPE weir_jobs_scrape_ok gauge");
    match counts {
        Ok(Ok(counts)) => {
            let _ = writeln!(text, "weir_jobs_scrape_ok 1");
            let _ = writeln!(
                text,
                "# HELP weir_jobs Unfinished jobs by queue and state: scheduled, available, retrying, running (a due scheduled or retrying job counts as available; all nodes, from the store)."
            );
            let _ = writeln!(text, "# TYPE weir_jobs gauge");
            for count in bounded_queues(counts) {
                let _ = writeln!(
                    text,
                    "weir_jobs{{queue=\"{}\",state=\"{}\"}} {}",
                    escape_label(&count.queue),
                    count.state.as_str(),
                    count.count
                );
            }
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "metrics: reading the job counts failed");
            let _ = writeln!(text, "weir_jobs_scrape_ok 0");
        }
        Err(_) => {
            tracing::warn!("metrics: reading the job counts timed out");
            let _ = writeln!(text, "weir_jobs_scrape_ok 0");
        }
    }
}

/// A label value in the text format: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("plain 1.2.3.4:5"), "plain 1.2.3.4:5");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_does_not_answer_in_time_is_reported_not_waited_for() {
        let mut text = String::new();
        let started = tokio::time::Instant::now();
        render_job_counts(std::future::pending(), &mut text).await;
        assert!(text.contains("weir_jobs_scrape_ok 0\n"), "{text}");
        assert_eq!(started.elapsed(), JOB_COUNTS_DEADLINE);
    }

    #[tokio::test]
    async fn a_store_error_is_reported() {
        let mut text = String::new();
        let failed = async { Err(JobsError::Store(weir_jobs::StoreError::Closed)) };
        render_job_counts(failed, &mut text).await;
        assert!(text.contains("weir_jobs_scrape_ok 0\n"), "{text}");
        assert!(!text.contains("weir_jobs{"), "{text}");
    }
}
