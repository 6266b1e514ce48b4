//! A keyed rate limiter on GCRA (the generic cell rate algorithm).
//!
//! Each key keeps one number, its theoretical arrival time (TAT): the time at which the key
//! would be exactly "caught up" if requests had come at the quota's pace. A request may go
//! when `now >= TAT - (burst - 1) × interval`, and going moves TAT one interval on. Waiting
//! is a *reservation*: the caller takes the next free slot at once and sleeps until it, so
//! waiters are served in the order they asked (fair) and the observed rate is exact however
//! late each sleeper wakes. A caller that gives up before its slot hands the slot back when
//! no later slot was taken after it (otherwise the slot stays unused: the limit errs on the
//! polite side).

use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hashbrown::HashTable;
use tokio::time::Instant;

/// A rate: one request per `interval`, with up to `burst` at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    interval: Duration,
    burst: u32,
    /// `interval` and `interval × (burst - 1)` in nanoseconds, worked out once: a check
    /// does its arithmetic on plain integers (see [`Nanos`]).
    interval_nanos: Nanos,
    tolerance_nanos: Nanos,
}

/// A time as nanoseconds since a limiter's epoch, or a span of time in nanoseconds.
/// `u64` lasts 584 years, and one add or compare of it is cheaper than `Duration`'s
/// seconds-and-nanoseconds pair.
type Nanos = u64;

fn nanos(span: Duration) -> Nanos {
    Nanos::try_from(span.as_nanos()).unwrap_or(Nanos::MAX)
}

impl Quota {
    /// `n` requests per second (`n` ≥ 1), burst 1.
    pub fn per_second(n: u32) -> Quota {
        Quota::every(Duration::from_secs(1) / n.max(1))
    }

    /// One request per `interval` (a crawl delay), burst 1. A zero interval means no limit.
    pub fn every(interval: Duration) -> Quota {
        Quota::new(interval, 1)
    }

    /// The same rate, letting up to `burst` requests go at once after a quiet spell.
    pub fn with_burst(self, burst: u32) -> Quota {
        Quota::new(self.interval, burst.max(1))
    }

    fn new(interval: Duration, burst: u32) -> Quota {
        let interval_nanos = nanos(interval);
        Quota {
            interval,
            burst,
            interval_nanos,
            tolerance_nanos: interval_nanos.saturating_mul(u64::from(burst - 1)),
        }
    }

    /// Time between two requests at the steady rate.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Requests allowed at once after a quiet spell.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

/// Parses `N/s`, `N/m` or `N/h`, optionally followed by `:BURST` (`10/s`, `600/m:20`).
impl FromStr for Quota {
    type Err = String;

    fn from_str(text: &str) -> Result<Quota, String> {
        let (rate, burst) = match text.split_once(':') {
            Some((rate, burst)) => {
                let burst: u32 = burst
                    .trim()
                    .parse()
                    .ok()
                    .filter(|b| *b >= 1)
                    .ok_or_else(|| format!("burst `{burst}` is not a whole number ≥ 1"))?;
                (rate, burst)
            }
            None => (text, 1),
        };
        let (count, unit) = rate
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a rate like 10/s, 600/m or 100/h"))?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("`{count}` is not a whole number ≥ 1"))?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => return Err(format!("unit `{other}` is not s, m or h")),
        };
        Ok(Quota::every(per / count).with_burst(burst))
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1 per {:?}", self.interval)?;
        if self.burst > 1 {
            write!(f, ", burst {}", self.burst)?;
        }
        Ok(())
    }
}

/// Keys are pruned once this many are tracked in a shard: a key whose TAT has passed and
/// that has no quota of its own carries no information (it behaves exactly like a new
/// key), so memory is bounded by the keys that are busy right now.
const PRUNE_AT: usize = 256;

/// Shards of the key table, each behind its own lock, so threads checking different keys
/// rarely wait for each other.
const SHARDS: usize = 16;

/// A keyed GCRA limiter. Keys with no quota of their own use the default quota, or have
/// no limit when there is none (they can still be paused with [`RateLimiter::defer`]).
///
/// A check costs one clock read, one lock and one hash of the key (foldhash, seeded per
/// process, so keys cannot be crafted to collide), whose bits pick both the shard and the
/// key's place in the shard's table; the arithmetic is on integer nanoseconds. The clock is
/// std's (through `tokio::time::Instant`, so tests can pause it): its read is more than
/// half of a check's time, and it is why governor, which reads the CPU's time-stamp
/// counter, checks faster (`bench/ratelimit`, docs/benchmarks.md).
#[derive(Debug)]
pub struct RateLimiter {
    epoch: Instant,
    default: Option<Quota>,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Debug, Default)]
struct Shard {
    keys: HashTable<KeyState>,
    prune_at: usize,
}

