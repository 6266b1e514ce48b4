//! A client's session with the hub, whatever its transport, and the transports that are
//! protocols of their own.
//!
//! - [`Session`]: one client's chat rooms (nicknames, presence, history on join) and
//!   pub/sub subscriptions, driven by typed [`Command`]s that answer with a [`Reply`] or a
//!   [`ChatError`]. Its events come back already encoded for its transport, polled by the
//!   connection's own task (no task or channel per subscription).
//! - [`ChatContext`]: what all sessions share, so the line protocol and the WebSocket meet
//!   in the same rooms under the same nicknames.
//! - [`render`]: every wire rendering of hub events and replies (line, JSON, SSE), each
//!   made once per message and shared by its subscribers.
//! - [`json`]: WebSocket frames as commands; the WebSocket's framing itself is the HTTP
//!   API's.
//! - [`line`]: the TCP line protocol: framing, parsing, flood limits, deadlines.

mod command;
mod context;
mod directory;
mod feed_key;
mod feeds;
pub mod json;
pub mod line;
mod nicknames;
#[cfg(feature = "postgres")]
pub mod postgres_directory;
pub mod render;
mod reply;
mod session;

pub use command::Command;
pub use context::{ChatConfig, ChatContext};
pub use directory::{Directory, DirectoryFuture};
pub use nicknames::{check_nickname, MAX_NICK_CHARS};
pub use reply::{ChatError, Reply};
pub use session::{until_expired, Session, ROOM_TOPIC_PREFIX};

/// Events written at most per write by a transport: many per system call under load,
/// bounded so that commands are still read between batches.
pub const WRITE_BATCH: usize = 256;
