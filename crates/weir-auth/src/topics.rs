//! Who may publish to and read which topics.
//!
//! Client topics are open to the `publish` and `subscribe` scopes. System topics (`$…`) are
//! the server's own: no client publishes to them, and each namespace says who may read it:
//!
//! | namespace | what it carries | read with |
//! |---|---|---|
//! | `$queues.{queue}`, `$jobs.{id}` | job lifecycle events (weir-jobs names them) | `enqueue`, the right to read jobs |
//! | `$chat.{room}` | a chat room's messages, joins and parts | joining the room (`JOIN`), not a subscription |
//!
//! A pattern that starts with a wildcard never matches a system topic (weir-pubsub), so
//! `subscribe` to `>` is every client topic and nothing more.

use weir_pubsub::TopicPattern;

use crate::{Access, Scope};

/// The system namespaces and the scope that reads each; `None`: no direct subscription.
/// The binary's tests (`tests/auth.rs`) check these prefixes against weir-jobs' and
/// weir-chat's own.
pub const SYSTEM_NAMESPACES: &[(&str, Option<Scope>)] = &[
    ("$queues.", Some(Scope::Enqueue)),
    ("$jobs.", Some(Scope::Enqueue)),
    ("$chat.", None),
];

/// Why a client may not publish to or read a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicDenied {
    /// No valid token was presented (401 over HTTP).
    Unauthenticated,
    /// The token lacks this scope (403 over HTTP).
    MissingScope(Scope),
    /// The topic is a system topic this way of access does not reach (403 over HTTP); the
    /// text says why.
    SystemTopic(String),
    /// The token's scope is limited to topics that do not include this one (403).
    OutsideRights(String),
}

impl std::fmt::Display for TopicDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicDenied::Unauthenticated => f.write_str("authenticate first: a token is required"),
            TopicDenied::MissingScope(scope) => write!(f, "this token lacks the {scope} scope"),
            TopicDenied::SystemTopic(why) | TopicDenied::OutsideRights(why) => f.write_str(why),
        }
    }
}

impl Access {
    /// Whether this client may publish to `topic`.
    pub fn may_publish(&self, topic: &str) -> Result<(), TopicDenied> {
        self.require_scope(Scope::Publish)?;
        if topic.starts_with('$') {
            return Err(TopicDenied::SystemTopic(format!(
                "{topic} is a system topic ($…): only the server publishes there"
            )));
        }
        self.reaches(Scope::Publish, topic)
    }

    /// Whether this client may subscribe to `pattern` (a topic or a wildcard pattern).
    pub fn may_subscribe(&self, pattern: &str) -> Result<(), TopicDenied> {
        if !pattern.starts_with('$') {
            self.require_scope(Scope::Subscribe)?;
            return self.reaches(Scope::Subscribe, pattern);
        }
        let namespace = SYSTEM_NAMESPACES
            .iter()
            .find(|(prefix, _)| pattern.starts_with(prefix));
        match namespace {
            Some((_, Some(scope))) => self.require_scope(*scope),
            Some((prefix, None)) => Err(TopicDenied::SystemTopic(format!(
                "{pattern} is a system topic: {prefix}… is read by joining the room"
            ))),
            None => Err(TopicDenied::SystemTopic(format!(
                "{pattern} is a system topic ($…) that clients do not read"
            ))),
        }
    }

    /// Whether this client may join the room whose topic is `room_topic` (`$chat.{room}`).
    pub fn may_join(&self, room_topic: &str) -> Result<(), TopicDenied> {
        self.require_scope(Scope::Subscribe)?;
        self.reaches(Scope::Subscribe, room_topic)
    }

    /// Whether this client may speak in the room whose topic is `room_topic`.
    pub fn may_say(&self, room_topic: &str) -> Result<(), TopicDenied> {
        self.require_scope(Scope::Publish)?;
        self.reaches(Scope::Publish, room_topic)
    }

    /// Whether the topic patterns `scope` is limited to (if any) cover `pattern`. A name
    /// that is not a valid pattern is let through: the hub refuses it with its own error.
    fn reaches(&self, scope: Scope, pattern: &str) -> Result<(), TopicDenied> {
        let Some(rights) = &self.rights else {
            return Ok(());
        };
        let allowed = match scope {
            Scope::Publish => &rights.publish,
            _ => &rights.subscribe,
        };
        let Some(allowed) = allowed else {
            return Ok(());
        };
        let Ok(wanted) = TopicPattern::new(pattern) else {
            return Ok(());
        };
        if allowed.iter().any(|right| right.covers(&wanted)) {
            return Ok(());
        }
        Err(TopicDenied::OutsideRights(format!(
            "this token's {scope} scope does not reach {pattern}"
        )))
    }

    fn require_scope(&self, scope: Scope) -> Result<(), TopicDenied> {
        if self.allows(scope) {
            Ok(())
        } else if self.is_authenticated() {
            Err(TopicDenied::MissingScope(scope))
        } else {
            Err(TopicDenied::Unauthenticated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tokens;

    fn access(scopes: &str) -> Access {
        let tokens = Tokens::parse(&format!("token-0123456789abcdef:{scopes}")).unwrap();
        tokens.access(Some("token-0123456789abcdef"))
    }

    #[test]
    fn nobody_publishes_to_system_topics() {
        for scopes in ["publish", "admin"] {
            assert!(
                access(scopes).may_publish("$queues.email").is_err(),
                "{scopes}"
            );
            assert!(
                access(scopes).may_publish("$chat.lobby").is_err(),
                "{scopes}"
            );
            assert!(access(scopes).may_publish("orders.new").is_ok(), "{scopes}");
        }
        assert_eq!(
            Access::NONE.may_publish("news"),
            Err(TopicDenied::Unauthenticated)
        );
    }

    #[test]
    fn topic_rights_limit_publish_and_subscribe_to_their_patterns() {
        let limited = access("publish:orders.*+subscribe:chat.>|news|$chat.lobby");
        assert!(limited.may_publish("orders.new").is_ok());
        assert!(limited.may_publish("orders.eu.new").is_err());
        assert!(limited.may_publish("news").is_err());
        assert!(limited.may_subscribe("chat.a.b").is_ok());
        assert!(limited.may_subscribe("chat.>").is_ok());
        assert!(limited.may_subscribe(">").is_err(), "wider than the rights");
        assert!(limited.may_subscribe("news").is_ok());
        assert!(limited.may_join("$chat.lobby").is_ok());
        assert!(limited.may_join("$chat.staff").is_err());
        assert!(
            limited.may_say("$chat.lobby").is_err(),
            "publish reaches orders.* only"
        );
    }

    #[test]
    fn job_events_need_the_right_to_read_jobs() {
        assert!(access("subscribe").may_subscribe("$queues.>").is_err());
        assert!(access("subscribe").may_subscribe("$jobs.42").is_err());
        assert!(access("enqueue").may_subscribe("$queues.>").is_ok());
        assert!(
            access("enqueue").may_subscribe("news").is_err(),
            "client topics need subscribe"
        );
        assert!(access("subscribe").may_subscribe(">").is_ok());
        assert!(
            access("admin").may_subscribe("$chat.lobby").is_err(),
            "rooms are joined"
        );
        assert!(access("admin").may_subscribe("$other.x").is_err());
    }
}
