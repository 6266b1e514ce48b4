//! The hub's side of a relay between nodes: what leaves, what other nodes want, and what
//! arrives.
//!
//! Several `weir serve` nodes behind one load balancer must act as one hub: a message
//! published on one node reaches subscribers on every node. The hub knows nothing of the
//! transport (the binary relays over PostgreSQL's `LISTEN/NOTIFY`, or over routes that
//! PostgreSQL introduces: [`crate::postgres_relay`]); it only
//! - hands every local publish to a [`Relay`] ([`Hub::set_relay`](crate::Hub::set_relay)),
//! - tells the relay what its own subscribers want ([`Hub::interest`](crate::Hub::interest),
//!   with [`Hub::interest_changes`](crate::Hub::interest_changes) to wait for a change), so
//!   that a node sends only what some other node has a subscriber for, and
//! - publishes what arrives without relaying it again
//!   ([`Hub::publish_relayed`](crate::Hub::publish_relayed)).

use std::collections::HashSet;
use std::fmt;

use bytes::Bytes;

use crate::{TopicName, TopicPattern};

/// Carries local publishes to other nodes.
pub trait Relay: Send + Sync + fmt::Debug {
    /// Called after every publish made on this node, and for every
    /// [`Hub::publish_if_exists`](crate::Hub::publish_if_exists) whether or not the topic
    /// exists here (a subscriber may be on another node); `only_if_exists` then asks the
    /// other nodes to publish it only where the topic exists. Runs on the publisher's
    /// task, usually while the topic's log is locked (so that messages leave in the log's
    /// order): it must not block, and must not call into the hub.
    fn forward(&self, topic: &TopicName, payload: &Bytes, only_if_exists: bool);

    /// Counts so far, for metrics.
    fn stats(&self) -> RelayStats;
}

/// A relay's counts since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Messages sent to other nodes.
    pub sent: u64,
    /// Messages received from other nodes.
    pub received: u64,
    /// Local messages some other node wanted but that were not sent: the relay's limits
    /// (a full queue, a message too large) or its transport failing.
    pub dropped: u64,
    /// Messages from other nodes known to be lost on the way (a gap in a node's numbers).
    pub lost: u64,
    /// Other nodes seen recently.
    pub peers: u64,
}

/// What a set of subscriptions wants: exact topics in a set, wildcard patterns in a list.
#[derive(Debug, Default, Clone)]
pub struct Interest {
    exact: HashSet<TopicName>,
    patterns: Vec<TopicPattern>,
}

impl Interest {
    /// The interest of `patterns` (topics and wildcard patterns).
    pub fn new(patterns: impl IntoIterator<Item = TopicPattern>) -> Interest {
        let mut interest = Interest::default();
        let mut wildcards = HashSet::new();
        for pattern in patterns {
            if pattern.is_wildcard() {
                // Several nodes (or subscribers) with one pattern: match it once.
                if wildcards.insert(pattern.clone()) {
                    interest.patterns.push(pattern);
                }
            } else if let Ok(name) = TopicName::new(pattern.as_str()) {
                interest.exact.insert(name);
            }
        }
        interest
    }

    /// Whether some subscription would receive a message on `topic`.
    pub fn wants(&self, topic: &TopicName) -> bool {
        self.exact.contains(topic) || self.patterns.iter().any(|pattern| pattern.matches(topic))
    }

    /// Whether nothing is wanted.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interest(patterns: &[&str]) -> Interest {
        Interest::new(patterns.iter().map(|p| TopicPattern::new(p).unwrap()))
    }

    #[test]
    fn wants_exact_topics_and_wildcard_matches_only() {
        let interest = interest(&["chat:lobby", "orders.*", "jobs.>"]);
        for topic in ["chat:lobby", "orders.eu", "jobs.1", "jobs.1.progress"] {
            assert!(interest.wants(&TopicName::new(topic).unwrap()), "{topic}");
        }
        for topic in ["chat:other", "orders", "orders.eu.created", "job.1"] {
            assert!(!interest.wants(&TopicName::new(topic).unwrap()), "{topic}");
        }
        assert!(Interest::default().is_empty() && !interest.is_empty());
    }
}
