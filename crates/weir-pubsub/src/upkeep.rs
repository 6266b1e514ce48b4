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

/// Drops, in every topic, the messages older than the topic's age retention. A topic's
/// write lock (which holds up its readers) is taken only where something expired.
pub(crate) fn drop_expired(inner: &HubInner, now: SystemTime) -> usize {
    all_topics(inner)
        .iter()
        .filter(|topic| topic.log().has_expired(now))
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
    // Messages held only for subscribers catching up go before any topic's retention
    // (`false` sorts first), so that a burst on one topic cannot take a quiet topic's
    // last messages; within each kind, oldest first.
    let next_to_go = |log: &crate::log::TopicLog, index| {
        Some(Reverse((!log.oldest_is_surplus(), log.oldest_at()?, index)))
    };
    let mut oldest: BinaryHeap<Reverse<(bool, SystemTime, usize)>> = topics
        .iter()
        .enumerate()
        .filter_map(|(index, topic)| next_to_go(&topic.log(), index))
        .collect();
    let mut dropped = 0u64;
    while inner.retained_bytes.load(Ordering::Relaxed) > target {
        let Some(Reverse((_, _, index))) = oldest.pop() else {
            break;
        };
        let mut log = topics[index].log_mut();
        if log.evict_oldest() {
            dropped += 1;
        }
        if let Some(next) = next_to_go(&log, index) {
            oldest.push(next);
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
///
/// The candidates are found first under the map's read lock, so the pass over every topic
/// never holds up publishers; only the few candidates are checked again, and removed,
/// under the write lock.
pub(crate) fn remove_idle(
    inner: &HubInner,
    now: SystemTime,
    durable: impl Fn(&TopicName) -> bool,
) -> usize {
    let idle = inner.config.topic_idle;
    let forgettable = |name: &TopicName, topic: &Topic| {
        let log = topic.log();
        let last = log.newest_at().unwrap_or(topic.created).max(topic.created);
        log.held() == 0
            && now.duration_since(last).is_ok_and(|quiet| quiet >= idle)
            && !durable(name)
    };
    let candidates: Vec<TopicName> = inner
        .topics
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(name, topic)| forgettable(name, topic))
        .map(|(name, _)| name.clone())
        .collect();
    if candidates.is_empty() {
        return 0;
    }
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
    for name in candidates {
        let Some(topic) = topics.get(&name) else {
            continue;
        };
        let followed = patterns.iter().any(|pattern| pattern.matches(&name))
            || TopicPattern::new(name.as_str())
                .ok()
                .and_then(|exact| subscribers.get(&exact).copied())
                .is_some_and(|count| count > 0);
        if followed {
            continue;
        }
        // Under the log's write lock: a publisher that found the topic just before waits
        // here, then sees it marked and looks it up anew.
        let log = topic.log_mut();
        if log.held() > 0 {
            continue;
        }
        topic.mark_removed();
        drop(log);
        topics.remove(&name);
        removed += 1;
    }
    removed
}
