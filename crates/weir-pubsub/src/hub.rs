//! The hub: topics created on first use, publishing, and subscriptions.

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::watch;

use crate::durable::{StoreError, TopicStore, Writer};
use crate::log::{Message, ReadAt, Retention, SubWaker, TopicLog};
use crate::relay::{Interest, Relay, RelayStats};
use crate::{NameError, TopicName, TopicPattern};

/// What a subscriber does when it falls too far behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowSubscriberPolicy {
    /// Skip ahead to the newest `lag_limit` messages and say so with [`Event::Lagged`].
    DropOldest,
    /// End the subscription with [`Event::Disconnected`], as NATS and Redis cut off slow
    /// consumers; the client reconnects from its last offset and sees a gap notice.
    Disconnect,
}

/// Hub settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Retention of topics no rule below matches.
    pub default_retention: Retention,
    /// Retention by pattern; the first match wins.
    pub retention_rules: Vec<(TopicPattern, Retention)>,
    /// Messages a subscriber may fall behind a topic's newest before its policy applies.
    /// Default 1,024.
    pub lag_limit: NonZeroUsize,
    /// The slow-subscriber policy.
    pub slow_policy: SlowSubscriberPolicy,
    /// Topics the hub holds at most; publishing to a new topic past it fails. Default
    /// 100,000: a bound on memory for names a client chooses.
    pub max_topics: usize,
    /// Largest payload in bytes. Default 1 MiB.
    pub max_payload: usize,
    /// Subscriptions to one topic, or to one wildcard pattern, held at once; past it a
    /// subscribe fails with [`SubscribeError::TooManySubscribers`]. Default 100,000.
    pub max_subscribers_per_topic: usize,
    /// Topics kept in the store ([`Hub::with_store`]) and published with
    /// [`Hub::publish_wait`]. Default: none.
    pub durable: Vec<TopicPattern>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            default_retention: Retention::default(),
            retention_rules: Vec::new(),
            lag_limit: NonZeroUsize::new(1024).expect("non-zero"),
            slow_policy: SlowSubscriberPolicy::DropOldest,
            max_topics: 100_000,
            max_payload: 1024 * 1024,
            max_subscribers_per_topic: 100_000,
            durable: Vec::new(),
        }
    }
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The topic name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The payload is larger than the limit.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The hub holds its maximum number of topics.
    #[error("the hub already holds its maximum of {0} topics")]
    TooManyTopics(usize),
    /// A durable topic was published to without waiting for the store: use
    /// [`Hub::publish_wait`].
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

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message.
    Message(Message),
    /// Messages `from..=to` of `topic` are no longer retained: the replay starts after them.
    Gap {
        /// The topic.
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
        /// The topic.
        topic: TopicName,
        /// Messages skipped.
        missed: u64,
    },
    /// The hub ended this subscription (it was too slow under
    /// [`SlowSubscriberPolicy::Disconnect`]); the stream ends after this.
    Disconnected {
        /// Why.
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
        /// The limit.
        limit: usize,
    },
}

/// A topic's numbers, for the dashboard and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The name.
    pub name: TopicName,
    /// The current epoch.
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

/// A topic: its log behind a read-write lock, so that many subscribers read at once and
/// only an append excludes them.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: TopicName,
    log: RwLock<TopicLog>,
}

