//! One topic as the hub holds it.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::log::TopicLog;
use crate::TopicName;

/// A topic: its log behind a read-write lock, so that many subscribers read at once and
/// only an append excludes them.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: TopicName,
    pub(crate) log: RwLock<TopicLog>,
}

impl Topic {
    pub(crate) fn log(&self) -> RwLockReadGuard<'_, TopicLog> {
        self.log.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn log_mut(&self) -> RwLockWriteGuard<'_, TopicLog> {
        self.log.write().unwrap_or_else(|e| e.into_inner())
    }
}