/// What the limiter knows of one key.
#[derive(Debug)]
struct KeyState {
    key: Box<str>,
    /// The key's hash, kept so that growing the table does not hash every key again.
    hash: u64,
    /// Theoretical arrival time (module doc), in nanoseconds since the epoch; for a key
    /// without a quota, the end of a pause set by [`RateLimiter::defer`].
    tat: Nanos,
    /// The key's own quota, if it has one.
    quota: Option<Quota>,
}

/// A key's shard, locked, and the key's hash.
struct Locked<'a> {
    shard: MutexGuard<'a, Shard>,
    hash: u64,
}

impl Locked<'_> {
    fn get_mut(&mut self, key: &str) -> Option<&mut KeyState> {
        self.shard
            .keys
            .find_mut(self.hash, |state| &*state.key == key)
    }

    /// Runs `f` on `key`'s state, adding the key (after pruning, when due) if it is new. A
    /// known key is looked up once and allocates nothing.
    fn update<R>(&mut self, key: &str, now: Nanos, f: impl FnOnce(&mut KeyState) -> R) -> R {
        let hash = self.hash;
        if let Some(state) = self.get_mut(key) {
            return f(state);
        }
        let shard = &mut *self.shard;
        if shard.keys.len() >= shard.prune_at.max(PRUNE_AT) {
            shard
                .keys
                .retain(|state| state.tat > now || state.quota.is_some());
            shard.prune_at = shard.keys.len() * 2;
        }
        let mut state = KeyState {
            key: key.into(),
            hash,
            tat: 0,
            quota: None,
        };
        let result = f(&mut state);
        shard.keys.insert_unique(hash, state, |state| state.hash);
        result
    }
}

impl RateLimiter {
    /// A limiter applying `default` to every key without a quota of its own.
    pub fn new(default: Option<Quota>) -> RateLimiter {
        RateLimiter {
            epoch: Instant::now(),
            default,
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    fn lock(&self, key: &str) -> Locked<'_> {
        let hash = self.hasher.hash_one(key);
        // The table places a key by the hash's low bits and tells keys apart within a
        // group by its top seven; the shard takes bits from neither, so a shard's keys
        // still spread over its whole table.
        let index = (hash >> 32) as usize % SHARDS;
        // A shard is a few numbers per key updated in one step; a panic elsewhere cannot
        // leave it half-written, so a poisoned lock is still good.
        let shard = self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Locked { shard, hash }
    }

    fn since_epoch(&self, at: Instant) -> Nanos {
        nanos(at.saturating_duration_since(self.epoch))
    }

    fn at(&self, since_epoch: Nanos) -> Instant {
        self.epoch + Duration::from_nanos(since_epoch)
    }

    /// Gives `key` its own quota (a crawl delay from robots.txt, a configured API limit).
    pub fn set_quota(&self, key: &str, quota: Quota) {
        let now = self.since_epoch(Instant::now());
        self.lock(key)
            .update(key, now, |state| state.quota = Some(quota));
    }

    /// The quota that applies to `key`.
    pub fn quota(&self, key: &str) -> Option<Quota> {
        self.lock(key)
            .get_mut(key)
            .and_then(|state| state.quota)
            .or(self.default)
    }

    /// Takes the next free slot for `key`. The caller may go at [`Slot::at`]; use
    /// [`RateLimiter::acquire`] to wait for it.
    pub fn reserve(self: &Arc<Self>, key: &str) -> Slot {
        let now = self.since_epoch(Instant::now());
        let default = self.default;
        let taken = self.lock(key).update(key, now, |state| {
            let tat = state.tat.max(now);
            match state.quota.or(default) {
                None => (tat, None),
                Some(quota) => {
                    let go_at = tat.saturating_sub(quota.tolerance_nanos).max(now);
                    state.tat = tat + quota.interval_nanos;
                    (go_at, Some((state.tat, quota.interval_nanos)))
                }
            }
        });
        match taken {
            (paused_until, None) => Slot::free(self.at(paused_until)),
            (go_at, Some((tat, interval))) => Slot {
                limiter: Some(Arc::clone(self)),
                key: key.to_owned(),
                at: self.at(go_at),
                tat,
                interval,
            },
        }
    }

    /// Waits for `key`'s next slot. Cancel-safe: dropping the future gives the slot back
    /// when no later one was taken.
    pub async fn acquire(self: &Arc<Self>, key: &str) {
        let slot = self.reserve(key);
        tokio::time::sleep_until(slot.at).await;
        slot.consume();
    }

    /// Takes a slot for `key` only if it is free now; otherwise says when the next one is.
    pub fn try_acquire(&self, key: &str) -> Result<(), Instant> {
        let now = self.since_epoch(Instant::now());
        let default = self.default;
        self.lock(key)
            .update(key, now, |state| {
                let tat = state.tat.max(now);
                let Some(quota) = state.quota.or(default) else {
                    return if tat > now { Err(tat) } else { Ok(()) };
                };
                let go_at = tat.saturating_sub(quota.tolerance_nanos);
                if go_at > now {
                    return Err(go_at);
                }
                state.tat = tat + quota.interval_nanos;
                Ok(())
            })
            .map_err(|at| self.at(at))
    }

    /// Lets nothing through for `key` before `until` (a `Retry-After`, a backoff after 429
    /// or 503). Later slots keep their spacing after it.
    pub fn defer(&self, key: &str, until: Instant) {
        let until = self.since_epoch(until);
        let now = self.since_epoch(Instant::now());
        let default = self.default;
        self.lock(key).update(key, now, |state| {
            let tolerance = state.quota.or(default).map_or(0, |q| q.tolerance_nanos);
            state.tat = state.tat.max(until.saturating_add(tolerance));
        });
    }
}

/// A reserved rate-limit slot: the holder may send at [`Slot::at`]. Dropped unused, it is
/// handed back when it is still the key's last.
#[derive(Debug)]
#[must_use = "a slot is given back when dropped"]
pub struct Slot {
    limiter: Option<Arc<RateLimiter>>,
    key: String,
    at: Instant,
    tat: Nanos,
    interval: Nanos,
}

impl Slot {
    fn free(at: Instant) -> Slot {
        Slot {
            limiter: None,
            key: String::new(),
            at,
            tat: 0,
            interval: 0,
        }
    }

