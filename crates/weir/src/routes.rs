//! The HTTP API routes that belong to the server itself: health and metrics.

use std::fmt::Write as _;
use std::sync::Arc;

use weir_http::{HttpMetrics, Method, Request, Response, Router, StatusCode};
use weir_pubsub::Hub;

use crate::auth::{Scope, Tokens};

/// Adds `/healthz` and `/metrics` to `router`.
///
/// `/healthz` is open (load balancers probe it); `/metrics` names connections, so it needs
/// the `admin` scope once tokens are set.
pub(crate) fn add_operational_routes(
    router: Router,
    metrics: Arc<HttpMetrics>,
    hub: Hub,
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
        let label = slow.label.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            text,
            "weir_pubsub_subscriber_missed{{subscriber=\"{label}\"}} {}",
            slow.missed
        );
    }
}
