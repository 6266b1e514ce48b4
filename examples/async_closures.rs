//! Async closures (`async |x| …`, stable since Rust 1.85) and the `AsyncFn` traits.
//!
//! Before them, a helper that takes "some async work" was written with
//! `F: FnMut() -> Fut, Fut: Future`, and callers passed `|| async { … }`: a closure returning
//! a future. That future cannot borrow from the closure's captures, because a closure
//! returning a reference to its own state is a lending closure, which `FnMut` cannot express.
//! So callers cloned into every call (`let x = x.clone(); async move { … }`) or reached for
//! `Arc`. An async closure's future may borrow its captures, and `AsyncFnMut` says so in
//! the signature.
//!
//! Run it with `cargo run -p weir-examples --example async_closures`.

use std::future::{poll_fn, Future};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::{sleep, Instant};

/// Calls `attempt` until it succeeds or `tries` attempts have failed, doubling the pause
/// between attempts from 100 ms. `AsyncFnMut`: each call's future may mutate the closure's
/// captured state, one call at a time.
async fn retry<T, E: std::fmt::Display>(
    tries: u32,
    mut attempt: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut pause = Duration::from_millis(100);
    for number in 1.. {
        match attempt().await {
            Err(error) if number < tries => {
                println!("attempt {number} failed ({error}); next in {pause:?}");
                sleep(pause).await;
                pause *= 2;
            }
            outcome => return outcome,
        }
    }
    unreachable!("the loop returns by attempt `tries`")
}

/// Applies `f` to every item, at most `limit` at a time, and returns the outputs in the
/// items' order. `AsyncFn`: the calls' futures share the closure (and what it borrows), so
/// they can run concurrently.
async fn map_concurrent<T, U>(items: Vec<T>, limit: usize, f: impl AsyncFn(T) -> U) -> Vec<U> {
    let permits = Semaphore::new(limit);
    let (f, permits) = (&f, &permits);
    let mut calls: Vec<_> = items
        .into_iter()
        .map(|item| {
            Box::pin(async move {
                // The semaphore is never closed, so acquiring fails only on a bug here.
                let _permit = permits.acquire().await.expect("the semaphore is open");
                f(item).await
            })
        })
        .collect();
    let mut outputs: Vec<Option<U>> = calls.iter().map(|_| None).collect();
    // A hand-rolled join of all the calls in this one task. It polls every unfinished call
    // on each wake-up, which is fine for a handful; for many, a `FuturesUnordered` polls
    // only the calls whose wakers fired.
    poll_fn(|context| {
        let mut unfinished = false;
        for (call, output) in calls.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match call.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => unfinished = true,
                }
            }
        }
        if unfinished {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("every call finished"))
        .collect()
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    // The closure borrows `calls` mutably, and so does each future it returns: no Arc, no
    // atomics. `|| async { calls += 1; … }` does not compile ("captured variable cannot
    // escape `FnMut` closure body").
    let mut calls = 0;
    let started = Instant::now();
    let outcome = retry(5, async || {
        calls += 1;
        sleep(Duration::from_millis(10)).await;
        if calls < 3 {
            Err(format!("call {calls} refused"))
        } else {
            Ok(calls)
        }
    })
    .await;
    assert_eq!(outcome, Ok(3));
    assert_eq!(calls, 3);
    // Three calls of 10 ms, and pauses of 100 ms and 200 ms between them.
    assert_eq!(started.elapsed(), Duration::from_millis(330));
    println!(
        "retry: succeeded on call {calls} after {:?}",
        started.elapsed()
    );

    // Every call borrows `prefix` instead of cloning it.
    let prefix = String::from("page");
    let started = Instant::now();
    let pages = map_concurrent(vec![3, 1, 2], 2, async |tenths: u64| {
        sleep(Duration::from_millis(100 * tenths)).await;
        format!("{prefix}-{tenths}")
    })
    .await;
    assert_eq!(pages, ["page-3", "page-1", "page-2"]);
    // Two at a time: 3 and 1 start; 1 ends at 100 ms and 2 starts; 3 and 2 end at 300 ms.
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    println!("map_concurrent: {pages:?} in {:?}", started.elapsed());
}

#[cfg(test)]
mod tests {
    #[test]
    fn example_runs() {
        super::main();
    }
}
