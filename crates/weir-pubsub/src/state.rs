//! What every clone of a [`Hub`](crate::Hub) and every subscription share: the topics,
//! the wildcard registrations, the subscriber counts and the slow-subscriber report.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use tokio::sync::watch;

use crate::durable::Writer;
use crate::log::SubWaker;
use crate::relay::{Interest, Relay};
use crate::topic::Topic;
use crate::{HubConfig, TopicName, TopicPattern};

/// Topics a wildcard subscription has yet to pick up, pushed by the hub as they appear.
#[derive(Debug, Default)]
pub(crate) struct Discovered {
    pub(crate) topics: Mutex<Vec<Arc<Topic>>>,
    pub(crate) waker: SubWaker,
}

#[derive(Debug, Default)]
pub(crate) struct LagStats {
    pub(crate) missed: AtomicU64,
    pub(crate) times: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct HubInner {
    pub(crate) config: HubConfig,
    pub(crate) topics: RwLock<HashMap<TopicName, Arc<Topic>>>,
    pub(crate) patterns: Mutex<Vec<(TopicPattern, Weak<Discovered>)>>,
    pub(crate) slow: Mutex<Vec<(Arc<str>, Weak<LagStats>)>>,
    /// Subscriptions held per topic or pattern, for `max_subscribers_per_topic`; its keys
    /// are this node's [`Interest`].
    pub(crate) subscribers: Mutex<HashMap<TopicPattern, usize>>,
    /// Bumped whenever a topic or pattern gains its first subscriber or loses its last.
    pub(crate) interest_version: watch::Sender<u64>,
    /// The [`Interest`] of that version, built when first needed after a change.
    pub(crate) interest_cache: Mutex<(Option<u64>, Arc<Interest>)>,
    /// Where local publishes go for other nodes, once set.
    pub(crate) relay: OnceLock<Arc<dyn Relay>>,
    /// The store's writer, when the hub has a store.
    pub(crate) writer: Option<Writer>,
    /// The salt of durable topics' epochs, when the store is shared by several nodes
    /// ([`crate::durable::shared_epoch`]).
    pub(crate) durable_epoch: OnceLock<u64>,
    pub(crate) epoch_base: u64,
    pub(crate) epochs_issued: AtomicU64,
    /// Bytes every topic's log retains (see [`crate::HubConfig::max_retained_bytes`]).
    pub(crate) retained_bytes: Arc<AtomicUsize>,
    /// Held by the one pass that brings the retained bytes back under the budget.
    pub(crate) budget_pass: Mutex<()>,
}
