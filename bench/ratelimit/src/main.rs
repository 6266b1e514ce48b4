//! Per-check cost of a keyed GCRA rate limiter: weir-client's `RateLimiter::try_acquire`
//! against governor's `check_key`, in the same process, on the same keys.
//!
//! Scenarios: one key allowed (the quota is far above the check rate), 1,000 keys
//! round-robin, one key denied (the quota is spent, so every check is a refusal), and two
//! threads on keys of their own. Prints nanoseconds per check and the ratio.
//!
//! Governor reads its clock with quanta (the CPU's time-stamp counter); weir-client reads
//! std's `Instant::now`, which tokio's paused time in tests also goes through. A third
//! column runs governor on std's clock too (`MonotonicClock`), so that the limiters' own
//! work can be told from the clocks'.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::MonotonicClock;
use governor::{Quota as GovernorQuota, RateLimiter as Governor};
use weir_client::{Quota, RateLimiter};

const CHECKS: usize = 5_000_000;

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("host-{i}.example:443")).collect()
}

/// Nanoseconds per check of `check` over `CHECKS` checks spread over `threads` threads,
/// each on its own keys.
fn measure(
    threads: usize,
    key_count: usize,
    check: Arc<dyn Fn(&String) -> bool + Send + Sync>,
) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let check = Arc::clone(&check);
            std::thread::spawn(move || {
                let keys: Vec<String> = keys(key_count)
                    .into_iter()
                    .map(|key| format!("{thread}/{key}"))
                    .collect();
                let mut allowed = 0usize;
                for i in 0..CHECKS / threads {
                    allowed += usize::from(check(black_box(&keys[i % keys.len()])));
                }
                allowed
            })
        })
        .collect();
    let allowed: usize = handles
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .sum();
    black_box(allowed);
    started.elapsed().as_nanos() as f64 / CHECKS as f64
}

fn weir(per_second: u32) -> Arc<dyn Fn(&String) -> bool + Send + Sync> {
    let limiter = RateLimiter::new(Some(Quota::per_second(per_second)));
    Arc::new(move |key: &String| limiter.try_acquire(key).is_ok())
}

fn governor(per_second: u32) -> Arc<dyn Fn(&String) -> bool + Send + Sync> {
    let limiter = Governor::keyed(GovernorQuota::per_second(
        NonZeroU32::new(per_second).unwrap(),
    ));
    Arc::new(move |key: &String| limiter.check_key(key).is_ok())
}

fn governor_std_clock(per_second: u32) -> Arc<dyn Fn(&String) -> bool + Send + Sync> {
    let quota = GovernorQuota::per_second(NonZeroU32::new(per_second).unwrap());
    let limiter = Governor::dashmap_with_clock(quota, MonotonicClock);
    Arc::new(move |key: &String| limiter.check_key(key).is_ok())
}

/// Nanoseconds per read of std's clock, the one weir-client uses.
fn std_clock_read() -> f64 {
    let started = Instant::now();
    let mut last = started;
    for _ in 0..CHECKS {
        last = black_box(Instant::now());
    }
    (last - started).as_nanos() as f64 / CHECKS as f64
}

fn main() {
    // Allowed: a quota far above the rate of checks. Denied: one per second, spent at once.
    let scenarios: [(&str, usize, usize, u32); 4] = [
        ("1 key, allowed", 1, 1, 1_000_000_000),
        ("1,000 keys, allowed", 1, 1000, 1_000_000_000),
        ("1 key, denied", 1, 1, 1),
        ("2 threads, 100 keys each", 2, 100, 1_000_000_000),
    ];
    println!(
        "{:<26} {:>8} {:>12} {:>7} {:>15} {:>7}",
        "scenario", "weir ns", "governor ns", "ratio", "gov std-clock ns", "ratio"
    );
    for (name, threads, key_count, per_second) in scenarios {
        // Best of three, each side fresh, alternating.
        let mut best = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..3 {
            best.0 = best.0.min(measure(threads, key_count, weir(per_second)));
            best.1 = best
                .1
                .min(measure(threads, key_count, governor(per_second)));
            best.2 = best
                .2
                .min(measure(threads, key_count, governor_std_clock(per_second)));
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "{name:<26} {:>8.1} {:>12.1} {:>6.2}x {:>15.1} {:>6.2}x",
            best.0,
            best.1,
            best.0 / best.1,
            best.2,
            best.0 / best.2
        );
    }
    println!("std clock read: {:.1} ns", std_clock_read());
    println!(
        "(ratio = weir's time / governor's; below 1 is faster; all are given the same String keys)"
    );
}
