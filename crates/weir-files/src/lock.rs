//! Locking shared by the async program's workers (`run_async.rs`) and the files they split
//! (`split.rs`).
//!
//! Its own module so that both can use it without `split.rs` importing `run_async.rs`,
//! which imports `split.rs`: the modules of this crate import each other in no loop.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, poisoned or not: every value behind these locks is whole after any
/// single statement, so a worker's panic cannot leave one half-written.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
