//! What keeps the hub's memory bounded over time: messages past their age go, the retained
//! bytes stay under the budget (oldest messages of all topics first), and idle topics are
//! let go so that names a client chose once do not hold `max_topics` slots for good.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use crate::state::HubInner;
use crate::topic::Topic;
use crate::{TopicName, TopicPattern};

/// What one round of [`Hub::upkeep`](crate::Hub::upkeep) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upkeep {
    /// Messages dropped for their age.
    pub expired: usize,
    /// Idle topics let go.
    pub removed: usize,
}

fn all_topics(inner: &HubInner) -> Vec<Arc<Topic>> {
    inner
        .topics
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect()
}

/// Drops, in every topic, the messages older than the topic's age retention.
pub(crate) fn drop_expired(inner: &HubInner, now: SystemTime) -> usize {
    all_topics(inner)
        .iter()
        .map(|topic| topic.log_mut().drop_expired(now))
        .sum()
}

/// When the topics retain more bytes than the budget, drops the oldest messages of all
/// topics until they hold nine tenths of it: each pass then frees a tenth of the budget,
/// so passes stay rare however fast messages arrive. One pass at a time.
pub(crate) fn enforce_budget(inner: &HubInner) {
    let budget = inner.config.max_retained_bytes;
    if inner.retained_bytes.load(Ordering::Relaxed) <= budget {
        return;
    }
    let Ok(_pass) = inner.budget_pass.try_lock() else {
        return; // another publisher is freeing the same bytes
    };
    let target = budget - budget / 10;
    let topics = all_topics(inner);
    let mut oldest: BinaryHeap<Reverse<(SystemTime, usize)>> = topics
        .iter()
        .enumerate()
        .filter_map(|(index, topic)| Some(Reverse((topic.log().oldest_at()?, index))))
        .collect();
    let mut dropped = 0u64;
    while inner.retained_bytes.load(Ordering::Relaxed) > target {
        let Some(Reverse((_, index))) = oldest.pop() else {
            break;
        };
        let mut log = topics[index].log_mut();
        if log.evict_oldest() {
            dropped += 1;
        }
        if let Some(at) = log.oldest_at() {
            oldest.push(Reverse((at, index)));
        }
    }
    tracing::warn!(
        dropped,
        budget,
        "retained messages over pubsub.max_retained_bytes: the oldest were dropped"
    );
}

/// Lets go of the topics that have no subscriber (by name or by a live pattern), retain
/// nothing, are not durable, and had no message for `topic_idle`. Returns how many.
pub(crate) fn remove_idle(
    inner: &HubInner,
    now: SystemTime,
    durable: impl Fn(&TopicName) -> bool,
) -> usize {
    let idle = inner.config.topic_idle;
    // Lock order as everywhere: the map, then a log; subscribing counts itself before it
    // looks the topic up, so a subscriber is either counted here or finds the map after.
    let mut topics = inner.topics.write().unwrap_or_else(|e| e.into_inner());
    let subscribers = inner.subscribers.lock().unwrap_or_else(|e| e.into_inner());
    let patterns: Vec<TopicPattern> = inner
        .patterns
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(_, discovered)| discovered.strong_count() > 0)
        .map(|(pattern, _)| pattern.clone())
        .collect();
    let mut removed = 0;
    topics.retain(|name, topic| {
        if durable(name) || patterns.iter().any(|pattern| pattern.matches(name)) {
            return true;
        }
        let followed = TopicPattern::new(name.as_str())
            .ok()
            .and_then(|exact| subscribers.get(&exact).copied())
            .unwrap_or(0);
        if followed > 0 {
            return true;
        }
        let log = topic.log_mut();
        let last = log.newest_at().unwrap_or(topic.created).max(topic.created);
        let quiet = now.duration_since(last).is_ok_and(|quiet| quiet >= idle);
        if log.held() > 0 || !quiet {
            return true;
        }
        topic.mark_removed();
        removed += 1;
        false
    });
    removed
}
