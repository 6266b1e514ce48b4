//! What a client asks of its session, whatever the transport said it in.

use bytes::Bytes;
use weir_auth::Scope;
use weir_pubsub::StartFrom;

/// A client command, parsed and checked for form by its transport (a line of the line
/// protocol, a JSON frame of the WebSocket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Take a nickname (checked with [`crate::check_nickname`]).
    Nick(String),
    /// Join a chat room.
    Join(String),
    /// Leave a chat room.
    Part(String),
    /// Say something in a room the client is in.
    Say {
        /// The room to speak in; the client must have joined it.
        room: String,
        /// What is said.
        text: String,
    },
    /// Ask who is in a room.
    Who(String),
    /// Follow a topic or pattern.
    Subscribe {
        /// The topic or wildcard pattern.
        pattern: String,
        /// Where the subscription starts.
        from: StartFrom,
    },
    /// Stop following a topic or pattern.
    Unsubscribe(String),
    /// Publish to a topic.
    Publish {
        /// The topic to publish to (a name, not a pattern), created on first use.
        topic: String,
        /// The message's bytes, published as given; the hub refuses more than its
        /// `max_payload`.
        payload: Bytes,
    },
    /// Present an access token.
    Auth(String),
    /// Ask for the list of commands.
    Help,
    /// End the session.
    Quit,
}

impl Command {
    /// The scope the command needs; `None` for those anyone may send, and for publishing
    /// and subscribing, whose rights depend on the topic (see
    /// [`Access::may_publish`](weir_auth::Access::may_publish)).
    pub fn scope(&self) -> Option<Scope> {
        match self {
            Command::Join(_) | Command::Who(_) => Some(Scope::Subscribe),
            Command::Say { .. } => Some(Scope::Publish),
            Command::Subscribe { .. }
            | Command::Publish { .. }
            | Command::Nick(_)
            | Command::Part(_)
            | Command::Unsubscribe(_)
            | Command::Auth(_)
            | Command::Help
            | Command::Quit => None,
        }
    }

    /// Pub/sub commands are machine traffic, paced by the hub's own limits; a transport's
    /// flood limit is for chat and for what is not a command.
    pub fn is_machine_traffic(&self) -> bool {
        matches!(
            self,
            Command::Publish { .. } | Command::Subscribe { .. } | Command::Unsubscribe(_)
        )
    }
}
