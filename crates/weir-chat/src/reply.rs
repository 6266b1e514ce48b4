//! What a session answers, as values: each transport renders them in its own words (the
//! line protocol's `+OK`/`-ERR` lines, the WebSocket's JSON frames).

use std::fmt;

use weir_pubsub::{PublishError, SubscribeError};

/// The answer to a command that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The list of commands.
    Help,
    /// The client's nickname is now this.
    Nick(String),
    /// Joined `room`, where `here` users now are.
    Joined {
        /// The room joined, as the client named it.
        room: String,
        /// Users in the room, this one included.
        here: usize,
    },
    /// The client was already in `room`.
    AlreadyIn(String),
    /// Left the room.
    Left(String),
    /// Who is in the room.
    Members {
        /// The room asked about, as the client named it.
        room: String,
        /// The nicknames present, sorted, each once however many connections it has; empty
        /// for a room nobody is in.
        nicks: Vec<String>,
    },
    /// Now following the topic or pattern.
    Subscribed(String),
    /// No longer following the topic or pattern.
    Unsubscribed(String),
    /// Published at this offset and epoch.
    Published {
        /// The topic published to, as the client named it.
        topic: String,
        /// The message's offset.
        offset: u64,
        /// The topic's epoch.
        epoch: u64,
    },
    /// The token was accepted.
    Authenticated,
    /// No token is needed: the server is open.
    Open,
    /// Said in a room: the answer is the chat event itself, which comes back like
    /// everyone else's.
    Said,
    /// The client asked to leave (`QUIT`): the transport says `bye`, stops reading and
    /// ends the session with [`Session::close`](crate::Session::close).
    Quit,
}

/// Why a command was refused. The text (`Display`) is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatError {
    /// The client lacks the scope the command needs (the text says which, or that it must
    /// authenticate first).
    Denied(String),
    /// The topic is a system topic the client may not publish to or subscribe to.
    SystemTopic(String),
    /// `NICK` before a valid token on a server with tokens.
    AuthenticateFirst,
    /// The token presented grants nothing; the text says why (invalid, expired…).
    InvalidToken(String),
    /// A nickname that breaks the rules.
    BadNickname(String),
    /// Another connection has this nickname.
    NicknameTaken(String),
    /// The cluster's directory of nicknames and rooms could not be asked.
    Directory(String),
    /// A nickname change while in rooms.
    PartRoomsFirst,
    /// A room command before `NICK`.
    NoNickname,
    /// A room name that is not one.
    BadRoom(String),
    /// `PART` of a room the client is not in.
    NotInRoom(String),
    /// `SAY` in a room the client is not in.
    SayOutsideRoom(String),
    /// The connection follows as many topics and rooms as it may.
    SubscriptionLimit(usize),
    /// Subscribed to this topic or pattern already.
    AlreadySubscribed(String),
    /// Not subscribed to this topic or pattern.
    NotSubscribed(String),
    /// The hub refused the subscription.
    Subscribe(SubscribeError),
    /// The hub refused the publish.
    Publish(PublishError),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::Denied(why) => write!(f, "{why}; AUTH <token>"),
            ChatError::SystemTopic(why) => f.write_str(why),
            ChatError::AuthenticateFirst => {
                f.write_str("authenticate first: a token is required; AUTH <token>")
            }
            ChatError::InvalidToken(why) => f.write_str(why),
            ChatError::BadNickname(why) => f.write_str(why),
            ChatError::NicknameTaken(nick) => write!(f, "nickname {nick} is taken"),
            ChatError::Directory(why) => {
                write!(f, "cannot reach the cluster's directory of nicknames and rooms: {why}")
            }
            ChatError::PartRoomsFirst => {
                f.write_str("part your rooms before changing your nickname")
            }
            ChatError::NoNickname => f.write_str("set a nickname first: NICK <name>"),
            ChatError::BadRoom(room) => {
                write!(f, "room {room:?}: use letters, digits, '_', '-' or ':'")
            }
            ChatError::NotInRoom(room) => write!(f, "you are not in {room}"),
            ChatError::SayOutsideRoom(room) => {
                write!(f, "join {room} before saying something there")
            }
            ChatError::SubscriptionLimit(limit) => write!(
                f,
                "subscription limit: a connection may follow {limit} topics and rooms (setting pubsub.max_subscriptions)"
            ),
            ChatError::AlreadySubscribed(pattern) => write!(f, "already subscribed to {pattern}"),
            ChatError::NotSubscribed(pattern) => write!(f, "not subscribed to {pattern}"),
            ChatError::Subscribe(error) => write!(f, "{error}"),
            ChatError::Publish(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ChatError {}

/// The commands, as `HELP` lists them.
pub(crate) const HELP: &str = "commands: NICK name | JOIN room | PART room | SAY room text | WHO room | SUB topic [earliest|OFFSET] | UNSUB topic | PUB topic text | AUTH token | QUIT";

impl fmt::Display for Reply {
    /// The reply as a sentence, without the line protocol's `+OK` (empty for
    /// [`Reply::Said`] and [`Reply::Quit`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Help => f.write_str(HELP),
            Reply::Nick(nick) => write!(f, "you are {nick}"),
            Reply::Joined { room, here } => write!(f, "joined {room} ({here} here)"),
            Reply::AlreadyIn(room) => write!(f, "already in {room}"),
            Reply::Left(room) => write!(f, "left {room}"),
            Reply::Members { room, nicks } if nicks.is_empty() => write!(f, "{room}: nobody"),
            Reply::Members { room, nicks } => write!(f, "{room}: {}", nicks.join(" ")),
            Reply::Subscribed(pattern) => write!(f, "subscribed to {pattern}"),
            Reply::Unsubscribed(pattern) => write!(f, "unsubscribed from {pattern}"),
            Reply::Published { topic, offset, .. } => write!(f, "{topic} offset {offset}"),
            Reply::Authenticated => f.write_str("authenticated"),
            Reply::Open => f.write_str("this server is open; no token is needed"),
            Reply::Said => Ok(()),
            Reply::Quit => f.write_str("bye"),
        }
    }
}
