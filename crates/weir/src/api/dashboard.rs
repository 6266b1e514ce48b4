//! The dashboard: `GET /` and its assets, embedded in the binary (no CDN, no build step).
//!
//! The page holds no data, so it is served without a token; it reads everything through the
//! public API (`/v1/topics`, Server-Sent Events, `/v1/ws`) and asks for a token when the
//! server answers 401.

use weir_http::{Method, Request, Response, Router, StatusCode};

const INDEX: &str = include_str!("../../assets/index.html");
const SCRIPT: &str = include_str!("../../assets/dashboard.js");
const STYLE: &str = include_str!("../../assets/dashboard.css");

/// Scripts and styles from this server only; connections (fetch, EventSource, WebSocket)
/// back to it only. Payloads shown on the page are inserted as text, never as HTML, and
/// the policy is the second line of defence.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Adds `GET /` and `GET /assets/…`.
pub(crate) fn add_dashboard_routes(router: Router) -> Router {
    router
        .route("/", Method::GET, |_: Request| async {
            asset(INDEX, "text/html; charset=utf-8")
        })
        .route("/assets/dashboard.js", Method::GET, |_: Request| async {
            asset(SCRIPT, "text/javascript; charset=utf-8")
        })
        .route("/assets/dashboard.css", Method::GET, |_: Request| async {
            asset(STYLE, "text/css; charset=utf-8")
        })
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    Response::new(StatusCode::OK)
        .with_body(body)
        .with_content_type(content_type)
        // Revalidate each load: the assets change with the binary.
        .with_header("cache-control", "no-cache")
        .with_header("x-content-type-options", "nosniff")
        .with_header("content-security-policy", CSP)
}