impl Topic {
    pub(crate) fn log(&self) -> RwLockReadGuard<'_, TopicLog> {
        self.log.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn log_mut(&self) -> RwLockWriteGuard<'_, TopicLog> {
        self.log.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Topics a wildcard subscription has yet to pick up, pushed by the hub as they appear.
#[derive(Debug, Default)]
struct Discovered {
    topics: Mutex<Vec<Arc<Topic>>>,
    waker: SubWaker,
}

#[derive(Debug, Default)]
struct LagStats {
    missed: AtomicU64,
    times: AtomicU64,
}

#[derive(Debug)]
struct HubInner {
    config: HubConfig,
    topics: RwLock<HashMap<TopicName, Arc<Topic>>>,
    patterns: Mutex<Vec<(TopicPattern, Weak<Discovered>)>>,
    slow: Mutex<Vec<(Arc<str>, Weak<LagStats>)>>,
    /// Subscriptions held per topic or pattern, for `max_subscribers_per_topic`; its keys
    /// are this node's [`Interest`].
    subscribers: Mutex<HashMap<TopicPattern, usize>>,
    /// Bumped whenever a topic or pattern gains its first subscriber or loses its last.
    interest_version: watch::Sender<u64>,
    /// The [`Interest`] of that version, built when first needed after a change.
    interest_cache: Mutex<(Option<u64>, Arc<Interest>)>,
    /// Where local publishes go for other nodes, once set.
    relay: OnceLock<Arc<dyn Relay>>,
    /// The store's writer, when the hub has a store.
    writer: Option<Writer>,
    epoch_base: u64,
    epochs_issued: AtomicU64,
}

/// Whether a publish goes to the relay too (a local publish) or not (one that came from
/// another node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forward {
    Yes,
    No,
}

