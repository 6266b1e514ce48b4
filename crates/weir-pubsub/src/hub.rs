//! The hub: topics created on first use, publishing, and subscriptions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;

use crate::answer::PublishAnswer;
use crate::durable::{StoreError, TopicStore, Writer};
use crate::log::{LogLimits, Message, TopicLog};
use crate::relay::{Interest, Relay, RelayStats};
use crate::state::{Discovered, HubInner};
use crate::subscription::{SubscriberSlot, Subscription};
use crate::topic::Topic;
use crate::upkeep::{self, Upkeep};
use crate::{
    HubConfig, PublishError, SlowSubscriber, StartFrom, SubscribeError, TopicInfo, TopicName,
    TopicPattern,
};

/// Where this hub's epochs start: random, so that they differ across restarts of an
/// in-memory hub (history is lost then) and between the nodes of a cluster (whose offsets
/// are their own), where a clock could give two nodes started together the same. Below
/// 2^52, with each new topic taking the next: an epoch stays an exact number in JSON for
/// JavaScript clients (2^53) however many topics a hub makes.
fn random_epoch_base() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // The standard library's hasher keys come from the operating system's randomness.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish() & ((1 << 52) - 1)
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
        let retention = |name: &TopicName| config.retention_for(name);
        let stored = store.load(&retention)?;
        let salt = store.epoch_salt();
        let hub = Self::build(config, Some(Writer::start(store)));
        if let Some(salt) = salt {
            let _ = hub.inner.durable_epoch.set(salt);
        }
        let mut topics = hub.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        for topic in stored {
            let mut log = TopicLog::new(topic.epoch, hub.log_limits(&topic.name));
            log.restore(&topic.name, topic.next_offset, topic.messages);
            topics.insert(topic.name.clone(), Arc::new(Topic::new(topic.name, log)));
        }
        drop(topics);
        Ok(hub)
    }

    fn build(config: HubConfig, writer: Option<Writer>) -> Hub {
        let epoch_base = random_epoch_base();
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
                durable_epoch: OnceLock::new(),
                epoch_base,
                epochs_issued: AtomicU64::new(0),
                retained_bytes: Arc::default(),
                budget_pass: Mutex::new(()),
            }),
        }
    }

    /// The bounds of topic `name`'s log.
    fn log_limits(&self, name: &TopicName) -> LogLimits {
        let config = &self.inner.config;
        LogLimits {
            retention: config.retention_for(name),
            max_lag_bytes: config.max_lag_bytes,
            max_bytes: config.max_topic_bytes,
            retained: Arc::clone(&self.inner.retained_bytes),
        }
    }

    /// Bytes every topic retains now, as the byte limits count them.
    pub fn retained_bytes(&self) -> usize {
        self.inner.retained_bytes.load(Ordering::Relaxed)
    }

    /// Housekeeping, to run every few seconds: drops messages past their age retention,
    /// brings the retained bytes under the budget, and lets go of idle topics (no
    /// subscriber, nothing retained, no message for `topic_idle`).
    pub fn upkeep(&self) -> Upkeep {
        let now = SystemTime::now();
        let expired = upkeep::drop_expired(&self.inner, now);
        upkeep::enforce_budget(&self.inner);
        let removed = upkeep::remove_idle(&self.inner, now, |name| self.is_durable(name));
        Upkeep { expired, removed }
    }

    /// The settings this hub was built with; they do not change while it runs.
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

    /// Publishes as [`Hub::publish_wait`] does, but returns as soon as the message is
    /// queued for its commit (at once for a topic that is not durable, where it is already
    /// published): the answer says when it is committed, or why not. Publishes submitted
    /// one after another are committed in that order, and share commits, so a connection
    /// that pipelines publishes to a durable topic is not held to one commit's round trip
    /// per message. Waits only while the store's queue is full.
    pub async fn publish_submit(
        &self,
        topic: &str,
        payload: Bytes,
    ) -> Result<PublishAnswer, PublishError> {
        let (name, payload) = self.check(topic, payload)?;
        self.submit_here(name, payload, Forward::Yes).await
    }

    /// Publishes a checked message: through the store when durable. With `Forward::Yes`
    /// it is also handed to the relay, in the order the topic's log took it.
    async fn publish_here(
        &self,
        name: &TopicName,
        payload: Bytes,
        forward: Forward,
    ) -> Result<Message, PublishError> {
        self.submit_here(name.clone(), payload, forward)
            .await?
            .await
    }

    /// Publishes a message that is not durable, or queues a durable one for its commit.
    async fn submit_here(
        &self,
        name: TopicName,
        payload: Bytes,
        forward: Forward,
    ) -> Result<PublishAnswer, PublishError> {
        match &self.inner.writer {
            Some(writer) if self.is_durable(&name) => {
                let topic = self.topic(&name)?;
                // A shared store is how other nodes see durable messages, with the same
                // offsets: the relay's copy would be a second, differently numbered one.
                let copy = (forward == Forward::Yes && !writer.shared()).then(|| payload.clone());
                let committed = writer.submit(topic, payload).await?;
                let hub = self.clone();
                Ok(PublishAnswer::committing(async move {
                    let message = committed.await?;
                    // After the commit: other nodes must not see what a crash could take
                    // back. Two publishers' answers may come back in either order, so a
                    // durable topic keeps each publisher's order across nodes, not the log's.
                    if let Some(copy) = copy {
                        hub.forward(&name, &copy, false);
                    }
                    Ok(message)
                }))
            }
            _ => Ok(PublishAnswer::ready(
                self.publish_checked(&name, payload, forward),
            )),
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
        if self.is_durable(&name) && self.inner.writer.as_ref().is_some_and(Writer::shared) {
            // Read from the shared store instead (a node of an older release relays it).
            return Ok(None);
        }
        let kept = self.exists(&name) || (!only_if_exists && self.subscribed_here(&name));
        if !kept {
            return Ok(None);
        }
        self.publish_here(&name, payload, Forward::No)
            .await
            .map(Some)
    }

    /// The writer, when durable topics live in a store other nodes share.
    fn shared_writer(&self) -> Option<&Writer> {
        self.inner.writer.as_ref().filter(|writer| writer.shared())
    }

    /// Other nodes committed messages to the durable topic `topic` of the shared store,
    /// up to offset `upto` (exclusive): reads them from the store into this node's log.
    /// A topic this node does not hold is made first when a subscription here wants it (a
    /// wildcard's new topic); otherwise it is left to the store until someone asks. Waits
    /// for room in the writer's queue, not for the reading.
    pub async fn catch_up(&self, topic: &str, upto: u64) {
        let Some(writer) = self.shared_writer() else {
            return;
        };
        let Ok(name) = TopicName::new(topic) else {
            return;
        };
        if !self.is_durable(&name) {
            return;
        }
        let existing = self
            .inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
            .cloned();
        let topic = match existing {
            Some(topic) => topic,
            None if self.subscribed_here(&name) => match self.topic(&name) {
                Ok(topic) => topic,
                Err(_) => return,
            },
            None => return,
        };
        let job = crate::durable::Job::CatchUp {
            topic,
            upto,
            done: None,
        };
        writer.request(job).await;
    }

    /// Brings every durable topic of this node up to date with the shared store: after
    /// this node may have missed notices (its connection to the others was down).
    pub async fn catch_up_all(&self) {
        let Some(writer) = self.shared_writer() else {
            return;
        };
        let hub = self.clone();
        let topics = Box::new(move |name: &TopicName| {
            hub.inner
                .topics
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .cloned()
        });
        writer
            .request(crate::durable::Job::CatchUpAll { topics })
            .await;
    }

    /// [`Hub::subscribe`], after making sure that a durable topic of a shared store that
    /// this node did not hold yet (another node made it since this one started), or held
    /// only up to before the position asked for, has what the store holds: then "now", an
    /// offset and `earliest` mean what they mean on every other node. Transports subscribe through this.
    pub async fn subscribe_ready(
        &self,
        pattern: &str,
        start: StartFrom,
        label: impl Into<Arc<str>>,
    ) -> Result<Subscription, SubscribeError> {
        if let (Some(writer), Ok(name)) = (self.shared_writer(), TopicName::new(pattern)) {
            // A resume from a position past what this node has read (another node committed
            // more, and this one has not caught up yet) would start at this node's end and
            // then deliver again, as they arrive, messages the client already had.
            let wanted = match &start {
                StartFrom::At(position) => Some(position.offset),
                StartFrom::Offset(offset) => Some(*offset),
                _ => None,
            };
            let behind = match self.next_offset(&name) {
                None => true, // not loaded here yet
                Some(next) => wanted.is_some_and(|offset| offset > next),
            };
            if self.is_durable(&name) && behind {
                if let Ok(topic) = self.topic(&name) {
                    let (done, loaded) = tokio::sync::oneshot::channel();
                    let job = crate::durable::Job::CatchUp {
                        topic,
                        upto: u64::MAX,
                        done: Some(done),
                    };
                    writer.request(job).await;
                    let _ = loaded.await;
                }
            }
        }
        self.subscribe(pattern, start, label)
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

    /// The offset the topic's next message will take here, if the topic exists here.
    fn next_offset(&self, name: &TopicName) -> Option<u64> {
        let topics = self.inner.topics.read().unwrap_or_else(|e| e.into_inner());
        topics.get(name).map(|topic| topic.log().next)
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
        let copy = (forward == Forward::Yes).then(|| payload.clone());
        loop {
            let topic = self.topic(name)?;
            let mut log = topic.log_mut();
            // Let go between the lookup and the lock: the next lookup makes it anew.
            if topic.is_removed() {
                continue;
            }
            let (message, waiters) = log.append(&topic.name, payload, SystemTime::now());
            if let Some(copy) = copy {
                // Under the log's lock, so that two publishers' messages leave for other
                // nodes in the order this node's log took them (forwarding never blocks).
                self.forward(name, &copy, false);
            }
            drop(log);
            for waiter in waiters {
                waiter.wake();
            }
            if self.inner.retained_bytes.load(Ordering::Relaxed)
                > self.inner.config.max_retained_bytes
            {
                upkeep::enforce_budget(&self.inner);
            }
            return Ok(message);
        }
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
            // Idle topics make room before a new one is refused.
            drop(topics);
            upkeep::remove_idle(&self.inner, SystemTime::now(), |name| self.is_durable(name));
            topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
            if let Some(topic) = topics.get(name) {
                return Ok(topic.clone());
            }
            if topics.len() >= self.inner.config.max_topics {
                return Err(PublishError::TooManyTopics(self.inner.config.max_topics));
            }
        }
        let epoch = match self.inner.durable_epoch.get() {
            // Every node of a shared store gives a durable topic the same epoch, without
            // asking the others.
            Some(&salt) if self.is_durable(name) => crate::durable::shared_epoch(salt, name),
            _ => self.inner.epoch_base + self.inner.epochs_issued.fetch_add(1, Ordering::Relaxed),
        };
        let topic = Arc::new(Topic::new(
            name.clone(),
            TopicLog::new(epoch, self.log_limits(name)),
        ));
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
        if pattern.is_wildcard()
            && matches!(
                start,
                StartFrom::Offset(_) | StartFrom::Last(_) | StartFrom::At(_)
            )
        {
            return Err(SubscribeError::OffsetWithWildcard(pattern.to_string()));
        }
        let slot = SubscriberSlot::take(&self.inner, &pattern)?;
        let mut subscription = Subscription::new(
            Arc::clone(&self.inner),
            pattern.is_wildcard(),
            label.into(),
            slot,
        );
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
            subscription.follow_new_topics(discovered);
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
