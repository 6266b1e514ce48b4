//! Watermarks, allowed lateness, the late side output, and sessions.

#![allow(missing_docs)]

use futures_lite::{future::block_on, stream, StreamExt};
use weir_stream::{Firing, WeirStreamExt, Window, WindowEvent, WindowSpec};

fn run(spec: WindowSpec, times: &[u64]) -> Vec<WindowEvent<u64>> {
    block_on(stream::iter(times.to_vec()).windows(spec, |&t| t).collect())
}

fn window(start: u64, end: u64, items: &[u64], firing: Firing) -> WindowEvent<u64> {
    WindowEvent::Window(Window {
        start,
        end,
        items: items.to_vec(),
        firing,
    })
}

#[test]
fn out_of_orderness_delays_the_watermark() {
    // With 5 of out-of-orderness, 8 arriving after 12 is still on time for [0, 10).
    let spec = WindowSpec::tumbling(10).with_out_of_orderness(5);
    let events = run(spec, &[1, 12, 8, 16, 30]);
    assert_eq!(
        events,
        vec![
            window(0, 10, &[1, 8], Firing::OnTime),
            window(10, 20, &[12, 16], Firing::OnTime),
            window(30, 40, &[30], Firing::OnTime),
        ]
    );
}

#[test]
fn allowed_lateness_refires_then_the_side_output_takes_over() {
    let spec = WindowSpec::tumbling(10).with_allowed_lateness(10);
    // 12 fires [0,10); 5 is late but within lateness: [0,10) fires again with it.
    // 25 moves the watermark past 10 + 10: 7 is too late and goes to the side output.
    let events = run(spec, &[1, 12, 5, 25, 7]);
    assert_eq!(
        events,
        vec![
            window(0, 10, &[1], Firing::OnTime),
            window(0, 10, &[1, 5], Firing::Late),
            window(10, 20, &[12], Firing::OnTime),
            WindowEvent::Late(7),
            window(20, 30, &[25], Firing::OnTime),
        ]
    );
}

#[test]
fn sessions_merge_items_closer_than_the_gap() {
    let spec = WindowSpec::session(10).with_out_of_orderness(100);
    // 1, 5 and 12 chain into one session; 40 starts another; 25 bridges nothing (gap 10).
    let events = run(spec, &[1, 12, 5, 40, 25]);
    assert_eq!(
        events,
        vec![
            window(1, 22, &[1, 12, 5], Firing::OnTime),
            window(25, 35, &[25], Firing::OnTime),
            window(40, 50, &[40], Firing::OnTime),
        ]
    );
}

#[test]
fn a_late_item_can_join_two_sessions() {
    let spec = WindowSpec::session(10).with_out_of_orderness(100);
    // [1, 11) and [19, 29) are separate sessions until 10 arrives: [10, 20) overlaps both.
    let events = run(spec, &[1, 19, 10]);
    assert_eq!(events, vec![window(1, 29, &[1, 19, 10], Firing::OnTime)]);
}
