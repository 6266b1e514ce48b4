//! One topic as the hub holds it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use crate::log::TopicLog;
use crate::TopicName;

/// A topic: its log behind a read-write lock, so that many subscribers read at once and
/// only an append excludes them.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: TopicName,
    pub(crate) log: RwLock<TopicLog>,
    /// When the hub made it: an idle topic is one whose newest message, or whose creation
    /// if it has none, is old enough.
    pub(crate) created: SystemTime,
    /// Set, under the log's write lock, when the hub let the topic go: a publisher that
    /// took it from the map just before appends to the new one instead (nothing accepted
    /// into a topic no one can reach).
    removed: AtomicBool,
}

impl Topic {
    pub(crate) fn new(name: TopicName, log: TopicLog) -> Topic {
        Topic {
            name,
            log: RwLock::new(log),
            created: SystemTime::now(),
            removed: AtomicBool::new(false),
        }
    }

    /// Whether the hub let this topic go (read under the log's lock).
    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Marks the topic as let go; the caller holds the log's write lock.
    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
    }

    pub(crate) fn log(&self) -> RwLockReadGuard<'_, TopicLog> {
        self.log.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn log_mut(&self) -> RwLockWriteGuard<'_, TopicLog> {
        self.log.write().unwrap_or_else(|e| e.into_inner())
    }
}
