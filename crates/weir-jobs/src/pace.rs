//! How many jobs a worker leases: enough for its free slots, plus, when its jobs are short,
//! some ahead of them.
//!
//! A worker that leases only for its free slots idles them for a lease's round trip each
//! time, and its leases and completions carry few jobs each (on the embedded store most of
//! the server's time goes to such small transactions). Jobs leased ahead wait in the
//! worker, their leases kept by heartbeats, and cannot run elsewhere meanwhile: so the
//! worker leases ahead only as many as its slots should start within a short time
//! (`within`), estimated from how long its jobs have been running (a moving average), and
//! never more than `max_ahead`. Short jobs get a deep queue; long ones hardly any (with
//! 24 slots and 100 ms, two for jobs of a second, none for jobs of three seconds or more).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Most jobs one lease request asks for: the protocol's limit (docs/workers.md).
const MAX_LEASE: usize = crate::protocol::MAX_LEASE as usize;

/// The worker's jobs in hand and their pace.
#[derive(Debug)]
pub struct Pace {
    concurrency: usize,
    max_ahead: usize,
    within: Option<Duration>,
    /// Jobs leased and not yet reported (queued, running or being reported).
    held: AtomicUsize,
    /// Moving average of the jobs' run time, in nanoseconds; 0 until a job has run.
    mean_run_nanos: AtomicU64,
    /// Signalled when a job lets go of its place.
    freed: Notify,
}

impl Pace {
    /// Pace for `concurrency` slots, leasing up to `max_ahead` jobs more when they should
    /// start within `within` (`None`: always `max_ahead` more).
    pub fn new(concurrency: usize, max_ahead: usize, within: Option<Duration>) -> Pace {
        Pace {
            concurrency: concurrency.max(1),
            max_ahead,
            within,
            held: AtomicUsize::new(0),
            mean_run_nanos: AtomicU64::new(0),
            freed: Notify::new(),
        }
    }

    /// Jobs to lease ahead of the slots now.
    pub fn ahead(&self) -> usize {
        let Some(within) = self.within else {
            return self.max_ahead;
        };
        match self.mean_run_nanos.load(Ordering::Relaxed) {
            // Nothing has run yet: no reason to think jobs are short.
            0 => 0,
            mean => {
                // The slots start `concurrency` jobs per mean run time.
                let starts = self.concurrency as u128 * within.as_nanos() / u128::from(mean);
                starts.min(self.max_ahead as u128) as usize
            }
        }
    }

    /// Jobs a lease may ask for now (0: none).
    pub fn room(&self) -> usize {
        self.concurrency
            .saturating_add(self.ahead())
            .saturating_sub(self.held.load(Ordering::Relaxed))
            .min(MAX_LEASE)
    }

    /// Waits until there is room, and says how much.
    pub async fn wait_for_room(&self) -> usize {
        loop {
            // Registered before the look, so a job freed between the two is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let room = self.room();
            if room > 0 {
                return room;
            }
            freed.await;
        }
    }

    /// Counts one more job in hand until the guard is dropped (however the job's task
    /// ends: reported, released, abandoned or panicked).
    pub fn hold(self: &Arc<Self>) -> Held {
        self.held.fetch_add(1, Ordering::Relaxed);
        Held(Arc::clone(self))
    }

    /// Records a job's run time (an average over about the last eight jobs).
    pub fn ran(&self, took: Duration) {
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .mean_run_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
                Some(if mean == 0 {
                    took
                } else {
                    mean - mean / 8 + took / 8
                })
            });
    }
}

/// A job's place in the worker's count; dropping it gives the place up and wakes the wait
/// for room.
#[derive(Debug)]
pub struct Held(Arc<Pace>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
        self.0.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WITHIN: Option<Duration> = Some(Duration::from_millis(100));

    #[test]
    fn nothing_ahead_until_a_job_has_run_then_as_many_as_start_within_the_time() {
        let pace = Pace::new(10, 50, WITHIN);
        assert_eq!(pace.ahead(), 0);
        assert_eq!(pace.room(), 10);
        // 10 slots, 50 ms jobs: 20 start in 100 ms.
        pace.ran(Duration::from_millis(50));
        assert_eq!(pace.ahead(), 20);
        assert_eq!(pace.room(), 30);
        // Jobs of a second: fewer than one starts in 100 ms.
        let slow = Pace::new(10, 50, WITHIN);
        slow.ran(Duration::from_secs(1));
        assert_eq!(slow.ahead(), 1);
        slow.ran(Duration::from_secs(30));
        assert_eq!(slow.ahead(), 0);
        // Short jobs: capped.
        let fast = Pace::new(10, 50, WITHIN);
        fast.ran(Duration::from_micros(10));
        assert_eq!(fast.ahead(), 50);
    }

    #[test]
    fn the_average_follows_the_recent_jobs() {
        let pace = Pace::new(1, 1_000, Some(Duration::from_secs(1)));
        pace.ran(Duration::from_millis(10));
        assert_eq!(pace.ahead(), 100);
        for _ in 0..40 {
            pace.ran(Duration::from_millis(500));
        }
        assert_eq!(pace.ahead(), 2, "about 500 ms now");
    }

    #[test]
    fn without_a_time_the_most_ahead_always() {
        let pace = Pace::new(4, 8, None);
        assert_eq!(pace.ahead(), 8);
        assert_eq!(pace.room(), 12);
    }

    #[test]
    fn room_counts_the_jobs_in_hand_and_a_lease_asks_for_at_most_a_hundred() {
        let pace = Arc::new(Pace::new(500, 0, None));
        assert_eq!(pace.room(), MAX_LEASE);
        let mut held: Vec<Held> = (0..450).map(|_| pace.hold()).collect();
        assert_eq!(pace.room(), 50);
        held.extend((0..50).map(|_| pace.hold()));
        assert_eq!(pace.room(), 0);
        held.pop();
        assert_eq!(pace.room(), 1);
    }

    #[tokio::test]
    async fn a_job_let_go_wakes_the_wait_for_room() {
        let pace = Arc::new(Pace::new(2, 0, None));
        let (first, _second) = (pace.hold(), pace.hold());
        let waiting = tokio::spawn({
            let pace = Arc::clone(&pace);
            async move { pace.wait_for_room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        let room = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(room, 1);
    }
}
