//! What every session shares, whatever its transport: one set of nicknames and rooms for
//! the whole server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use weir_auth::Tokens;
use weir_pubsub::{Hub, Presence};

use crate::directory::Directory;
use crate::nicknames::Nicknames;

/// Settings of every session.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Messages of a room's history sent on join. 20: a screenful.
    pub history: u64,
    /// Topics and rooms one connection may follow at once (setting
    /// `pubsub.max_subscriptions`). Past it: [`ChatError::SubscriptionLimit`](crate::ChatError::SubscriptionLimit).
    pub max_subscriptions: usize,
    /// Access tokens (setting `auth.tokens`); empty for open access.
    pub tokens: Tokens,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            history: 20,
            max_subscriptions: 128,
            tokens: Tokens::default(),
        }
    }
}

/// Shared state of every session: the hub, who is in which room, the nicknames taken.
#[derive(Debug)]
pub struct ChatContext {
    pub(crate) hub: Hub,
    pub(crate) presence: Presence,
    pub(crate) nicks: Nicknames,
    pub(crate) config: ChatConfig,
    pub(crate) shutdown: CancellationToken,
    /// The cluster's nicknames and rooms, when there is a cluster.
    pub(crate) directory: Option<Arc<dyn Directory>>,
    /// Connection ids, unique across transports (presence counts connections by id).
    next_connection: AtomicU64,
}

impl ChatContext {
    /// Shared chat state for `hub`; `shutdown` ends every session.
    pub fn new(hub: Hub, config: ChatConfig, shutdown: CancellationToken) -> Self {
        Self {
            hub,
            presence: Presence::new(),
            nicks: Nicknames::default(),
            config,
            shutdown,
            directory: None,
            next_connection: AtomicU64::new(1),
        }
    }

    /// With the cluster's `directory`: nicknames unique and `WHO` complete over every
    /// node, not only this one.
    #[must_use]
    pub fn with_directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// An id for a new connection, to pass to [`Session::new`](crate::Session::new): unique
    /// across transports for the server's life, starting at 1.
    pub fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// The access tokens sessions check.
    pub fn tokens(&self) -> &Tokens {
        &self.config.tokens
    }

    /// Cancelled when the server stops: transports end their sessions then.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
}
