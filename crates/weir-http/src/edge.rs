//! What every HTTP request passes before a route sees it: defences against web pages the
//! operator's browser happens to visit, which can send requests to Weir on loopback.
//!
//! - **Host** (DNS rebinding: a page's own name made to resolve to 127.0.0.1): a request is
//!   served only for a host the operator expects: an IP address, `localhost` (and names
//!   under it), or a name in `http.allowed_hosts` (`*` for any). Others get 421.
//! - **Origin** (cross-site requests): a browser names the page that sent a request. A
//!   state-changing request (`POST`, `PUT`, `PATCH`, `DELETE`) or a WebSocket upgrade from
//!   another origin than Weir's own gets 403, unless `http.cors_origins` lists it.
//!   Clients that are not browsers send no `Origin` and are not affected; their tokens are.
//! - **CORS**: for an origin in `http.cors_origins`, preflight requests are answered and
//!   responses carry `Access-Control-Allow-Origin`, so a browser app there can use the API
//!   and Server-Sent Events (with a bearer token, never cookies: no credentials are
//!   allowed). Every answer says `Vary: Origin`.

use std::future::Future;
use std::net::IpAddr;

use crate::{Handler, Method, Request, Response, StatusCode};

/// Who may reach the API from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgePolicy {
    /// Host names served besides IP addresses and `localhost` (setting
    /// `http.allowed_hosts`); `*` serves any.
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://app.example.com`) whose pages may use the API (setting
    /// `http.cors_origins`); `*` allows any page to read, but never to send credentials.
    pub cors_origins: Vec<String>,
}

/// Methods a preflight may ask for, and headers a page may send.
const CORS_METHODS: &str = "GET, POST, PUT, DELETE";
const CORS_HEADERS: &str = "authorization, content-type, last-event-id";
/// How long a browser may cache a preflight's answer: 10 minutes.
const CORS_MAX_AGE: &str = "600";

impl EdgePolicy {
    /// Whether requests naming `host` (the `Host` header, port included) are served.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        if name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || name.to_ascii_lowercase().ends_with(".localhost")
        {
            return true;
        }
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(name))
    }

    /// Whether a page of `origin` may use the API: Weir's own origin (the request's
    /// `host`), or one the operator listed.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let same = host.is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
        });
        same || self.listed(origin)
    }

    /// Whether `origin` is in `http.cors_origins` (`*` lists every origin but `null`).
    fn listed(&self, origin: &str) -> bool {
        origin != "null"
            && self
                .cors_origins
                .iter()
                .any(|listed| listed == "*" || listed.eq_ignore_ascii_case(origin))
    }

    /// The answer for a request that may not go further, if any.
    fn refusal(&self, request: &Request) -> Option<Response> {
        let host = request.header("host");
        if let Some(host) = host {
            if !self.host_allowed(host) {
                return Some(refuse(
                    StatusCode::MISDIRECTED_REQUEST,
                    format!(
                        "this server does not serve the host {host:?} (setting http.allowed_hosts)"
                    ),
                ));
            }
        }
        let origin = request.header("origin")?;
        let state_changing = matches!(
            *request.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        let upgrade = request
            .header("upgrade")
            .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
        if (state_changing || upgrade) && !self.origin_allowed(origin, host) {
            return Some(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "requests from pages of {origin} are not allowed (setting http.cors_origins)"
                ),
            ));
        }
        if *request.method() == Method::OPTIONS
            && request.header("access-control-request-method").is_some()
        {
            return Some(self.preflight(origin));
        }
        None
    }

    /// The answer to a CORS preflight: allowed for a listed origin, a bare 204 otherwise
    /// (which the browser reads as a refusal).
    fn preflight(&self, origin: &str) -> Response {
        let response = Response::new(StatusCode::NO_CONTENT).with_header("vary", "Origin");
        if !self.listed(origin) {
            return response;
        }
        response
            .with_header("access-control-allow-origin", origin.to_owned())
            .with_header("access-control-allow-methods", CORS_METHODS)
            .with_header("access-control-allow-headers", CORS_HEADERS)
            .with_header("access-control-max-age", CORS_MAX_AGE)
    }

    /// `response` with the CORS headers a page of `origin` needs to read it.
    fn expose(&self, origin: Option<&str>, response: Response) -> Response {
        let response = response.with_header("vary", "Origin");
        match origin {
            Some(origin) if self.listed(origin) => {
                response.with_header("access-control-allow-origin", origin.to_owned())
            }
            _ => response,
        }
    }
}

/// The name in a `Host` value, without its port (`[::1]:7070` is `::1`).
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `{"error": message}`, as every refusal of Weir's API reads.
fn refuse(status: StatusCode, message: String) -> Response {
    tracing::info!(status = status.as_u16(), %message, "request refused at the edge");
    Response::json(status, format!("{{\"error\":{}}}", json_string(&message)))
        .with_header("vary", "Origin")
}

/// `text` as a JSON string literal (the message quotes a header a client chose).
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A handler behind the edge's checks.
#[derive(Debug)]
pub struct Edge<H> {
    inner: H,
    policy: EdgePolicy,
}

impl<H> Edge<H> {
    /// `inner`, served only to requests that pass `policy`.
    pub fn new(inner: H, policy: EdgePolicy) -> Self {
        Edge { inner, policy }
    }
}

impl<H: Handler> Handler for Edge<H> {
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send {
        let refused = self.policy.refusal(&request);
        let origin = request.header("origin").map(str::to_owned);
        async move {
            match refused {
                // Refusals and preflights carry their own headers.
                Some(answer) => answer,
                None => {
                    let response = self.inner.call(request).await;
                    self.policy.expose(origin.as_deref(), response)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_served_by_default_are_addresses_and_localhost() {
        let policy = EdgePolicy::default();
        for host in [
            "127.0.0.1:7070",
            "localhost:7070",
            "[::1]:7070",
            "10.0.0.5",
            "app.localhost",
        ] {
            assert!(policy.host_allowed(host), "{host}");
        }
        for host in [
            "rebind.attacker.example",
            "rebind.attacker.example:7070",
            "localhost.evil",
        ] {
            assert!(!policy.host_allowed(host), "{host}");
        }
        let named = EdgePolicy {
            allowed_hosts: vec!["weir.internal".into()],
            ..EdgePolicy::default()
        };
        assert!(named.host_allowed("WEIR.internal:443"));
        assert!(!named.host_allowed("other.internal"));
    }

    #[test]
    fn refusals_are_json_whatever_the_header_held() {
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
    }

    #[test]
    fn only_the_same_origin_or_a_listed_one_may_write() {
        let policy = EdgePolicy {
            cors_origins: vec!["https://app.example.com".into()],
            ..EdgePolicy::default()
        };
        assert!(policy.origin_allowed("http://127.0.0.1:7070", Some("127.0.0.1:7070")));
        assert!(policy.origin_allowed("https://app.example.com", Some("127.0.0.1:7070")));
        assert!(!policy.origin_allowed("http://evil.example", Some("127.0.0.1:7070")));
        assert!(!policy.origin_allowed("http://127.0.0.1:7071", Some("127.0.0.1:7070")));
        assert!(!policy.origin_allowed("null", Some("127.0.0.1:7070")));
    }
}
