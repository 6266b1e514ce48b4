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
        if worth_logging(before, n) {
            tracing::warn!(
                dropped = before.saturating_add(n),
                why,
                "messages for other nodes dropped"
            );
        }
    }
}

/// Whether a count going from `before` up by `n` should be logged: at the first, then
/// whenever the total passes a power of two, so that something repeated under load (a
/// full queue, strangers knocking) logs a few lines, not one per event.
pub(crate) fn worth_logging(before: u64, n: u64) -> bool {
    before == 0 || before.saturating_add(n).next_power_of_two() != before.next_power_of_two()
}
