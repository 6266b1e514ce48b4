//! The HTTP API and the dashboard: every route of `weir serve`'s HTTP listener.
//!
//! - [`ops`]: `/healthz` and `/metrics`.
//! - [`topics`]: publish, list, and subscribe over Server-Sent Events.
//! - [`ws`]: the WebSocket (`/v1/ws`), chat and pub/sub in JSON frames.
//! - [`jobs`]: the producer and worker routes of the jobs API.
//! - [`dashboard`]: the page and its assets.
//!
//! Handlers return `Result<Response, ApiError>` ([`error`]); a refusal is JSON
//! `{"error": "..."}` with the status that fits.

mod dashboard;
mod error;
mod jobs;
mod ops;
mod topics;
mod ws;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use weir_chat::ChatContext;
use weir_http::{HttpMetrics, Router};
use weir_jobs::Jobs;
use weir_pubsub::Hub;

use crate::config::ServeConfig;
use dashboard::add_dashboard_routes;
use jobs::add_job_routes;
use ops::add_operational_routes;
use topics::add_topic_routes;
use ws::add_ws_route;

/// The routes of the HTTP API. `shutdown` ends waiting lease requests when the server stops.
pub fn router(
    config: &ServeConfig,
    metrics: Arc<HttpMetrics>,
    hub: Hub,
    chat: Arc<ChatContext>,
    jobs: Jobs,
    shutdown: CancellationToken,
) -> Router {
    let tokens = Arc::new(config.tokens.clone());
    let router = add_operational_routes(
        Router::new(),
        metrics,
        hub.clone(),
        jobs.clone(),
        tokens.clone(),
    );
    let router = add_topic_routes(router, hub, tokens.clone(), config.sse_heartbeat);
    let router = add_job_routes(router, jobs, tokens, shutdown, config.http.max_body_bytes);
    let router = add_ws_route(router, chat);
    add_dashboard_routes(router)
}
