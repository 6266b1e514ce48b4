//! The two Tokio channel kinds Weir's product code does not use, shown where each is the
//! right choice.
//!
//! - `watch` holds one value, the latest. Readers see the newest value when they look and
//!   skip the ones in between: right for state (a setting, a health flag, a shutdown
//!   phase), wrong for events that must each arrive.
//! - `broadcast` delivers every message to every subscriber through one bounded ring. A
//!   subscriber that falls a full ring behind loses the oldest messages and is told how many
//!   (`RecvError::Lagged`): right for notifications where a slow reader may miss some.
//!   Weir's pub/sub hub needs more (per-subscriber overflow policies, topics created and
//!   dropped at run time, replay), so it keeps its own shared log with a cursor per
//!   subscriber, benchmarked against `broadcast` in `crates/weir-pubsub/benches/fanout.rs`.
//!
//! Weir's other channels are `mpsc` (the SQLite writer thread's queue, the file walker's
//! batches) and `oneshot` (each reply from that writer); `docs/guide.md` links them.
//!
//! Run it with `cargo run -p weir-examples --example channels`.

use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::sleep;

/// A setting changed three times while its reader was busy: the reader sees only the last.
async fn watch_holds_latest() {
    let (setting, mut reader) = watch::channel(10_u32);

    let slow_reader = tokio::spawn(async move {
        let mut seen = vec![*reader.borrow_and_update()];
        // `changed` resolves once for any number of sends since the last look.
        while reader.changed().await.is_ok() {
            seen.push(*reader.borrow_and_update());
            sleep(Duration::from_millis(100)).await; // busy with the old value
        }
        seen // `changed` fails once the sender is dropped
    });

    sleep(Duration::from_millis(10)).await;
    setting.send_replace(20);
    sleep(Duration::from_millis(10)).await;
    for value in [30, 40, 50] {
        setting.send_replace(value); // the reader is asleep: 30 and 40 are overwritten
    }
    sleep(Duration::from_millis(200)).await;
    drop(setting);

    let seen = slow_reader.await.expect("the reader did not panic");
    assert_eq!(seen, [10, 20, 50]);
    println!("watch: the reader saw {seen:?}, never 30 or 40");
}

/// Every subscriber gets every message, until one falls a whole ring behind.
async fn broadcast_lags() {
    // Capacity 4: the ring holds the 4 newest messages; older ones are overwritten.
    let (events, mut prompt) = broadcast::channel::<u32>(4);
    let mut late = events.subscribe();

    for event in 1..=6 {
        events.send(event).expect("a subscriber exists");
        // The prompt subscriber keeps up and sees every event.
        assert_eq!(prompt.recv().await, Ok(event));
    }

    // The late subscriber never read: it lost 1 and 2, is told so once, then resumes with
    // the oldest message still in the ring.
    assert_eq!(
        late.recv().await,
        Err(broadcast::error::RecvError::Lagged(2))
    );
    let mut rest = Vec::new();
    while let Ok(event) = late.try_recv() {
        rest.push(event);
    }
    assert_eq!(rest, [3, 4, 5, 6]);
    println!("broadcast: a prompt subscriber saw 1..=6; a late one lost 2, then saw {rest:?}");
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    watch_holds_latest().await;
    broadcast_lags().await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn example_runs() {
        super::main();
    }
}
