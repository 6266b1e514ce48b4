//! The hub's vocabulary: where a subscription starts, what it yields, why a publish or a
//! subscribe is refused, and the numbers the hub reports.

use crate::log::Message;
use crate::{NameError, TopicName};

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The topic name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The payload is larger than the limit.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The hub's [`HubConfig::max_payload`](crate::HubConfig::max_payload), in bytes.
        limit: usize,
    },
    /// The hub holds its maximum number of topics.
    #[error("the hub already holds its maximum of {0} topics")]
    TooManyTopics(usize),
    /// A durable topic was published to without waiting for the store: use
    /// [`Hub::publish_wait`](crate::Hub::publish_wait).
    #[error("{0} is durable: it is published with publish_wait, which waits for the store")]
    Durable(String),
    /// The store failed; nothing was published.
    #[error("the topic store failed: {0}")]
    Store(String),
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// With the next message published.
    Now,
    /// With the oldest message retained.
    Earliest,
    /// With the message at this offset (the one after the last the client saw). If it is
    /// older than the retention, an [`Event::Gap`] comes first; if it is beyond the newest,
    /// the subscription starts now. For single topics only.
    Offset(u64),
    /// With the last `n` messages retained (a chat room's recent history). For single
    /// topics only.
    Last(u64),
    /// With the message at this position (the one after the last the client saw), if the
    /// topic is still in the position's epoch; as [`StartFrom::Offset`] then. In another
    /// epoch (the hub restarted and an in-memory topic began again, or the client moved to
    /// another node, whose offsets are its own) the offset names nothing here: an
    /// [`Event::Reset`] comes first and the subscription starts at the oldest message
    /// retained. For single topics only.
    At(Position),
}

/// A message's place in its topic: the topic's epoch and the offset. The resume token the
/// transports hand to clients, written `EPOCH-OFFSET` (`4461862130098176-17`): an offset
/// alone cannot tell a client that the numbers started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// The topic's epoch (see [`TopicInfo::epoch`]).
    pub epoch: u64,
    /// The offset within that epoch.
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.epoch, self.offset)
    }
}

impl std::str::FromStr for Position {
    type Err = StartFromError;

    fn from_str(text: &str) -> Result<Position, StartFromError> {
        let bad = || StartFromError(text.to_owned());
        let (epoch, offset) = text.split_once('-').ok_or_else(bad)?;
        let number = |digits: &str| {
            // `u64::from_str` takes a leading `+`; a token never has one.
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            digits.parse::<u64>().map_err(|_| bad())
        };
        Ok(Position {
            epoch: number(epoch)?,
            offset: number(offset)?,
        })
    }
}

impl Position {
    /// The position after this one (where a client that saw this message resumes), or
    /// `None` for the largest offset, which has no next.
    pub fn next(self) -> Option<Position> {
        Some(Position {
            epoch: self.epoch,
            offset: self.offset.checked_add(1)?,
        })
    }
}

impl std::str::FromStr for StartFrom {
    type Err = StartFromError;

    /// Reads where a client asks to start, as every transport writes it: `earliest`, a
    /// position `EPOCH-OFFSET` or a bare offset (the first message wanted).
    fn from_str(text: &str) -> Result<StartFrom, StartFromError> {
        if text == "earliest" {
            return Ok(StartFrom::Earliest);
        }
        if text.contains('-') {
            return text.parse().map(StartFrom::At);
        }
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StartFromError(text.to_owned()));
        }
        text.parse()
            .map(StartFrom::Offset)
            .map_err(|_| StartFromError(text.to_owned()))
    }
}

/// A start that is neither `earliest`, a position nor an offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a place to start; use a position EPOCH-OFFSET (as events carry), an offset or 'earliest'")]
pub struct StartFromError(pub String);

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message of a followed topic. Each topic's messages come in offset order; a
    /// wildcard subscription takes its topics in turn.
    Message(Message),
    /// Messages `from..=to` of `topic` are no longer retained: the replay starts after them.
    Gap {
        /// The topic the messages are missing from.
        topic: TopicName,
        /// The topic's epoch.
        epoch: u64,
        /// First missing offset.
        from: u64,
        /// Last missing offset.
        to: u64,
    },
    /// The position a subscription asked to resume from belongs to another epoch of
    /// `topic` (the hub restarted, or the client came from another node): an unknown number
    /// of messages after it cannot be delivered. The subscription goes on with the oldest
    /// message retained in `epoch`, at offset `from`; a client that keeps state derived
    /// from the topic should rebuild it.
    Reset {
        /// The topic.
        topic: TopicName,
        /// The epoch of the position the client gave.
        previous_epoch: u64,
        /// The topic's epoch now.
        epoch: u64,
        /// The offset the subscription goes on from (in `epoch`).
        from: u64,
    },
    /// This subscriber fell more than the lag limit (`max_lag_bytes`) behind, or behind
    /// what the hub holds (its memory budget took the messages), and skipped `missed`
    /// messages.
    Lagged {
        /// The topic this subscriber fell behind on; it goes on with the oldest message
        /// within the lag limit of the newest.
        topic: TopicName,
        /// How many messages it skipped (at least 1); they are not delivered later.
        missed: u64,
    },
    /// The hub ended this subscription (it was too slow under
    /// [`SlowSubscriberPolicy::Disconnect`](crate::SlowSubscriberPolicy::Disconnect)); the stream ends after this.
    Disconnected {
        /// Why, for people: the topic the subscriber fell behind on, by how many messages,
        /// and the lag limit.
        reason: String,
    },
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The pattern is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// An offset was given with a wildcard pattern: offsets belong to one topic.
    #[error("a start offset needs a single topic, not the pattern {0:?}")]
    OffsetWithWildcard(String),
    /// The topic does not exist and the hub holds its maximum number of topics.
    #[error("the hub already holds its maximum of {0} topics")]
    TooManyTopics(usize),
    /// The topic (or pattern) already has the most subscribers allowed.
    #[error("{pattern} already has its maximum of {limit} subscribers")]
    TooManySubscribers {
        /// The topic or pattern.
        pattern: String,
        /// The hub's limit of subscribers per topic or pattern
        /// (`max_subscribers_per_topic` in [`HubConfig`](crate::HubConfig)).
        limit: usize,
    },
}

/// A topic's numbers, for the dashboard and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic these numbers are for.
    pub name: TopicName,
    /// Names this run of the topic's offsets: an in-memory topic gets a new epoch when the
    /// hub restarts and its offsets start again at 0; a durable topic keeps its epoch. An
    /// offset from another epoch does not name the same message.
    pub epoch: u64,
    /// The oldest offset held.
    pub first_offset: u64,
    /// The offset the next message gets.
    pub next_offset: u64,
    /// Subscriptions naming this topic exactly (wildcard subscribers not included).
    pub subscribers: usize,
}

/// A subscriber that fell behind, for metrics that name the slow connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowSubscriber {
    /// The label given at subscribe time (a peer address, a connection id).
    pub label: String,
    /// Messages it skipped or was cut off at.
    pub missed: u64,
    /// Times it fell behind.
    pub times: u64,
}
