//! A subscription: cursors into topics' logs, read at the subscriber's pace.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures_core::Stream;

use crate::log::{ReadAt, SubWaker};
use crate::state::{Discovered, HubInner, LagStats};
use crate::topic::Topic;
use crate::{
    Event, Position, SlowSubscriberPolicy, StartFrom, SubscribeError, TopicName, TopicPattern,
};

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
    hub: Arc<HubInner>,
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
pub(crate) struct SubscriberSlot {
    hub: Weak<HubInner>,
    pattern: TopicPattern,
}

impl SubscriberSlot {
    pub(crate) fn take(
        hub: &Arc<HubInner>,
        pattern: &TopicPattern,
    ) -> Result<SubscriberSlot, SubscribeError> {
        let limit = hub.config.max_subscribers_per_topic;
        let mut counts = hub.subscribers.lock().unwrap_or_else(|e| e.into_inner());
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
            hub.interest_version.send_modify(|version| *version += 1);
        }
        Ok(SubscriberSlot {
            hub: Arc::downgrade(hub),
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
    /// A subscription with no topic yet: [`Subscription::track`] adds them.
    pub(crate) fn new(
        hub: Arc<HubInner>,
        wildcard: bool,
        label: Arc<str>,
        slot: SubscriberSlot,
    ) -> Subscription {
        Subscription {
            hub,
            cursors: Vec::new(),
            // Only a wildcard subscription can meet a topic twice (found by the scan and
            // handed over as new); a single-topic one needs no set.
            tracked: wildcard.then(Box::default),
            discovered: None,
            pending: VecDeque::new(),
            turn: 0,
            label,
            stats: None,
            ended: false,
            _slot: slot,
        }
    }

    /// From now on, takes up the topics the hub pushes to `discovered` (a wildcard's new
    /// matches).
    pub(crate) fn follow_new_topics(&mut self, discovered: Arc<Discovered>) {
        self.discovered = Some(discovered);
    }

    pub(crate) fn track(&mut self, topic: Arc<Topic>, start: StartFrom, now: SystemTime) {
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
            StartFrom::At(position) if position.epoch != log.epoch => {
                let from = log.replay_start(now);
                self.pending.push_back(Event::Reset {
                    topic: topic.name.clone(),
                    previous_epoch: position.epoch,
                    epoch: log.epoch,
                    from,
                });
                from
            }
            StartFrom::Offset(offset) | StartFrom::At(Position { offset, .. }) => {
                let retained = log.resume_start(now);
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
        let policy = self.hub.config.slow_policy;
        let cursor = &mut self.cursors[index];
        let log = cursor.topic.log();
        // Lag is counted in bytes: a subscriber that keeps reading is within it however
        // many small messages a burst brings (the log holds them for it), and one that
        // stopped reading reaches it.
        if log.too_far_behind(cursor.next) {
            let keep_from = log.catch_up_point().max(cursor.next);
            let missed = keep_from - cursor.next;
            let behind = log.bytes_behind(cursor.next);
            let limit = log.max_lag_bytes();
            let stats = self.stats.get_or_insert_with(|| {
                let stats = Arc::new(LagStats::default());
                self.hub
                    .slow
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((self.label.clone(), Arc::downgrade(&stats)));
                stats
            });
            stats.missed.fetch_add(missed, Ordering::Relaxed);
            stats.times.fetch_add(1, Ordering::Relaxed);
            let topic = cursor.topic.name.clone();
            tracing::warn!(%topic, missed, ?behind, limit, ?policy, "subscriber fell behind the lag limit");
            return Some(match policy {
                SlowSubscriberPolicy::DropOldest => {
                    cursor.next = keep_from;
                    Event::Lagged { topic, missed }
                }
                SlowSubscriberPolicy::Disconnect => {
                    self.ended = true;
                    let how_far = match behind {
                        Some(bytes) => format!("{bytes} bytes behind"),
                        None => format!("{missed} messages behind, past what the hub holds,"),
                    };
                    Event::Disconnected {
                        reason: format!(
                            "{how_far} on {topic}, past the lag limit of {limit} bytes (pubsub.max_lag_bytes)"
                        ),
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
