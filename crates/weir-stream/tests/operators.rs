//! Operator behaviour over time, each test run on tokio and on smol.

#![allow(missing_docs)]

mod support;

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{stream, StreamExt};
use support::{elapsed_ms, pause, timed};
use weir_stream::{merge_fair, OverflowPolicy, Overflowed, Timer, WeirStreamExt};

fn n(value: usize) -> NonZeroUsize {
    NonZeroUsize::new(value).unwrap()
}

on_both_runtimes!(batch_by_size_or_time, |timer| {
    // Two items, then a pause longer than max_wait, then three more.
    let source = timed(timer, vec![(0, 1), (1, 2), (500, 3), (501, 4), (502, 5)]);
    let batches: Vec<Vec<u32>> = source
        .batch(n(3), Duration::from_millis(100), timer)
        .collect()
        .await;
    assert_eq!(batches, vec![vec![1, 2], vec![3, 4, 5]]);
});

on_both_runtimes!(batch_emits_on_time_not_on_next_item, |timer| {
    let start = timer.now();
    let source = timed(timer, vec![(0, 1), (1000, 2)]);
    let mut batches = std::pin::pin!(source.batch(n(10), Duration::from_millis(50), timer));
    assert_eq!(batches.next().await, Some(vec![1]));
    let at = elapsed_ms(&timer, start);
    assert!(
        (50..1000).contains(&at),
        "the first batch left after max_wait, not with item 2: {at} ms"
    );
    assert_eq!(batches.next().await, Some(vec![2]));
});

on_both_runtimes!(throttle_spaces_items, |timer| {
    let start = timer.now();
    let ten_per_second = NonZeroU32::new(10).unwrap();
    let mut throttled =
        std::pin::pin!(stream::iter(0..5).throttle(ten_per_second, Duration::from_secs(1), timer));
    let mut times = Vec::new();
    while throttled.next().await.is_some() {
        times.push(elapsed_ms(&timer, start));
    }
    assert_eq!(times.len(), 5);
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= 99, "items 100 ms apart: {times:?}");
    }
});

on_both_runtimes!(debounce_keeps_the_last_of_each_burst, |timer| {
    let source = timed(
        timer,
        vec![
            (0, 'a'),
            (10, 'b'),
            (20, 'c'),
            (400, 'd'),
            (410, 'e'),
            (900, 'f'),
        ],
    );
    let out: Vec<char> = source
        .debounce(Duration::from_millis(100), timer)
        .collect()
        .await;
    assert_eq!(out, vec!['c', 'e', 'f']);
});

on_both_runtimes!(sample_takes_the_latest_per_period, |timer| {
    let source = timed(
        timer,
        vec![(0, 1), (10, 2), (120, 3), (130, 4), (140, 5), (350, 6)],
    );
    let out: Vec<u32> = source
        .sample(Duration::from_millis(100), timer)
        .collect()
        .await;
    // Periods end at 100, 200, 300: 2, then 5, then nothing new; 6 when the source ends.
    assert_eq!(out, vec![2, 5, 6]);
});

on_both_runtimes!(timeout_each_reports_and_continues, |timer| {
    let source = timed(timer, vec![(10, 1), (300, 2)]);
    let out: Vec<Result<u32, _>> = source
        .timeout_each(Duration::from_millis(100), timer)
        .collect()
        .await;
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[0], Ok(1));
    assert!(out[1].is_err() && out[2].is_err());
    assert_eq!(out[3], Ok(2));
});

on_both_runtimes!(idle_timeout_ends_a_quiet_stream, |timer| {
    let source = timed(timer, vec![(10, 1), (20, 2), (1000, 3)]);
    let out: Vec<_> = source
        .idle_timeout(Duration::from_millis(200), timer)
        .collect()
        .await;
    assert_eq!(out.len(), 3);
    assert_eq!(out[..2], [Ok(1), Ok(2)]);
    assert!(out[2].is_err(), "item 3 never arrives");
});

on_both_runtimes!(take_until_stops_on_a_signal, |timer| {
    let stop = async move { pause(&timer, 150).await };
    let source = timed(timer, (0..10).map(|i| (i * 40, i)).collect());
    let out: Vec<u64> = source.take_until(stop).collect().await;
    assert_eq!(out, vec![0, 1, 2, 3]);
});

on_both_runtimes!(concurrency_never_exceeds_the_limit, |timer| {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let out: Vec<u64> = stream::iter(0..40u64)
        .map_concurrent(n(4), |i| {
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                pause(&timer, 5 + (i * 7) % 13).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                i
            }
        })
        .collect()
        .await;
    assert_eq!(out.len(), 40);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        4,
        "the limit is used and not exceeded"
    );
});

