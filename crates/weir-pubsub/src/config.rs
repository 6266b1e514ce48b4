//! The hub's settings.

use crate::log::Retention;
use crate::{TopicName, TopicPattern};

/// What a subscriber does when it falls too far behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowSubscriberPolicy {
    /// Skip ahead to the oldest message within `max_lag_bytes` of the newest and say so
    /// with [`Event::Lagged`](crate::Event::Lagged).
    DropOldest,
    /// End the subscription with [`Event::Disconnected`](crate::Event::Disconnected), as NATS and Redis cut off slow
    /// consumers; the client reconnects from its last offset and sees a gap notice.
    Disconnect,
}

/// The settings a [`Hub`](crate::Hub) is built with; they cannot change while it runs.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Retention of topics no rule below matches.
    pub default_retention: Retention,
    /// Retention by pattern; the first match wins.
    pub retention_rules: Vec<(TopicPattern, Retention)>,
    /// Bytes a subscriber may fall behind a topic's newest message (payloads plus 320
    /// bytes a message) before its policy applies. A topic holds this much of its newest
    /// messages, beyond its retention, for the subscribers catching up: a subscriber that
    /// keeps reading loses nothing to a burst of up to this size, and one that stops
    /// reading costs the others nothing. Default 16 MiB (Redis cuts a pub/sub client off at
    /// 32 MB of output buffer, NATS at 64 MB pending, each per client; here it is per
    /// topic, shared by its subscribers).
    pub max_lag_bytes: usize,
    /// What happens to a subscriber more than `max_lag_bytes` behind. Default
    /// [`SlowSubscriberPolicy::DropOldest`].
    pub slow_policy: SlowSubscriberPolicy,
    /// Topics the hub holds at most; publishing to a new topic past it fails. Default
    /// 100,000: a bound on memory for names a client chooses.
    pub max_topics: usize,
    /// Largest payload in bytes. Default 1 MiB.
    pub max_payload: usize,
    /// Bytes one topic retains at most (payloads and a fixed cost per message); past it
    /// the oldest go, whatever the count retention says. Default 64 MiB.
    pub max_topic_bytes: usize,
    /// Bytes every topic together retains at most; past it the oldest messages of all
    /// topics go first (down to nine tenths of it), so one busy topic cannot take the
    /// memory of a quiet one's last messages unless they are older. Default 512 MiB.
    pub max_retained_bytes: usize,
    /// A topic with no subscriber and no retained message is let go after this long
    /// without a message (its name and offsets go; a new one starts a new epoch). Default
    /// 60 s.
    pub topic_idle: std::time::Duration,
    /// Subscriptions to one topic, or to one wildcard pattern, held at once; past it a
    /// subscribe fails with [`SubscribeError::TooManySubscribers`](crate::SubscribeError::TooManySubscribers). Default 100,000.
    pub max_subscribers_per_topic: usize,
    /// Topics kept in the store ([`Hub::with_store`](crate::Hub::with_store)) and published with
    /// [`Hub::publish_wait`](crate::Hub::publish_wait). Default: none.
    pub durable: Vec<TopicPattern>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            default_retention: Retention::default(),
            retention_rules: Vec::new(),
            max_lag_bytes: 16 << 20,
            slow_policy: SlowSubscriberPolicy::DropOldest,
            max_topics: 100_000,
            max_payload: 1024 * 1024,
            max_topic_bytes: 64 << 20,
            max_retained_bytes: 512 << 20,
            topic_idle: std::time::Duration::from_secs(60),
            max_subscribers_per_topic: 100_000,
            durable: Vec::new(),
        }
    }
}

impl HubConfig {
    /// The retention of topic `name`: the first rule that matches, else the default.
    pub fn retention_for(&self, name: &TopicName) -> Retention {
        self.retention_rules
            .iter()
            .find(|(pattern, _)| pattern.matches(name))
            .map_or(self.default_retention, |(_, r)| *r)
    }
}
