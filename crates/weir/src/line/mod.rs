//! The TCP line protocol (docs/protocol.md): chat rooms and pub/sub over plain text, usable
//! by hand with `nc 127.0.0.1 7071`.
//!
//! One task per connection reads commands, polls the connection's subscriptions (rooms and
//! topics, see `feeds`) and writes replies and events; the hub never waits for a slow
//! client: the connection's cursors fall behind and the hub's slow-subscriber policy
//! applies.

mod command;
mod feeds;
mod reader;
pub(crate) mod session;

pub(crate) use command::{parse as parse_command, Command};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use weir_pubsub::{Hub, Presence};

use crate::auth::Tokens;

/// Limits of the line protocol.
#[derive(Debug, Clone)]
pub struct LineConfig {
    /// Bytes in one line. Past it: `-ERR line too long`, the line is discarded, the
    /// connection goes on. 4 KiB: a long chat message, not a file.
    pub max_line_bytes: usize,
    /// Messages of a room's history sent on join. 20: a screenful.
    pub history: u64,
    /// Chat lines per second a client may send on average, and in a burst (`PUB`, `SUB`
    /// and `UNSUB` are not counted). Past them: `-ERR flood`, the line is not run. 10 per second with bursts of 20: a fast typist
    /// or a paste of a few lines, not a script.
    pub flood_rate: u32,
    /// See `flood_rate`.
    pub flood_burst: u32,
    /// Refused lines in a row after which a flooding client is disconnected.
    pub flood_strikes: u32,
    /// Connections served at once; more wait in the accept backlog.
    pub max_connections: usize,
    /// Time a client may stay silent before it is disconnected. 15 minutes.
    pub idle_timeout: Duration,
    /// Topics and rooms one connection may follow at once (setting
    /// `pubsub.max_subscriptions`). Past it: `-ERR subscription limit`.
    pub max_subscriptions: usize,
    /// Access tokens (setting `auth.tokens`); empty for open access.
    pub tokens: Tokens,
}

impl Default for LineConfig {
    fn default() -> Self {
        Self {
            max_line_bytes: 4096,
            history: 20,
            flood_rate: 10,
            flood_burst: 20,
            flood_strikes: 20,
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(15 * 60),
            max_subscriptions: 128,
            tokens: Tokens::default(),
        }
    }
}

/// Nicknames in use, unique per server (case-insensitive).
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

    pub(crate) fn release(&self, nick: &str, connection: u64) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let key = nick.to_lowercase();
        if taken.get(&key) == Some(&connection) {
            taken.remove(&key);
        }
    }
}

/// What every chat session shares, whatever its transport (the line protocol or a
/// WebSocket): one set of nicknames and rooms for the whole server.
#[derive(Debug)]
pub struct LineContext {
    pub(crate) hub: Hub,
    pub(crate) presence: Presence,
    pub(crate) nicks: Nicknames,
    pub(crate) config: LineConfig,
    pub(crate) shutdown: CancellationToken,
    /// Connection ids, unique across transports (presence counts connections by id).
    next_connection: AtomicU64,
}

impl LineContext {
    /// Shared chat state for the hub.
    pub fn new(hub: Hub, config: LineConfig, shutdown: CancellationToken) -> Self {
        Self {
            hub,
            presence: Presence::new(),
            nicks: Nicknames::default(),
            config,
            shutdown,
            next_connection: AtomicU64::new(1),
        }
    }

    pub(crate) fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }
}

/// Serves the line protocol on `listener` until the context's shutdown; then tells every
/// client and closes.
pub async fn serve_lines(listener: TcpListener, ctx: Arc<LineContext>) -> std::io::Result<()> {
    let shutdown = ctx.shutdown.clone();
    let local = listener.local_addr()?;
    tracing::info!(%local, "weir line protocol on {local} (try: nc {} {})", local.ip(), local.port());
    let slots = Arc::new(Semaphore::new(ctx.config.max_connections));
    let sessions = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
        };
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "line protocol accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let id = ctx.connection_id();
        // Spawned as it is, with no `async` block around it: a wrapper would keep its own
        // copies of the arguments beside the session, for every connection's life.
        sessions.spawn(
            session::run(stream, peer, id, ctx.clone(), slot)
                .instrument(tracing::info_span!("line.conn", %peer, conn = id)),
        );
    }
    sessions.close();
    sessions.wait().await;
    Ok(())
}
