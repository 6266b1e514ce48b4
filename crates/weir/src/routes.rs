//! The HTTP API routes that belong to the server itself: health and metrics.

use std::fmt::Write as _;
use std::sync::Arc;

use weir_http::{HttpMetrics, Method, Request, Response, Router, StatusCode};

/// Adds `/healthz` and `/metrics` to `router`.
pub(crate) fn add_operational_routes(router: Router, metrics: Arc<HttpMetrics>) -> Router {
    router
        .route("/healthz", Method::GET, |_: Request| async {
            Response::text(StatusCode::OK, "ok\n")
        })
        .route("/metrics", Method::GET, move |_: Request| {
            let metrics = metrics.clone();
            async move {
                let mut text = String::with_capacity(4096);
                let _ = writeln!(text, "# HELP weir_build_info Weir version.");
                let _ = writeln!(text, "# TYPE weir_build_info gauge");
                let _ = writeln!(
                    text,
                    "weir_build_info{{version=\"{}\"}} 1",
                    env!("CARGO_PKG_VERSION")
                );
                metrics.render_prometheus(&mut text);
                Response::text(StatusCode::OK, text)
                    .with_content_type("text/plain; version=0.0.4; charset=utf-8")
            }
        })
}