    /// When the holder may send.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// Marks the slot used: it will not be given back.
    pub fn consume(mut self) {
        self.limiter = None;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(limiter) = self.limiter.take() else {
            return;
        };
        let mut locked = limiter.lock(&self.key);
        if let Some(state) = locked.get_mut(&self.key) {
            if state.tat == self.tat {
                state.tat -= self.interval;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_with_units_and_bursts() {
        assert_eq!(
            "10/s".parse::<Quota>().unwrap(),
            Quota::every(Duration::from_millis(100))
        );
        assert_eq!(
            "2/m:5".parse::<Quota>().unwrap(),
            Quota::every(Duration::from_secs(30)).with_burst(5)
        );
        assert!("0/s".parse::<Quota>().is_err());
        assert!("10/d".parse::<Quota>().is_err());
        assert!("10".parse::<Quota>().is_err());
        assert!("10/s:0".parse::<Quota>().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_pruned_and_busy_or_configured_ones_kept() {
        let limiter = RateLimiter::new(Some(Quota::per_second(10)));
        let tracked = |limiter: &RateLimiter| -> usize {
            limiter
                .shards
                .iter()
                .map(|shard| shard.lock().unwrap().keys.len())
                .sum()
        };
        limiter.set_quota("configured", Quota::per_second(1));
        for n in 0..10_000 {
            assert!(limiter.try_acquire(&format!("old-{n}")).is_ok());
        }
        // Their slots have passed: nothing is lost by forgetting them.
        tokio::time::advance(Duration::from_secs(1)).await;
        for n in 0..10_000 {
            assert!(limiter.try_acquire(&format!("new-{n}")).is_ok());
        }
        // Every shard pruned its old keys when it grew past its mark; what is left is at most
        // the new (still busy) keys plus a shard's worth of old ones each.
        assert!(
            tracked(&limiter) < 10_000 + SHARDS * PRUNE_AT,
            "{} keys tracked",
            tracked(&limiter)
        );
        assert_eq!(limiter.quota("configured"), Some(Quota::per_second(1)));
        // A busy key is never forgotten: its next slot still waits.
        assert!(limiter.try_acquire("new-9999").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_spaced_by_the_interval_after_the_burst() {
        let limiter = Arc::new(RateLimiter::new(Some(Quota::per_second(10).with_burst(3))));
        let start = Instant::now();
        let slots: Vec<Slot> = (0..5).map(|_| limiter.reserve("a")).collect();
        let at: Vec<Duration> = slots.iter().map(|slot| slot.at() - start).collect();
        assert_eq!(at, [0, 0, 0, 100, 200].map(Duration::from_millis));
        // Another key has its own budget.
        assert_eq!(limiter.reserve("b").at(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_reservation_gives_its_slot_back_only_when_last() {
        let limiter = Arc::new(RateLimiter::new(Some(Quota::per_second(10))));
        limiter.acquire("a").await;
        let first = limiter.reserve("a");
        let second = limiter.reserve("a");
        assert_eq!(second.at() - first.at(), Duration::from_millis(100));
        drop(first); // not the last: its slot stays taken
        drop(second); // the last: given back
        let next = limiter.reserve("a");
        assert_eq!(next.at() - Instant::now(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_says_when_and_defer_pauses_even_unlimited_keys() {
        let limiter = Arc::new(RateLimiter::new(None));
        assert!(limiter.try_acquire("free").is_ok());
        let until = Instant::now() + Duration::from_secs(3);
        limiter.defer("free", until);
        assert_eq!(limiter.try_acquire("free"), Err(until));
        assert_eq!(limiter.reserve("free").at(), until);
        limiter.set_quota("slow", Quota::every(Duration::from_secs(2)));
        assert!(limiter.try_acquire("slow").is_ok());
        assert_eq!(
            limiter.try_acquire("slow"),
            Err(Instant::now() + Duration::from_secs(2))
        );
    }
}
