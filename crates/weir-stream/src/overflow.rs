//! What a bounded queue does when it is full, and how drops are counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The policy of a bounded queue that is full when an item arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Stop taking items until there is room: the producer is slowed down. Nothing is lost.
    Backpressure,
    /// Drop the oldest queued item to make room: consumers see the newest data.
    DropOldest,
    /// Drop the arriving item: consumers see the oldest data.
    DropNewest,
    /// End the stream with [`Overflowed`]: for pipelines where a loss must stop the run.
    Fail,
}

/// The error a [`OverflowPolicy::Fail`] queue ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflowed {
    /// The capacity that was exceeded.
    pub capacity: usize,
}

impl std::fmt::Display for Overflowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "queue of capacity {} overflowed", self.capacity)
    }
}

impl std::error::Error for Overflowed {}

/// A shared count of dropped items, readable while the stream runs (for metrics).
#[derive(Debug, Clone, Default)]
pub struct DropCounter(Arc<AtomicU64>);

impl DropCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Items dropped so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}
