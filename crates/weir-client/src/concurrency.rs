//! Per-key and global concurrency limits on tokio's semaphores, which queue waiters in
//! order (fair) and forget a waiter whose future is dropped (cancellable).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Per-key semaphores are dropped once this many exist and some are idle.
const PRUNE_AT: usize = 4096;

/// How many requests may be in flight per key and in all.
#[derive(Debug)]
pub struct ConcurrencyLimits {
    global: Option<Arc<Semaphore>>,
    per_key: Option<usize>,
    keys: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// The permits one request holds; dropping them lets the next waiter go.
#[derive(Debug)]
pub struct Permits {
    _key: Option<OwnedSemaphorePermit>,
    _global: Option<OwnedSemaphorePermit>,
}

impl ConcurrencyLimits {
    /// Limits of `per_key` requests per key and `global` in all (`None`: no limit).
    pub fn new(per_key: Option<usize>, global: Option<usize>) -> ConcurrencyLimits {
        ConcurrencyLimits {
            global: global.map(|n| Arc::new(Semaphore::new(n.max(1)))),
            per_key: per_key.map(|n| n.max(1)),
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn key_semaphore(&self, key: &str, limit: usize) -> Arc<Semaphore> {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(semaphore) = keys.get(key) {
            return Arc::clone(semaphore);
        }
        if keys.len() >= PRUNE_AT {
            // Only this map holds an idle key's semaphore: dropping it loses nothing.
            keys.retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
        }
        let semaphore = Arc::new(Semaphore::new(limit));
        keys.insert(key.to_owned(), Arc::clone(&semaphore));
        semaphore
    }

    /// Waits for a permit for `key`, then a global one. Holding nothing global while a
    /// busy key makes its requests wait keeps one slow host from starving the others.
    pub async fn acquire(&self, key: &str) -> Permits {
        let key_permit = match self.per_key {
            Some(limit) => {
                let semaphore = self.key_semaphore(key, limit);
                Some(
                    semaphore
                        .acquire_owned()
                        .await
                        .expect("limit semaphores are never closed"),
                )
            }
            None => None,
        };
        let global = match &self.global {
            Some(semaphore) => Some(
                Arc::clone(semaphore)
                    .acquire_owned()
                    .await
                    .expect("limit semaphores are never closed"),
            ),
            None => None,
        };
        Permits {
            _key: key_permit,
            _global: global,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_full_key_does_not_hold_global_permits() {
        let limits = Arc::new(ConcurrencyLimits::new(Some(1), Some(2)));
        let held = limits.acquire("busy").await;
        // A second request for the busy key waits without taking a global permit...
        let waiting = tokio::spawn({
            let limits = Arc::clone(&limits);
            async move { limits.acquire("busy").await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // ...so another key still gets the second global permit at once.
        let other = tokio::time::timeout(Duration::from_secs(1), limits.acquire("other")).await;
        assert!(other.is_ok());
        drop(held);
        drop(other);
        assert!(tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_gives_its_place_up() {
        let limits = Arc::new(ConcurrencyLimits::new(Some(1), None));
        let held = limits.acquire("k").await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), limits.acquire("k")).await;
        assert!(gave_up.is_err());
        drop(held);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), limits.acquire("k"))
                .await
                .is_ok()
        );
    }
}
