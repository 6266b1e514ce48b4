//! Nicknames: what one may be, and which are taken on this server.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ChatError;

/// The longest nickname, in characters.
pub const MAX_NICK_CHARS: usize = 32;

/// Checks a nickname against the rules every transport applies: 1 to [`MAX_NICK_CHARS`]
/// letters, digits, `_` or `-` (so it is one word in the line protocol, and safe to show).
pub fn check_nickname(nick: &str) -> Result<(), ChatError> {
    let chars = nick.chars().count();
    if chars == 0
        || chars > MAX_NICK_CHARS
        || !nick
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ChatError::BadNickname(format!(
            "nickname {nick:?} must be 1 to {MAX_NICK_CHARS} letters, digits, '_' or '-'"
        )));
    }
    Ok(())
}

/// Nicknames in use, unique per server (case-insensitive), each held by one connection.
#[derive(Debug, Default)]
pub(crate) struct Nicknames {
    taken: Mutex<HashMap<String, u64>>,
}

impl Nicknames {
    /// Claims `nick` for `connection`; false if another connection has it.
    pub(crate) fn claim(&self, nick: &str, connection: u64) -> bool {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let key = nick.to_lowercase();
        match taken.get(&key) {
            Some(&owner) if owner != connection => false,
            _ => {
                taken.insert(key, connection);
                true
            }
        }
    }

    /// Gives `nick` up, if `connection` holds it.
    pub(crate) fn release(&self, nick: &str, connection: u64) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let key = nick.to_lowercase();
        if taken.get(&key) == Some(&connection) {
            taken.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_are_one_safe_word() {
        assert!(check_nickname("ada_lovelace-1").is_ok());
        assert!(check_nickname("Zoë").is_ok());
        for bad in ["", "a!b", "two words", &"x".repeat(MAX_NICK_CHARS + 1)] {
            let error = check_nickname(bad).unwrap_err().to_string();
            assert!(error.contains("letters, digits"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_nickname_is_held_by_one_connection_whatever_its_case() {
        let nicks = Nicknames::default();
        assert!(nicks.claim("Ada", 1));
        assert!(!nicks.claim("ada", 2), "taken, case-insensitively");
        assert!(nicks.claim("ADA", 1), "its holder may claim it again");
        nicks.release("ada", 2);
        assert!(!nicks.claim("ada", 2), "only the holder gives it up");
        nicks.release("ada", 1);
        assert!(nicks.claim("ada", 2));
    }
}