/// The pub/sub hub. Clone it freely: clones share the topics.
///
/// Fan-out is a shared log per topic with a cursor per subscriber (as tokio's broadcast
/// channel and Kafka do): publishing appends once and wakes the waiting subscribers; nothing
/// is copied per subscriber. A slow subscriber never slows the publisher or the others: it
/// only falls behind in its cursor, and past the lag limit its policy applies.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl Hub {
    /// A hub with `config`, all in memory (durable patterns are ignored without a store).
    pub fn new(config: HubConfig) -> Hub {
        Self::build(config, None)
    }

    /// A hub whose durable topics ([`HubConfig::durable`]) live in `store`: they are loaded
    /// now, with their offsets and epochs, and every publish to them is committed there
    /// before it is answered or seen (see [`Hub::publish_wait`]).
    pub fn with_store(
        config: HubConfig,
        mut store: Box<dyn TopicStore>,
    ) -> Result<Hub, StoreError> {
        let retention = |name: &TopicName| retention_for(&config, name);
        let stored = store.load(&retention)?;
        let hub = Self::build(config, Some(Writer::start(store)));
        let mut topics = hub.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        for topic in stored {
            let retention = retention_for(&hub.inner.config, &topic.name);
            let mut log = TopicLog::new(topic.epoch, retention, hub.inner.config.lag_limit.get());
            log.restore(&topic.name, topic.next_offset, topic.messages);
            topics.insert(
                topic.name.clone(),
                Arc::new(Topic {
                    name: topic.name,
                    log: RwLock::new(log),
                }),
            );
        }
        drop(topics);
        Ok(hub)
    }

    fn build(config: HubConfig, writer: Option<Writer>) -> Hub {
        // Epochs must differ across restarts of an in-memory hub: history is lost then.
        let epoch_base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64)
            << 8;
        Hub {
            inner: Arc::new(HubInner {
                config,
                topics: RwLock::new(HashMap::new()),
                patterns: Mutex::new(Vec::new()),
                slow: Mutex::new(Vec::new()),
                subscribers: Mutex::new(HashMap::new()),
                interest_version: watch::Sender::new(0),
                interest_cache: Mutex::default(),
                relay: OnceLock::new(),
                writer,
                epoch_base,
                epochs_issued: AtomicU64::new(0),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Whether `name` is kept in the store.
    pub fn is_durable(&self, name: &TopicName) -> bool {
        self.inner.writer.is_some() && self.inner.config.durable.iter().any(|p| p.matches(name))
    }

    /// Publishes `payload` to `topic`, creating the topic on first use, and waits, for a
    /// durable topic, until the store has committed it: an `Ok` means it survives a crash.
    /// Other topics are published at once, as with [`Hub::publish`].
    pub async fn publish_wait(&self, topic: &str, payload: Bytes) -> Result<Message, PublishError> {
        let (name, payload) = self.check(topic, payload)?;
        self.publish_here(&name, payload, Forward::Yes).await
    }

    /// Publishes a checked message: through the store when durable. With `Forward::Yes`
    /// it is also handed to the relay, in the order the topic's log took it.
    async fn publish_here(
        &self,
        name: &TopicName,
        payload: Bytes,
        forward: Forward,
    ) -> Result<Message, PublishError> {
        match &self.inner.writer {
            Some(writer) if self.is_durable(name) => {
                let topic = self.topic(name)?;
                let copy = (forward == Forward::Yes).then(|| payload.clone());
                let message = writer.publish(topic, payload).await?;
                // After the commit: other nodes must not see what a crash could take back.
                // Two publishers' answers may come back in either order, so a durable
                // topic keeps each publisher's order across nodes, not the log's.
                if let Some(copy) = copy {
                    self.forward(name, &copy, false);
                }
                Ok(message)
            }
            _ => self.publish_checked(name, payload, forward),
        }
    }

    /// Publishes `payload` to `topic`, creating the topic on first use. A durable topic is
    /// refused ([`PublishError::Durable`]): it needs [`Hub::publish_wait`].
    pub fn publish(&self, topic: &str, payload: Bytes) -> Result<Message, PublishError> {
        let (name, payload) = self.check(topic, payload)?;
        if self.is_durable(&name) {
            return Err(PublishError::Durable(name.to_string()));
        }
        self.publish_checked(&name, payload, Forward::Yes)
    }

    /// Publishes `payload` to `topic` only if the topic exists (it was published to or
    /// subscribed to before); returns `None` otherwise. For notifications about short-lived
    /// things, such as one job's progress: a topic per job, created whether or not anyone
    /// listens, would pile up until `max_topics` refused every new one.
    pub fn publish_if_exists(
        &self,
        topic: &str,
        payload: Bytes,
    ) -> Result<Option<Message>, PublishError> {
        let (name, payload) = self.check(topic, payload)?;
        if self.is_durable(&name) {
            return Err(PublishError::Durable(name.to_string()));
        }
        // Other nodes may have the topic when this one has not.
        self.forward(&name, &payload, true);
        if !self.exists(&name) {
            return Ok(None);
        }
        self.publish_checked(&name, payload, Forward::No).map(Some)
    }

    /// Publishes a message that arrived from another node, on this node only (it is not
    /// relayed again). It is kept where someone could read it: when the topic exists here or
    /// a subscription here matches it (with `only_if_exists`, only when the topic exists);
    /// otherwise it is dropped and `None` returned, so that other nodes' traffic does not
    /// fill this node with topics nobody here reads. A durable topic goes through this
    /// node's store, as a local publish would.
    pub async fn publish_relayed(
        &self,
        topic: &str,
        payload: Bytes,
        only_if_exists: bool,
    ) -> Result<Option<Message>, PublishError> {
        let (name, payload) = self.check(topic, payload)?;
        let kept = self.exists(&name) || (!only_if_exists && self.subscribed_here(&name));
        if !kept {
            return Ok(None);
        }
        self.publish_here(&name, payload, Forward::No)
            .await
            .map(Some)
    }

    /// Sets where local publishes go for other nodes. Only the first call takes effect
    /// (false after that): a hub belongs to one cluster.
    pub fn set_relay(&self, relay: Arc<dyn Relay>) -> bool {
        self.inner.relay.set(relay).is_ok()
    }

    /// The relay's counts, when one is set.
    pub fn relay_stats(&self) -> Option<RelayStats> {
        self.inner.relay.get().map(|relay| relay.stats())
    }

    /// What this node's subscriptions want: every topic and pattern with a subscriber.
    pub fn interest(&self) -> Interest {
        let counts = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Interest::new(counts.keys().cloned())
    }

    /// The same topics and patterns as [`Hub::interest`], as a sorted list of names (what a
    /// relay tells the other nodes).
    pub fn interest_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .map(|p| p.as_str().to_owned())
            .collect();
        names.sort_unstable();
        names
    }

    /// A receiver that sees a change whenever [`Hub::interest`] may have changed (a topic or
    /// pattern gained its first subscriber or lost its last).
    pub fn interest_changes(&self) -> watch::Receiver<u64> {
        self.inner.interest_version.subscribe()
    }

    /// Whether a subscription here matches `name`. Runs for every message from another
    /// node whose topic is not here, so it reads an [`Interest`] built once per change of
    /// the subscriptions (a set lookup and the wildcard patterns) rather than scanning every
    /// subscription under the lock that subscribing takes.
    fn subscribed_here(&self, name: &TopicName) -> bool {
        let version = *self.inner.interest_version.borrow();
        let mut cache = self
            .inner
            .interest_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if cache.0 != Some(version) {
            // Built after reading the version: a change in between is seen at the next
            // call, as the version moved on.
            *cache = (Some(version), Arc::new(self.interest()));
        }
        let interest = Arc::clone(&cache.1);
        drop(cache);
        interest.wants(name)
    }

    fn exists(&self, name: &TopicName) -> bool {
        self.inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    fn forward(&self, name: &TopicName, payload: &Bytes, only_if_exists: bool) {
        if let Some(relay) = self.inner.relay.get() {
            relay.forward(name, payload, only_if_exists);
        }
    }

    fn check(&self, topic: &str, payload: Bytes) -> Result<(TopicName, Bytes), PublishError> {
        let limit = self.inner.config.max_payload;
        if payload.len() > limit {
            return Err(PublishError::PayloadTooLarge {
                size: payload.len(),
                limit,
            });
        }
        Ok((TopicName::new(topic)?, payload))
    }

    fn publish_checked(
        &self,
        name: &TopicName,
        payload: Bytes,
        forward: Forward,
    ) -> Result<Message, PublishError> {
        let topic = self.topic(name)?;
        let copy = (forward == Forward::Yes).then(|| payload.clone());
        let mut log = topic.log_mut();
        let (message, waiters) = log.append(&topic.name, payload, SystemTime::now());
        if let Some(copy) = copy {
            // Under the log's lock, so that two publishers' messages leave for other nodes
            // in the order this node's log took them (forwarding never blocks).
            self.forward(name, &copy, false);
        }
        drop(log);
        for waiter in waiters {
            waiter.wake();
        }
        Ok(message)
    }

    fn topic(&self, name: &TopicName) -> Result<Arc<Topic>, PublishError> {
        if let Some(topic) = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(topic.clone());
        }
        let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        if let Some(topic) = topics.get(name) {
            return Ok(topic.clone());
        }
        if topics.len() >= self.inner.config.max_topics {
            return Err(PublishError::TooManyTopics(self.inner.config.max_topics));
        }
        let config = &self.inner.config;
        let retention = retention_for(config, name);
        let epoch =
            self.inner.epoch_base + self.inner.epochs_issued.fetch_add(1, Ordering::Relaxed);
        let topic = Arc::new(Topic {
            name: name.clone(),
            log: RwLock::new(TopicLog::new(epoch, retention, config.lag_limit.get())),
        });
        topics.insert(name.clone(), topic.clone());
        drop(topics);
        // Tell the wildcard subscriptions that match; forget the ones that ended.
        let mut patterns = self
            .inner
            .patterns
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        patterns.retain(|(pattern, discovered)| match discovered.upgrade() {
            Some(discovered) => {
                if pattern.matches(name) {
                    discovered
                        .topics
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(topic.clone());
                    discovered.waker.wake();
                }
                true
            }
            None => false,
        });
        Ok(topic)
    }

    /// Subscribes to a topic or a wildcard pattern. `label` names the subscriber in the
    /// slow-subscriber report (a peer address, a connection id); a connection with many
    /// subscriptions can share one `Arc<str>` among them.
    pub fn subscribe(
        &self,
        pattern: &str,
        start: StartFrom,
        label: impl Into<Arc<str>>,
    ) -> Result<Subscription, SubscribeError> {
        let pattern = TopicPattern::new(pattern)?;
        if pattern.is_wildcard() && matches!(start, StartFrom::Offset(_) | StartFrom::Last(_)) {
            return Err(SubscribeError::OffsetWithWildcard(pattern.to_string()));
        }
        let slot = SubscriberSlot::take(self, &pattern)?;
        let mut subscription = Subscription {
            hub: self.clone(),
            cursors: Vec::new(),
            // Only a wildcard subscription can meet a topic twice (found by the scan and
            // handed over as new); a single-topic one needs no set.
            tracked: pattern.is_wildcard().then(Box::default),
            discovered: None,
            pending: VecDeque::new(),
            turn: 0,
            label: label.into(),
            stats: None,
            ended: false,
            _slot: slot,
        };
        let now = SystemTime::now();
        if pattern.is_wildcard() {
            // Register first, then scan: a topic created in between is seen twice, not never.
            let discovered = Arc::new(Discovered::default());
            self.inner
                .patterns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((pattern.clone(), Arc::downgrade(&discovered)));
            let existing: Vec<Arc<Topic>> = self
                .inner
                .topics
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .filter(|t| pattern.matches(&t.name))
                .cloned()
                .collect();
            for topic in existing {
                subscription.track(topic, start, now);
            }
            subscription.discovered = Some(discovered);
        } else {
            let name = TopicName::new(pattern.as_str())?;
            // Subscribing creates the topic, so that offsets and epochs exist from now on.
            let topic = self.topic(&name).map_err(|e| match e {
                PublishError::Name(e) => SubscribeError::Name(e),
                PublishError::TooManyTopics(n) => SubscribeError::TooManyTopics(n),
                PublishError::PayloadTooLarge { .. }
                | PublishError::Durable(_)
                | PublishError::Store(_) => unreachable!("creating a topic does not publish"),
            })?;
            subscription.track(topic, start, now);
        }
        Ok(subscription)
    }

    /// Every topic with its offsets, sorted by name.
    pub fn topics(&self) -> Vec<TopicInfo> {
        let counts = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut infos: Vec<TopicInfo> = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|topic| {
                let log = topic.log();
                TopicInfo {
                    name: topic.name.clone(),
                    epoch: log.epoch,
                    first_offset: log.first(),
                    next_offset: log.next,
                    subscribers: TopicPattern::new(topic.name.as_str())
                        .ok()
                        .and_then(|pattern| counts.get(&pattern).copied())
                        .unwrap_or(0),
                }
            })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// Connected subscribers that have fallen behind at least once, worst first.
    pub fn slow_subscribers(&self) -> Vec<SlowSubscriber> {
        let mut slow = self.inner.slow.lock().unwrap_or_else(|e| e.into_inner());
        slow.retain(|(_, stats)| stats.strong_count() > 0);
        let mut report: Vec<SlowSubscriber> = slow
            .iter()
            .filter_map(|(label, stats)| {
                let stats = stats.upgrade()?;
                let times = stats.times.load(Ordering::Relaxed);
                (times > 0).then(|| SlowSubscriber {
                    label: label.to_string(),
                    missed: stats.missed.load(Ordering::Relaxed),
                    times,
                })
            })
            .collect();
        report.sort_by_key(|s| std::cmp::Reverse(s.missed));
        report
    }
}

/// The retention of `name`: the first rule that matches, else the default.
fn retention_for(config: &HubConfig, name: &TopicName) -> Retention {
    config
        .retention_rules
        .iter()
        .find(|(pattern, _)| pattern.matches(name))
        .map_or(config.default_retention, |(_, r)| *r)
}

/// Messages a subscription takes from a topic per lock.
const READ_BATCH: usize = 64;

#[derive(Debug)]
struct Cursor {
    topic: Arc<Topic>,
    next: u64,
    waker: Arc<SubWaker>,
}

/// A subscription: a stream of [`Event`]s.
///
/// * **Backpressure:** none on the publisher. The subscriber reads at its own pace from the
///   topic's log; past the lag limit its [`SlowSubscriberPolicy`] applies.
/// * **Fairness:** a wildcard subscription reads its topics round-robin.
/// * **Cancel safety:** the cursor advances only when an event is returned; dropping
///   `next()` loses nothing.
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct Subscription {
    hub: Hub,
    cursors: Vec<Cursor>,
    /// Topics a wildcard subscription follows (none for a single topic). Boxed so the
    /// field is one pointer in every subscription, not a set's 48 bytes: most
    /// subscriptions name one topic, and an idle subscriber's size is measured.
    #[allow(clippy::box_collection)]
    tracked: Option<Box<HashSet<TopicName>>>,
    discovered: Option<Arc<Discovered>>,
    pending: VecDeque<Event>,
    turn: usize,
    /// Names the subscriber in the slow-subscriber report.
    label: Arc<str>,
    /// Created, and entered in the hub's report, the first time this subscriber falls
    /// behind: most never do, and then it costs nothing.
    stats: Option<Arc<LagStats>>,
    ended: bool,
    _slot: SubscriberSlot,
}

/// One subscription's place in its topic's (or pattern's) subscriber count, given back
/// when the subscription is dropped.
#[derive(Debug)]
struct SubscriberSlot {
    hub: Weak<HubInner>,
    pattern: TopicPattern,
}

impl SubscriberSlot {
    fn take(hub: &Hub, pattern: &TopicPattern) -> Result<SubscriberSlot, SubscribeError> {
        let limit = hub.inner.config.max_subscribers_per_topic;
        let mut counts = hub
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Keep the map's copy of the pattern (when there is one) rather than this one:
        // a thousand subscribers of one topic then share one name.
        let (key, count) = match counts.get_key_value(pattern) {
            Some((key, &count)) => (key.clone(), count),
            None => (pattern.clone(), 0),
        };
        if count >= limit {
            return Err(SubscribeError::TooManySubscribers {
                pattern: pattern.to_string(),
                limit,
            });
        }
        counts.insert(key.clone(), count + 1);
        if count == 0 {
            hub.inner
                .interest_version
                .send_modify(|version| *version += 1);
        }
        Ok(SubscriberSlot {
            hub: Arc::downgrade(&hub.inner),
            pattern: key,
        })
    }
}

impl Drop for SubscriberSlot {
    fn drop(&mut self) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut counts = hub.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.pattern) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.pattern);
                hub.interest_version.send_modify(|version| *version += 1);
            }
        }
    }
}

