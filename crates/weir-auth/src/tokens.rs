//! The configured access tokens and what a presented one grants.

use std::fmt;

use crate::{Access, Scope};

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
