//! Scopes, and the set of them a client holds.

use std::fmt;

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

/// The scopes a client holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access(pub(crate) u8);

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
