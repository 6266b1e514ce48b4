//! Access tokens with scopes.
//!
//! With no token configured Weir is open, and the configuration check keeps it on loopback
//! (see `config`). Once any token is set, every request must carry a valid one: HTTP in an
//! `Authorization: Bearer …` header or a `?token=` query parameter (browsers cannot set
//! headers on `EventSource` or `WebSocket`), the line protocol with `AUTH <token>`.
//! A request without a valid token gets 401 and changes nothing; a valid token that lacks
//! the scope gets 403.

use std::fmt;

use weir_http::{Request, Response, StatusCode};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Publish to topics and speak in chat rooms.
    Publish,
    /// Subscribe to topics, join chat rooms and see who is there.
    Subscribe,
    /// Enqueue jobs, read them, cancel and retry them.
    Enqueue,
    /// Lease and run jobs: the worker protocol.
    Work,
    /// Everything, and the operator's views (metrics).
    Admin,
}

impl Scope {
    const ALL: [Scope; 5] = [
        Scope::Publish,
        Scope::Subscribe,
        Scope::Enqueue,
        Scope::Work,
        Scope::Admin,
    ];

    fn name(self) -> &'static str {
        match self {
            Scope::Publish => "publish",
            Scope::Subscribe => "subscribe",
            Scope::Enqueue => "enqueue",
            Scope::Work => "work",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The scopes a client holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access(u8);

impl Access {
    /// No scope at all: a client that has not authenticated.
    pub const NONE: Access = Access(0);
    /// Every scope: a client of an open server, or an admin token.
    pub const ALL: Access = Access((1 << Scope::ALL.len()) - 1);

    /// Whether `scope` is held; admin holds every scope.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// Whether any scope is held (the client authenticated).
    pub fn is_authenticated(self) -> bool {
        self.0 != 0
    }

    /// `Ok` when `scope` is held, else the message a client is told.
    pub fn require(self, scope: Scope) -> Result<(), String> {
        if self.allows(scope) {
            Ok(())
        } else if self.is_authenticated() {
            Err(format!("this token lacks the {scope} scope"))
        } else {
            Err("authenticate first: a token is required".to_string())
        }
    }
}

/// The configured tokens (setting `auth.tokens`). Empty means open access.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    entries: Vec<(String, Access)>,
}

/// Shortest token accepted: 16 characters of the 66 allowed are about 96 bits.
const MIN_TOKEN_CHARS: usize = 16;

impl Tokens {
    /// What `parse` accepts, for error messages and docs.
    pub const SYNTAX: &'static str = "TOKEN:SCOPES[,TOKEN:SCOPES...] where TOKEN is at least 16 characters of A-Z a-z 0-9 - . _ ~ and SCOPES is publish, subscribe, enqueue, work or admin, joined by +";

    /// Parses `TOKEN:scope+scope,TOKEN:scope`; an empty text means no tokens.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut entries = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (secret, scopes) = entry
                .rsplit_once(':')
                .ok_or_else(|| Self::SYNTAX.to_string())?;
            let well_formed = secret.chars().count() >= MIN_TOKEN_CHARS
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !well_formed {
                return Err(Self::SYNTAX.to_string());
            }
            let mut access = Access::NONE;
            for name in scopes.split('+') {
                let scope = Scope::ALL
                    .into_iter()
                    .find(|s| s.name() == name.trim())
                    .ok_or_else(|| Self::SYNTAX.to_string())?;
                access.0 |= scope.bit();
            }
            entries.push((secret.to_string(), access));
        }
        Ok(Tokens { entries })
    }

    /// True when no token is configured: everyone has every scope.
    pub fn is_open(&self) -> bool {
        self.entries.is_empty()
    }

    /// What `presented` grants: everything on an open server, nothing for an unknown token.
    pub fn access(&self, presented: Option<&str>) -> Access {
        if self.is_open() {
            return Access::ALL;
        }
        let Some(presented) = presented else {
            return Access::NONE;
        };
        // Compare against every entry in time independent of where they differ, so the
        // response time does not reveal how much of a guess was right.
        let mut granted = Access::NONE;
        for (secret, access) in &self.entries {
            if constant_time_eq(secret.as_bytes(), presented.as_bytes()) {
                granted.0 |= access.0;
            }
        }
        granted
    }

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

/// Tokens are secrets: debug output shows their scopes only.
impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(_, access)| access))
            .finish()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLISHER: &str = "pub-token-0123456789";
    const ADMIN: &str = "admin-token-0123456789";

    fn tokens() -> Tokens {
        Tokens::parse(&format!("{PUBLISHER}:publish+subscribe, {ADMIN}:admin")).unwrap()
    }

    #[test]
    fn scopes_are_granted_per_token_and_admin_holds_all() {
        let tokens = tokens();
        let publisher = tokens.access(Some(PUBLISHER));
        assert!(publisher.allows(Scope::Publish) && publisher.allows(Scope::Subscribe));
        assert!(!publisher.allows(Scope::Admin) && !publisher.allows(Scope::Enqueue));
        let admin = tokens.access(Some(ADMIN));
        assert!(Scope::ALL.into_iter().all(|s| admin.allows(s)));
        assert_eq!(tokens.access(Some("pub-token-012345678X")), Access::NONE);
        assert_eq!(tokens.access(None), Access::NONE);
    }

    #[test]
    fn no_tokens_means_open() {
        let open = Tokens::parse("  ").unwrap();
        assert!(open.is_open());
        assert_eq!(open.access(None), Access::ALL);
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            "short:admin",
            "no-scope-at-all-0123456789",
            "spaces in the token 0123:admin",
            "good-length-token-0123:root",
            "good-length-token-0123:",
        ] {
            assert_eq!(Tokens::parse(bad), Err(Tokens::SYNTAX.to_string()), "{bad}");
        }
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        assert!(!format!("{:?}", tokens()).contains("token"));
    }

    #[test]
    fn messages_say_what_is_missing() {
        assert_eq!(
            tokens().access(Some(PUBLISHER)).require(Scope::Admin),
            Err("this token lacks the admin scope".to_string())
        );
        assert!(Access::NONE
            .require(Scope::Subscribe)
            .unwrap_err()
            .starts_with("authenticate first"));
    }
}
