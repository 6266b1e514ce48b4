//! The access rules applied to HTTP requests: a bearer token or `?token=` (browsers cannot
//! set headers on `EventSource` or `WebSocket`), and the 401 or 403 a request without the
//! right scope gets.

use weir_http::{Request, Response, StatusCode};

use crate::{Access, Scope, Tokens, TopicDenied};

impl Tokens {
    /// The access of an HTTP request: its bearer token or `?token=`.
    pub fn request_access(&self, req: &Request) -> Access {
        self.request_check(req).unwrap_or(Access::NONE)
    }

    /// The access of an HTTP request, or why its token grants nothing.
    pub fn request_check(&self, req: &Request) -> Result<Access, String> {
        let bearer = req.header("authorization").and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        self.check(bearer.or_else(|| req.query_param("token")))
    }

    /// `Ok` when the request may use `scope`; otherwise the 401 or 403 to send.
    pub fn authorize(&self, req: &Request, scope: Scope) -> Result<(), Box<Response>> {
        match self.request_check(req) {
            Ok(access) if access.allows(scope) => Ok(()),
            Ok(access) => Err(Box::new(denial(&access, scope))),
            Err(why) => Err(Box::new(unauthenticated(&why))),
        }
    }
}

/// The 401 (no valid token) or 403 (a token without `scope`) for a request with `access`.
pub fn denial(access: &Access, scope: Scope) -> Response {
    if !access.is_authenticated() {
        return unauthenticated("a token is required");
    }
    let message = format!("this token lacks the {scope} scope");
    let body = serde_json::json!({ "error": message }).to_string();
    Response::json(StatusCode::FORBIDDEN, body)
}

/// A 401 saying why the request's token grants nothing.
pub fn unauthenticated(why: &str) -> Response {
    let message = format!(
        "a valid token is required ({why}): send Authorization: Bearer <token> or ?token=<token>"
    );
    let body = serde_json::json!({ "error": message }).to_string();
    Response::json(StatusCode::UNAUTHORIZED, body)
        .with_header("www-authenticate", "Bearer realm=\"weir\"")
}

/// The answer to a refused publish or subscription: 401 without a valid token, else 403
/// saying why.
pub fn topic_denial(denied: &TopicDenied) -> Response {
    match denied {
        TopicDenied::Unauthenticated => unauthenticated("a token is required"),
        TopicDenied::MissingScope(_)
        | TopicDenied::SystemTopic(_)
        | TopicDenied::OutsideRights(_) => {
            let body = serde_json::json!({ "error": denied.to_string() }).to_string();
            Response::json(StatusCode::FORBIDDEN, body)
        }
    }
}
