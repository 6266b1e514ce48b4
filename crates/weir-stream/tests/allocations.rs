//! Allocations are per stage, not per item: a concurrent map over 100,000 items allocates
//! about as much as one over 1,000.

#![allow(missing_docs)]

use std::num::NonZeroUsize;

use futures_lite::{future::block_on, stream, StreamExt};
use weir_stream::{merge_fair, WeirStreamExt};

/// The counter sees every thread's allocations: the tests take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn allocations(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

fn run_map(items: u64, ordered: bool) -> u64 {
    let limit = NonZeroUsize::new(256).unwrap();
    allocations(|| {
        block_on(async {
            let source = stream::iter(0..items);
            let sum: u64 = if ordered {
                source
                    .map_concurrent_ordered(limit, |x| async move { x })
                    .fold(0, |a, x| a + x)
                    .await
            } else {
                source
                    .map_concurrent(limit, |x| async move { x })
                    .fold(0, |a, x| a + x)
                    .await
            };
            assert_eq!(sum, items * (items - 1) / 2);
        })
    })
}

#[test]
fn concurrent_map_allocates_per_stage() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for ordered in [false, true] {
        // Warm-up: one-time, lazily initialised state of the executor's thread.
        run_map(10, ordered);
        let small = run_map(1_000, ordered);
        let large = run_map(100_000, ordered);
        // Setup: slots, wakers and bookkeeping for 256 futures (a few hundred allocations).
        assert!(
            small < 1_000,
            "ordered={ordered}: {small} allocations for 1,000 items"
        );
        assert_eq!(small, large, "ordered={ordered}: no allocation per item");
    }
}

#[test]
fn fair_merge_allocates_per_stage() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let run = |per_source: u32| {
        allocations(|| {
            block_on(async {
                let sources = (0..16).map(|_| stream::iter(0..per_source));
                assert_eq!(merge_fair(sources).count().await, 16 * per_source as usize);
            })
        })
    };
    run(1);
    assert_eq!(run(100), run(10_000), "no allocation per item");
}
