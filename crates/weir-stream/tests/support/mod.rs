//! Shared test helpers: run one async test body on both runtimes, and timed sources.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use futures_core::Stream;
use weir_stream::Timer;

/// Runs the same body under tokio (current thread, paused clock: timers take no real time)
/// and under smol (`async-io`, real clock). `$timer` names the runtime's [`Timer`] inside.
#[macro_export]
macro_rules! on_both_runtimes {
    ($name:ident, |$timer:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn tokio() {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .start_paused(true)
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let $timer = weir_stream::TokioTimer;
                    $body
                });
            }

            #[test]
            fn smol() {
                async_io::block_on(async {
                    let $timer = weir_stream::SmolTimer;
                    $body
                });
            }
        }
    };
}

/// Items that become ready at the given offsets from the first poll.
pub fn timed<T: Timer, I: Clone + Send + 'static>(
    timer: T,
    items: Vec<(u64, I)>,
) -> impl Stream<Item = I> {
    let start = timer.now();
    futures_lite::stream::unfold(
        (timer, items.into_iter()),
        move |(timer, mut rest)| async move {
            let (at_ms, item) = rest.next()?;
            timer
                .sleep_until(start + Duration::from_millis(at_ms))
                .await;
            Some((item, (timer, rest)))
        },
    )
}

/// Waits `ms` on the timer.
pub async fn pause<T: Timer>(timer: &T, ms: u64) {
    timer
        .sleep_until(timer.now() + Duration::from_millis(ms))
        .await;
}

/// Milliseconds since `start` on the timer's clock.
pub fn elapsed_ms<T: Timer>(timer: &T, start: Instant) -> u64 {
    timer.now().duration_since(start).as_millis() as u64
}
