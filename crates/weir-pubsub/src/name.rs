//! Topic names and subscription patterns.
//!
//! A topic name is 1 to 200 bytes of dot-separated segments, each made of ASCII letters,
//! digits, `_`, `-` or `:` (`orders.eu.created`, `chat:lobby`). A pattern may also use `*` for
//! exactly one segment and `>` for all the remaining ones (last segment only), as NATS does.
//!
//! **System topics** start with `$` (`$jobs.42`, `$chat.lobby`): the server's own, which
//! clients read only with the right to and never publish to (see weir-auth). As in MQTT, a
//! pattern that starts with a wildcard (`>`, `*.created`) does not match them: a client
//! that follows everything follows every client topic, not the server's.

use std::fmt;
use std::sync::Arc;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 200;

/// Why a topic name or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, or longer than [`MAX_TOPIC_LEN`].
    #[error("topic name must be 1 to {MAX_TOPIC_LEN} bytes, got {0}")]
    Length(usize),
    /// An empty segment (`a..b`, a leading or trailing dot).
    #[error("topic {0:?} has an empty segment; segments are separated by single dots")]
    EmptySegment(String),
    /// A character outside the allowed set.
    #[error("topic {name:?} contains {found:?}; allowed are ASCII letters, digits, '_', '-', ':' and '.' between segments")]
    Character {
        /// The name as given.
        name: String,
        /// The first bad character.
        found: char,
    },
    /// A wildcard in a topic name (publishing to `orders.*`), or a misplaced `>`.
    #[error(
        "{0:?}: '*' stands for one whole segment and '>' for the last ones, in subscriptions only"
    )]
    Wildcard(String),
}

/// A validated topic name. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<TopicName, NameError> {
        check(name, false)?;
        Ok(TopicName(name.into()))
    }

    /// The name as given to [`TopicName::new`], already checked.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the server's own topics (`$…`).
    pub fn is_system(&self) -> bool {
        self.0.starts_with(SYSTEM_MARK)
    }
}

/// The first character of a system topic's name.
pub const SYSTEM_MARK: char = '$';

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subscription pattern: a topic name, or one with `*` and `>` wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPattern {
    text: Arc<str>,
    wildcard: bool,
}

impl TopicPattern {
    /// Validates `pattern`.
    pub fn new(pattern: &str) -> Result<TopicPattern, NameError> {
        let wildcard = check(pattern, true)?;
        Ok(TopicPattern {
            text: pattern.into(),
            wildcard,
        })
    }

    /// Whether the pattern has a wildcard (else it names one topic).
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern names system topics (`$…`) only.
    pub fn is_system(&self) -> bool {
        self.text.starts_with(SYSTEM_MARK)
    }

    /// Whether `topic` matches. A pattern whose first segment is a wildcard matches no
    /// system topic.
    pub fn matches(&self, topic: &TopicName) -> bool {
        if !self.wildcard {
            return *self.text == *topic.0;
        }
        if topic.is_system() && !self.is_system() {
            return false;
        }
        let mut topic_segments = topic.as_str().split('.');
        for segment in self.text.split('.') {
            match segment {
                ">" => return topic_segments.next().is_some(),
                "*" => {
                    if topic_segments.next().is_none() {
                        return false;
                    }
                }
                literal => {
                    if topic_segments.next() != Some(literal) {
                        return false;
                    }
                }
            }
        }
        topic_segments.next().is_none()
    }
}

