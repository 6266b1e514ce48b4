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
}

impl std::str::FromStr for StartFrom {
    type Err = StartFromError;

    /// Reads where a client asks to start, as every transport writes it: `earliest` or an
    /// offset (the first message wanted).
    fn from_str(text: &str) -> Result<StartFrom, StartFromError> {
        if text == "earliest" {
            return Ok(StartFrom::Earliest);
        }
        text.parse()
            .map(StartFrom::Offset)
            .map_err(|_| StartFromError(text.to_owned()))
    }
}

/// A start that is neither `earliest` nor an offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an offset; use a number or 'earliest'")]
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
    /// This subscriber fell more than the lag limit behind and skipped `missed` messages.
    Lagged {
        /// The topic this subscriber fell behind on; it goes on with the newest `lag_limit`
        /// messages still held.
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
