//! The access rules applied to HTTP requests: a bearer token or `?token=` (browsers cannot
//! set headers on `EventSource` or `WebSocket`), and the 401 or 403 a request without the
//! right scope gets.

use weir_http::{Request, Response, StatusCode};

use crate::{Access, Scope, Tokens, TopicDenied};

impl Tokens {
    /// The access of an HTTP request: its bearer token or `?token=`.
    pub fn request_access(&self, req: &Request) -> Access {
        let bearer = req.header("authorization").and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        self.access(bearer.or_else(|| req.query_param("token")))
    }

    /// `Ok` when the request may use `scope`; otherwise the 401 or 403 to send.
    pub fn authorize(&self, req: &Request, scope: Scope) -> Result<(), Box<Response>> {
        let access = self.request_access(req);
        if access.allows(scope) {
            return Ok(());
        }
        Err(Box::new(denial(access, scope)))
    }
}

/// The 401 (no valid token) or 403 (a token without `scope`) for a request with `access`.
pub fn denial(access: Access, scope: Scope) -> Response {
    let (status, message) = if access.is_authenticated() {
        (
            StatusCode::FORBIDDEN,
            format!("this token lacks the {scope} scope"),
        )
    } else {
        (
            StatusCode::UNAUTHORIZED,
            "a valid token is required: send Authorization: Bearer <token> or ?token=<token>"
                .to_string(),
        )
    };
    let body = serde_json::json!({ "error": message }).to_string();
    Response::json(status, body).with_header("www-authenticate", "Bearer realm=\"weir\"")
}

/// The answer to a refused publish or subscription: 401 without a valid token, else 403
/// saying why.
pub fn topic_denial(denied: &TopicDenied) -> Response {
    match denied {
        TopicDenied::Unauthenticated => denial(Access::NONE, Scope::Subscribe),
        TopicDenied::MissingScope(_) | TopicDenied::SystemTopic(_) => {
            let body = serde_json::json!({ "error": denied.to_string() }).to_string();
            Response::json(StatusCode::FORBIDDEN, body)
        }
    }
}
