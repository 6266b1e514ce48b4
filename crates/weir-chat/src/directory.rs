//! Who holds which nickname and who is in which room across a cluster: without one, a
//! node's own sessions are all there is (the default); with several nodes on one
//! PostgreSQL, a [`Directory`] makes nicknames unique and `WHO` complete over every node.

use std::future::Future;
use std::pin::Pin;

/// What a directory's methods return: a future the session awaits.
pub type DirectoryFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The cluster's view of nicknames and rooms, beside each node's own.
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// Claims `nick` for this node's `connection`: `Ok(false)` when a connection of a live
    /// node holds it (nicknames compare case-insensitively).
    fn claim<'a>(
        &'a self,
        nick: &'a str,
        connection: u64,
    ) -> DirectoryFuture<'a, Result<bool, String>>;

    /// Gives `nick` up, if this node's `connection` holds it.
    fn release<'a>(&'a self, nick: &'a str, connection: u64) -> DirectoryFuture<'a, ()>;

    /// Says that `nick`, on this node's `connection`, is in `room`.
    fn joined<'a>(
        &'a self,
        room: &'a str,
        nick: &'a str,
        connection: u64,
    ) -> DirectoryFuture<'a, ()>;

    /// Says that this node's `connection` left `room`.
    fn parted<'a>(&'a self, room: &'a str, connection: u64) -> DirectoryFuture<'a, ()>;

    /// Who is in `room` on every live node, sorted, each nickname once.
    fn members<'a>(&'a self, room: &'a str) -> DirectoryFuture<'a, Result<Vec<String>, String>>;
}
