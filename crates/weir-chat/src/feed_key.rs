//! What a session follows, as the client named it: a room or a topic. Its events are
//! rendered by it (a room's as chat lines, a topic's as messages).

/// What a feed is, as the client named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FeedKey {
    /// A chat room, by the name the client joined it under (its topic is `$chat.{room}`).
    Room(String),
    /// A topic or pattern.
    Topic(String),
}