impl TopicPattern {
    /// Whether every topic `other` matches is one this pattern matches too (a right on
    /// `orders.>` covers a subscription to `orders.eu.*`, not one to `orders`).
    pub fn covers(&self, other: &TopicPattern) -> bool {
        if self.is_system() != other.is_system() {
            return false;
        }
        let mut mine = self.text.split('.');
        let mut theirs = other.text.split('.');
        loop {
            match (mine.next(), theirs.next()) {
                (Some(">"), Some(_)) => return true,
                (Some(_), Some(">")) => return false,
                (Some("*"), Some(_)) => {}
                (Some(_), Some("*")) => return false,
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Checks a name or pattern; returns whether it used a wildcard.
fn check(name: &str, allow_wildcards: bool) -> Result<bool, NameError> {
    if name.is_empty() || name.len() > MAX_TOPIC_LEN {
        return Err(NameError::Length(name.len()));
    }
    let segments: Vec<&str> = name.split('.').collect();
    let mut wildcard = false;
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            return Err(NameError::EmptySegment(name.to_string()));
        }
        if *segment == "*" || *segment == ">" {
            if !allow_wildcards || (*segment == ">" && i + 1 != segments.len()) {
                return Err(NameError::Wildcard(name.to_string()));
            }
            wildcard = true;
            continue;
        }
        // `$` opens a system topic's first segment, and goes nowhere else.
        let segment = match segment.strip_prefix(SYSTEM_MARK) {
            Some(rest) if i == 0 && !rest.is_empty() => rest,
            _ => segment,
        };
        if let Some(found) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':')))
        {
            if matches!(found, '*' | '>') {
                return Err(NameError::Wildcard(name.to_string()));
            }
            return Err(NameError::Character {
                name: name.to_string(),
                found,
            });
        }
    }
    Ok(wildcard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_topics_start_with_a_dollar_and_leading_wildcards_skip_them() {
        let jobs = TopicName::new("$jobs.42").unwrap();
        assert!(jobs.is_system());
        assert!(!TopicName::new("jobs.42").unwrap().is_system());
        for bad in ["$", "$.a", "a.$b", "$$jobs", "a$"] {
            assert!(TopicName::new(bad).is_err(), "{bad}");
        }
        let everything = TopicPattern::new(">").unwrap();
        assert!(
            !everything.matches(&jobs),
            "> is every client topic, not the server's"
        );
        assert!(!TopicPattern::new("*.42").unwrap().matches(&jobs));
        assert!(TopicPattern::new("$jobs.>").unwrap().matches(&jobs));
        assert!(TopicPattern::new("$jobs.*").unwrap().matches(&jobs));
        assert!(TopicPattern::new("$jobs.42").unwrap().matches(&jobs));
        assert!(everything.matches(&TopicName::new("jobs.42").unwrap()));
    }

    #[test]
    fn a_pattern_covers_what_it_matches_and_no_more() {
        let covers = |a: &str, b: &str| {
            TopicPattern::new(a)
                .unwrap()
                .covers(&TopicPattern::new(b).unwrap())
        };
        assert!(covers("orders.>", "orders.eu.*"));
        assert!(covers("orders.>", "orders.eu"));
        assert!(covers("orders.*", "orders.eu"));
        assert!(covers("orders.*", "orders.*"));
        assert!(covers("*.eu", "orders.eu"));
        assert!(covers(">", "a.b.c"));
        assert!(!covers("orders.>", "orders"));
        assert!(!covers("orders.*", "orders.>"));
        assert!(!covers("orders.*", "orders.eu.x"));
        assert!(!covers("orders.eu", "orders.*"));
        assert!(
            !covers(">", "$chat.lobby"),
            "a leading wildcard never reaches system topics"
        );
        assert!(covers("$chat.>", "$chat.lobby"));
    }

    #[test]
    fn validates_names() {
        assert!(TopicName::new("orders.eu.created").is_ok());
        assert!(TopicName::new("chat:lobby").is_ok());
        assert_eq!(TopicName::new(""), Err(NameError::Length(0)));
        assert!(matches!(
            TopicName::new("a..b"),
            Err(NameError::EmptySegment(_))
        ));
        assert!(matches!(
            TopicName::new(".a"),
            Err(NameError::EmptySegment(_))
        ));
        assert!(matches!(
            TopicName::new("a b"),
            Err(NameError::Character { found: ' ', .. })
        ));
        assert!(matches!(
            TopicName::new("orders.*"),
            Err(NameError::Wildcard(_))
        ));
        assert!(matches!(
            TopicName::new(&"x".repeat(201)),
            Err(NameError::Length(201))
        ));
        assert!(matches!(
            TopicPattern::new("a.>.b"),
            Err(NameError::Wildcard(_))
        ));
        assert!(matches!(
            TopicPattern::new("a.b*"),
            Err(NameError::Wildcard(_))
        ));
    }

    #[test]
    fn wildcards_match_segments() {
        let topic = |s: &str| TopicName::new(s).unwrap();
        let one = TopicPattern::new("orders.*").unwrap();
        assert!(one.matches(&topic("orders.eu")));
        assert!(!one.matches(&topic("orders.eu.created")));
        assert!(!one.matches(&topic("orders")));
        let rest = TopicPattern::new("orders.>").unwrap();
        assert!(rest.matches(&topic("orders.eu")));
        assert!(rest.matches(&topic("orders.eu.created")));
        assert!(!rest.matches(&topic("orders")));
        let middle = TopicPattern::new("*.eu.*").unwrap();
        assert!(middle.matches(&topic("orders.eu.created")));
        assert!(!middle.matches(&topic("orders.us.created")));
        let exact = TopicPattern::new("orders.eu").unwrap();
        assert!(!exact.is_wildcard());
        assert!(exact.matches(&topic("orders.eu")));
    }
}