impl Subscription {
    fn track(&mut self, topic: Arc<Topic>, start: StartFrom, now: SystemTime) {
        if let Some(tracked) = &mut self.tracked {
            if !tracked.insert(topic.name.clone()) {
                return;
            }
        }
        let log = topic.log();
        let next = match start {
            StartFrom::Now => log.next,
            StartFrom::Earliest => log.replay_start(now),
            StartFrom::Last(n) => log.next.saturating_sub(n).max(log.replay_start(now)),
            StartFrom::Offset(offset) => {
                let retained = log.replay_start(now);
                if offset > log.next {
                    log.next
                } else if offset < retained {
                    self.pending.push_back(Event::Gap {
                        topic: topic.name.clone(),
                        epoch: log.epoch,
                        from: offset,
                        to: retained - 1,
                    });
                    retained
                } else {
                    offset
                }
            }
        };
        drop(log);
        // Exactly one more: most subscriptions follow one topic, and a thousand idle
        // subscribers should not each hold room for four.
        self.cursors.reserve_exact(1);
        self.cursors.push(Cursor {
            topic,
            next,
            waker: Arc::new(SubWaker::default()),
        });
    }

    /// The topics this subscription follows so far.
    pub fn topics(&self) -> Vec<TopicName> {
        self.cursors.iter().map(|c| c.topic.name.clone()).collect()
    }

