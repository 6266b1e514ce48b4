//! Scopes, and the set of them a client holds.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use weir_pubsub::TopicPattern;

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
    pub(crate) const ALL: [Scope; 5] = [
        Scope::Publish,
        Scope::Subscribe,
        Scope::Enqueue,
        Scope::Work,
        Scope::Admin,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Scope::Publish => "publish",
            Scope::Subscribe => "subscribe",
            Scope::Enqueue => "enqueue",
            Scope::Work => "work",
            Scope::Admin => "admin",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a client holds: its scopes, the topics its topic scopes reach, and until when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    scopes: u8,
    /// The topics `publish` and `subscribe` are limited to; `None`: every client topic.
    pub(crate) rights: Option<Arc<TopicRights>>,
    /// When a signed token stops being valid; `None` for a listed token (until restart).
    expires_at: Option<SystemTime>,
}

/// Topic patterns the topic scopes are limited to, from a token's entry or claims. A scope
/// without a list reaches every client topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicRights {
    /// Where `publish` reaches (a room's topic, `$chat.{room}`, for `SAY`).
    pub publish: Option<Vec<TopicPattern>>,
    /// What `subscribe` reaches (a room's topic, `$chat.{room}`, for `JOIN`).
    pub subscribe: Option<Vec<TopicPattern>>,
}

impl Access {
    /// No scope at all: a client that has not authenticated.
    pub const NONE: Access = Access {
        scopes: 0,
        rights: None,
        expires_at: None,
    };
    /// Every scope: a client of an open server, or an admin token.
    pub const ALL: Access = Access {
        scopes: (1 << Scope::ALL.len()) - 1,
        rights: None,
        expires_at: None,
    };

    /// `scopes`, limited to `rights`, until `expires_at`.
    pub fn new(
        scopes: &[Scope],
        rights: Option<TopicRights>,
        expires_at: Option<SystemTime>,
    ) -> Access {
        Access {
            scopes: scopes.iter().fold(0, |bits, scope| bits | scope.bit()),
            rights: rights.map(Arc::new),
            expires_at,
        }
    }

    /// Whether `scope` is held; admin holds every scope.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// Whether any scope is held (the client authenticated).
    pub fn is_authenticated(&self) -> bool {
        self.scopes != 0
    }

    /// When this access ends: a signed token's expiry. Transports end a session then.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// `Ok` when `scope` is held, else the message a client is told.
    pub fn require(&self, scope: Scope) -> Result<(), String> {
        if self.allows(scope) {
            Ok(())
        } else if self.is_authenticated() {
            Err(format!("this token lacks the {scope} scope"))
        } else {
            Err("authenticate first: a token is required".to_string())
        }
    }
}
