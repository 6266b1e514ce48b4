//! The configured access tokens and what a presented one grants.

use std::fmt;

use std::sync::Arc;

use weir_pubsub::TopicPattern;

use crate::{Access, Scope, SignedTokens, TopicRights};

/// The configured tokens (setting `auth.tokens`), and the key of signed tokens when one is
/// set (`auth.jwt_secret`, `auth.jwt_public_key`). None of either means open access.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, Access)>,
    signed: Option<Arc<SignedTokens>>,
}

impl PartialEq for Tokens {
    fn eq(&self, other: &Tokens) -> bool {
        self.entries == other.entries && self.signed.is_some() == other.signed.is_some()
    }
}

impl Eq for Tokens {}

/// Shortest token accepted: 16 characters of the 66 allowed are about 96 bits.
const MIN_TOKEN_CHARS: usize = 16;

impl Tokens {
    /// What `parse` accepts, for error messages and docs.
    pub const SYNTAX: &'static str = "TOKEN:SCOPES[,TOKEN:SCOPES...] where TOKEN is at least 16 characters of A-Z a-z 0-9 - . _ ~ and SCOPES is publish, subscribe, enqueue, work or admin, joined by +; publish and subscribe may name the topics they reach, publish:PATTERN|PATTERN (e.g. subscribe:chat.>|news)";

    /// Parses `TOKEN:scope+scope,TOKEN:scope:pattern|pattern`; an empty text means no
    /// tokens.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut entries: Vec<(String, Access)> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            // A token has no colon; topic patterns may (`chat:lobby`).
            let (secret, scopes) = entry
                .split_once(':')
                .ok_or_else(|| Self::SYNTAX.to_string())?;
            let well_formed = secret.chars().count() >= MIN_TOKEN_CHARS
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !well_formed {
                return Err(Self::SYNTAX.to_string());
            }
            if entries.iter().any(|(listed, _)| listed == secret) {
                return Err("a token is listed twice; give each token one entry".to_string());
            }
            entries.push((secret.to_string(), parse_scopes(scopes)?));
        }
        Ok(Tokens {
            entries,
            signed: None,
        })
    }

    /// These tokens, and also the signed tokens `signed` verifies.
    pub fn with_signed(mut self, signed: SignedTokens) -> Tokens {
        self.signed = Some(Arc::new(signed));
        self
    }

    /// True when no token is configured: everyone has every scope.
    pub fn is_open(&self) -> bool {
        self.entries.is_empty() && self.signed.is_none()
    }

    /// What `presented` grants: everything on an open server, nothing for an unknown or
    /// expired token.
    pub fn access(&self, presented: Option<&str>) -> Access {
        self.check(presented).unwrap_or(Access::NONE)
    }

    /// What `presented` grants, or why it grants nothing (said to the client).
    pub fn check(&self, presented: Option<&str>) -> Result<Access, String> {
        if self.is_open() {
            return Ok(Access::ALL);
        }
        let Some(presented) = presented else {
            return Err("a token is required".to_string());
        };
        // Compare against every entry in time independent of where they differ, so the
        // response time does not reveal how much of a guess was right.
        let mut granted = None;
        for (secret, access) in &self.entries {
            if constant_time_eq(secret.as_bytes(), presented.as_bytes()) {
                granted = Some(access.clone());
            }
        }
        if let Some(access) = granted {
            return Ok(access);
        }
        match &self.signed {
            Some(signed) if presented.matches('.').count() == 2 => signed.verify(presented),
            _ => Err("invalid token".to_string()),
        }
    }
}

/// `publish+subscribe:chat.>|news+enqueue`: the scopes of a token's entry, topic scopes
/// with the patterns they reach.
fn parse_scopes(text: &str) -> Result<Access, String> {
    let mut scopes = Vec::new();
    let mut rights = TopicRights::default();
    let mut limited = false;
    for item in text.split('+') {
        let (name, patterns) = match item.trim().split_once(':') {
            Some((name, patterns)) => (name, Some(patterns)),
            None => (item.trim(), None),
        };
        let scope = Scope::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| Tokens::SYNTAX.to_string())?;
        scopes.push(scope);
        let Some(patterns) = patterns else { continue };
        let patterns = patterns
            .split('|')
            .map(|p| TopicPattern::new(p.trim()).map_err(|e| format!("{e} (in a token's scopes)")))
            .collect::<Result<Vec<_>, _>>()?;
        limited = true;
        match scope {
            Scope::Publish => rights.publish = Some(patterns),
            Scope::Subscribe => rights.subscribe = Some(patterns),
            other => {
                return Err(format!(
                    "the {other} scope takes no topics; only publish and subscribe do"
                ))
            }
        }
    }
    Ok(Access::new(&scopes, limited.then_some(rights), None))
}

/// Tokens are secrets: debug output shows their scopes only.
impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field(
                "entries",
                &self
                    .entries
                    .iter()
                    .map(|(_, access)| access)
                    .collect::<Vec<_>>(),
            )
            .field("signed", &self.signed.is_some())
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
