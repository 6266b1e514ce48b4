//! The relay's counts since the node started, shared by its tasks (the PostgreSQL sender and
//! listener, each route's link and acceptor) and read by `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) lost: AtomicU64,
}

impl Counts {
    pub(crate) fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` dropped messages, logging at the first and then whenever the total
    /// passes a power of two (a full queue under load would otherwise log per message).
    pub(crate) fn dropped(&self, n: u64, why: &str) {
        if n == 0 {
            return;
        }
        let before = self.dropped.fetch_add(n, Ordering::Relaxed);
        let total = before.saturating_add(n);
        if before == 0 || total.next_power_of_two() != before.next_power_of_two() {
            tracing::warn!(dropped = total, why, "messages for other nodes dropped");
        }
    }
}