on_both_runtimes!(ordered_map_keeps_input_order_under_uneven_delays, |timer| {
    let out: Vec<u64> = stream::iter(0..30u64)
        .map_concurrent_ordered(n(5), |i| async move {
            pause(&timer, (30 - i) % 7 * 3).await;
            i
        })
        .collect()
        .await;
    assert_eq!(out, (0..30).collect::<Vec<_>>());
});

on_both_runtimes!(fair_merge_lets_no_source_starve, |timer| {
    let _ = timer;
    // An endless, always-ready source next to a finite one.
    let endless = stream::repeat(0u32).boxed();
    let finite = stream::iter(1..=100u32).boxed();
    let first: Vec<u32> = merge_fair(vec![endless, finite]).take(200).collect().await;
    let from_finite = first.iter().filter(|&&x| x > 0).count();
    assert_eq!(
        from_finite, 100,
        "every item of the finite source within 200 turns"
    );
});

on_both_runtimes!(buffer_backpressure_bounds_read_ahead, |timer| {
    let _ = timer;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counted = pulled.clone();
    let source = stream::iter(0..1000).inspect(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let mut buffered = source.buffer(n(8), OverflowPolicy::Backpressure);
    assert_eq!(buffered.next().await, Some(Ok(0)));
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        8,
        "read ahead stops at the capacity"
    );
    assert_eq!(buffered.queued(), 7);
});

on_both_runtimes!(buffer_fail_reports_the_overflow, |timer| {
    let _ = timer;
    let mut buffered = stream::iter(0..10).buffer(n(3), OverflowPolicy::Fail);
    assert_eq!(buffered.next().await, Some(Err(Overflowed { capacity: 3 })));
    assert_eq!(buffered.next().await, None);
});

on_both_runtimes!(fan_out_backpressure_waits_for_the_slowest, |timer| {
    let mut outs = stream::iter(0..60u32).fan_out(n(2), n(4), OverflowPolicy::Backpressure);
    let slow = outs.pop().unwrap();
    let fast = outs.pop().unwrap();
    let (slow_seen, fast_seen, lead) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let slow_run = {
        let (slow_seen, timer) = (slow_seen.clone(), timer);
        slow.then(move |item| {
            let slow_seen = slow_seen.clone();
            async move {
                pause(&timer, 3).await;
                slow_seen.fetch_add(1, Ordering::SeqCst);
                item
            }
        })
        .collect::<Vec<_>>()
    };
    let fast_run = {
        let (slow_seen, fast_seen, lead) = (slow_seen.clone(), fast_seen.clone(), lead.clone());
        fast.inspect(move |_| {
            let ahead =
                fast_seen.fetch_add(1, Ordering::SeqCst) + 1 - slow_seen.load(Ordering::SeqCst);
            lead.fetch_max(ahead, Ordering::SeqCst);
        })
        .collect::<Vec<_>>()
    };
    let (slow_items, fast_items) = futures_lite::future::zip(slow_run, fast_run).await;
    assert_eq!(slow_items.len(), 60, "nothing lost under backpressure");
    assert_eq!(fast_items.len(), 60);
    let lead = lead.load(Ordering::SeqCst);
    assert!(
        lead <= 6,
        "the fast consumer stays within its queue of the slow one: {lead} ahead"
    );
});

on_both_runtimes!(fan_out_drop_policy_keeps_the_fast_consumer_going, |timer| {
    let mut outs = stream::iter(0..100u32).fan_out(n(2), n(4), OverflowPolicy::DropOldest);
    let slow = outs.pop().unwrap();
    let fast = outs.pop().unwrap();
    let fast_items: Vec<_> = fast.collect().await;
    assert_eq!(fast_items.len(), 100, "the fast consumer gets everything");
    let drops = slow.drops();
    let slow_items: Vec<u32> = slow.map(Result::unwrap).collect().await;
    assert_eq!(
        slow_items,
        vec![96, 97, 98, 99],
        "the slow one keeps the newest"
    );
    assert_eq!(drops.get(), 96);
    let _ = timer;
});

on_both_runtimes!(fan_out_fail_disconnects_only_the_slow_consumer, |timer| {
    let mut outs = stream::iter(0..20u32).fan_out(n(2), n(4), OverflowPolicy::Fail);
    let slow = outs.pop().unwrap();
    let fast = outs.pop().unwrap();
    assert_eq!(fast.collect::<Vec<_>>().await.len(), 20);
    let slow_items: Vec<_> = slow.collect().await;
    assert_eq!(slow_items, vec![Err(Overflowed { capacity: 4 })]);
    let _ = timer;
});