    fn pick_up_new_topics(&mut self) {
        let Some(discovered) = self.discovered.clone() else {
            return;
        };
        let new: Vec<Arc<Topic>> =
            std::mem::take(&mut *discovered.topics.lock().unwrap_or_else(|e| e.into_inner()));
        for topic in new {
            // A topic created after the subscription: everything in it is new to us.
            self.track(topic, StartFrom::Offset(0), SystemTime::now());
        }
    }

    /// Reads one event from cursor `index`, or registers to be woken.
    fn read(&mut self, index: usize, cx: &Context<'_>) -> Option<Event> {
        let config = &self.hub.inner.config;
        let lag_limit = config.lag_limit.get() as u64;
        let policy = config.slow_policy;
        let cursor = &mut self.cursors[index];
        let log = cursor.topic.log();
        let behind = log.next.saturating_sub(cursor.next);
        let overwritten = matches!(log.read(cursor.next), ReadAt::Overwritten);
        if behind > lag_limit || overwritten {
            let keep_from = log.next.saturating_sub(lag_limit).max(log.first());
            let missed = keep_from.saturating_sub(cursor.next);
            let stats = self.stats.get_or_insert_with(|| {
                let stats = Arc::new(LagStats::default());
                self.hub
                    .inner
                    .slow
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((self.label.clone(), Arc::downgrade(&stats)));
                stats
            });
            stats.missed.fetch_add(missed, Ordering::Relaxed);
            stats.times.fetch_add(1, Ordering::Relaxed);
            let topic = cursor.topic.name.clone();
            tracing::warn!(%topic, missed, ?policy, "subscriber fell behind the lag limit");
            return Some(match policy {
                SlowSubscriberPolicy::DropOldest => {
                    cursor.next = keep_from;
                    Event::Lagged { topic, missed }
                }
                SlowSubscriberPolicy::Disconnect => {
                    self.ended = true;
                    Event::Disconnected {
                        reason: format!("{missed} messages behind on {topic}, past the lag limit of {lag_limit}"),
                    }
                }
            });
        }
        match log.read(cursor.next) {
            ReadAt::Message(message) => {
                cursor.next += 1;
                // Take what else is ready under the same lock: with many subscribers on a busy
                // topic, one lock per message was the cost that mattered (benches/fanout.rs).
                while self.pending.len() < READ_BATCH {
                    match log.read(cursor.next) {
                        ReadAt::Message(more) => {
                            cursor.next += 1;
                            self.pending.push_back(Event::Message(more));
                        }
                        ReadAt::UpToDate | ReadAt::Overwritten => break,
                    }
                }
                Some(Event::Message(message))
            }
            ReadAt::UpToDate | ReadAt::Overwritten => {
                cursor.waker.set(cx.waker());
                log.wait(&cursor.waker);
                None
            }
        }
    }
}

impl Stream for Subscription {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = self.get_mut();
        if let Some(event) = this.pending.pop_front() {
            return Poll::Ready(Some(event));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(discovered) = &this.discovered {
            discovered.waker.set(cx.waker());
        }
        this.pick_up_new_topics();
        let count = this.cursors.len();
        for step in 0..count {
            let index = (this.turn + step) % count;
            if let Some(event) = this.read(index, cx) {
                this.turn = index + 1;
                return Poll::Ready(Some(event));
            }
        }
        Poll::Pending
    }
}
