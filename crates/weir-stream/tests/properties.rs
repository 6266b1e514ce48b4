//! Property tests: orderings, overflow policies and windows, over generated inputs.

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use futures_lite::{future::block_on, stream, StreamExt};
use proptest::prelude::*;
use weir_stream::{merge_fair, Firing, OverflowPolicy, WeirStreamExt, WindowEvent, WindowSpec};

fn is_subsequence(sub: &[u32], of: &[u32]) -> bool {
    let mut rest = of.iter();
    sub.iter().all(|x| rest.any(|y| y == x))
}

proptest! {
    #[test]
    fn buffer_policies_keep_order_and_count_drops(input in prop::collection::vec(any::<u32>(), 0..300), cap in 1usize..20) {
        let capacity = NonZeroUsize::new(cap).unwrap();
        for policy in [OverflowPolicy::Backpressure, OverflowPolicy::DropOldest, OverflowPolicy::DropNewest] {
            let buffered = stream::iter(input.clone()).buffer(capacity, policy);
            let drops = buffered.drops();
            let out: Vec<u32> = block_on(buffered.map(Result::unwrap).collect());
            prop_assert!(is_subsequence(&out, &input), "{policy:?}: order kept");
            prop_assert_eq!(out.len() as u64 + drops.get(), input.len() as u64, "{:?}: every item delivered or counted", policy);
            match policy {
                OverflowPolicy::Backpressure => prop_assert_eq!(&out, &input),
                OverflowPolicy::DropOldest if !input.is_empty() => prop_assert_eq!(out.last(), input.last()),
                OverflowPolicy::DropNewest if !input.is_empty() => prop_assert_eq!(out.first(), input.first()),
                _ => {}
            }
        }
    }

    #[test]
    fn ordered_map_is_the_identity_on_order(input in prop::collection::vec(any::<u32>(), 0..200), limit in 1usize..32) {
        let limit = NonZeroUsize::new(limit).unwrap();
        let out: Vec<u32> = block_on(stream::iter(input.clone()).map_concurrent_ordered(limit, |x| async move { x }).collect());
        prop_assert_eq!(out, input);
    }

    #[test]
    fn unordered_map_is_a_permutation(input in prop::collection::vec(any::<u32>(), 0..200), limit in 1usize..32) {
        let limit = NonZeroUsize::new(limit).unwrap();
        let mut out: Vec<u32> = block_on(stream::iter(input.clone()).map_concurrent(limit, |x| async move { x }).collect());
        let mut expected = input;
        out.sort_unstable();
        expected.sort_unstable();
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn fair_merge_keeps_every_item_and_each_source_order(sources in prop::collection::vec(prop::collection::vec(any::<u32>(), 0..50), 1..8)) {
        let tagged: Vec<Vec<(usize, u32)>> = sources.iter().enumerate().map(|(i, s)| s.iter().map(|&x| (i, x)).collect()).collect();
        let out: Vec<(usize, u32)> = block_on(merge_fair(tagged.iter().cloned().map(stream::iter)).collect());
        prop_assert_eq!(out.len(), sources.iter().map(Vec::len).sum::<usize>());
        for (i, source) in sources.iter().enumerate() {
            let from_i: Vec<u32> = out.iter().filter(|(s, _)| *s == i).map(|&(_, x)| x).collect();
            prop_assert_eq!(&from_i, source);
        }
    }

    #[test]
    fn tumbling_windows_partition_in_order_input(mut times in prop::collection::vec(0u64..10_000, 0..200), size in 1u64..500) {
        times.sort_unstable();
        let events: Vec<WindowEvent<u64>> = block_on(stream::iter(times.clone()).windows(WindowSpec::tumbling(size), |&t| t).collect());
        let mut seen = Vec::new();
        let mut last_end = 0;
        for event in events {
            let WindowEvent::Window(window) = event else { return Err(TestCaseError::fail("no item is late in order")) };
            prop_assert_eq!(window.firing, Firing::OnTime);
            prop_assert_eq!(window.end - window.start, size);
            prop_assert!(window.end > last_end, "windows fire in order of their ends");
            last_end = window.end;
            for &t in &window.items {
                prop_assert!(window.start <= t && t < window.end);
            }
            seen.extend(window.items);
        }
        prop_assert_eq!(seen, times, "each item in exactly one window");
    }

    #[test]
    fn sliding_windows_hold_each_item_size_over_slide_times(times in prop::collection::vec(1_000u64..5_000, 1..100), slide in 1u64..50, factor in 1u64..5) {
        let size = slide * factor;
        let spec = WindowSpec::sliding(size, slide).with_out_of_orderness(10_000);
        let events: Vec<WindowEvent<u64>> = block_on(stream::iter(times.clone()).windows(spec, |&t| t).collect());
        let mut count: BTreeMap<u64, u64> = BTreeMap::new();
        for event in events {
            let WindowEvent::Window(window) = event else { return Err(TestCaseError::fail("nothing is late")) };
            for &t in &window.items {
                prop_assert!(window.start <= t && t < window.end);
                *count.entry(t).or_default() += 1;
            }
        }
        let mut distinct = times.clone();
        distinct.sort_unstable();
        for t in distinct.iter().copied() {
            let copies = times.iter().filter(|&&x| x == t).count() as u64;
            prop_assert_eq!(count[&t], copies * factor, "item at {} is in size/slide windows", t);
        }
    }
}
