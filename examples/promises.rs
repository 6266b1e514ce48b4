//! Rust futures beside JavaScript promises: the same `async`/`await` syntax over two
//! different models.
//!
//! A JavaScript promise is a running computation: `new Promise(f)` calls `f` at once, the
//! event loop drives it whether or not anyone awaits, and it cannot be cancelled. A Rust
//! future is a value that does nothing until polled; whoever owns it decides when it runs,
//! and dropping it cancels it at its current `.await`. `tokio::spawn` turns a future into
//! something promise-like: a task the runtime drives on its own.
//!
//! Every function below asserts the behaviour it describes. The runtime starts with its
//! clock paused, so the sleeps cost no real time and the timings are exact.
//!
//! Run it with `cargo run -p weir-examples --example promises`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{sleep, Instant};

/// Resolves to `value` after `delay`, like `new Promise(r => setTimeout(() => r(value), delay))`.
async fn after<T>(delay: Duration, value: T) -> T {
    sleep(delay).await;
    value
}

/// A future does nothing until it is polled. JavaScript's `new Promise(f)` runs `f` at once.
async fn futures_are_lazy() {
    let started = Arc::new(AtomicBool::new(false));
    let future = {
        let started = Arc::clone(&started);
        async move {
            started.store(true, Ordering::SeqCst);
            1
        }
    };
    assert!(!started.load(Ordering::SeqCst), "created, not yet run");
    assert_eq!(future.await, 1);
    assert!(started.load(Ordering::SeqCst));
    println!("futures are lazy: the body ran only at .await");
}

/// `tokio::spawn` is eager, like a promise: the task runs whether or not anyone awaits its
/// handle, and the handle only collects the result.
async fn spawn_is_eager() {
    let (ran, ran_signal) = oneshot::channel();
    let handle = tokio::spawn(async move {
        let _ = ran.send(());
        7
    });
    // The task reports in before its handle is awaited.
    ran_signal.await.expect("the task ran");
    assert_eq!(handle.await.expect("the task did not panic"), 7);
    println!("spawned tasks are eager: it ran before its handle was awaited");
}

/// Sequential `.await`s add up; `join!` runs futures concurrently within one task, like
/// `Promise.all`. `try_join!` stops at the first error, like `Promise.all`'s rejection, and
/// also drops (cancels) the futures still running, which JavaScript cannot do.
async fn all_like_promise_all() {
    let delay = Duration::from_millis(100);

    let started = Instant::now();
    let a = after(delay, 1).await;
    let b = after(delay, 2).await;
    assert_eq!((a, b), (1, 2));
    assert_eq!(started.elapsed(), 2 * delay, "one after the other");

    let started = Instant::now();
    let (a, b) = tokio::join!(after(delay, 1), after(delay, 2));
    assert_eq!((a, b), (1, 2));
    assert_eq!(started.elapsed(), delay, "both at once");

    let started = Instant::now();
    let refused = tokio::try_join!(
        after(Duration::from_millis(50), Err::<u32, _>("refused")),
        after(Duration::from_secs(60), Ok(2)),
    );
    assert_eq!(refused, Err("refused"));
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(50),
        "did not wait for the slow one"
    );
    println!("join!: 100 ms for two 100 ms waits; try_join!: returned at the first error");
}

/// Sets its flag when dropped: shows whether a future was cancelled.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// `select!` is `Promise.race`, except that the losers are dropped, so their work stops. A
/// losing promise keeps running to completion with nobody listening.
async fn race_like_promise_race() {
    let loser_dropped = Arc::new(AtomicBool::new(false));
    let slow = {
        let flag = DropFlag(Arc::clone(&loser_dropped));
        async move {
            let _flag = flag;
            after(Duration::from_secs(60), "slow").await
        }
    };
    let winner = tokio::select! {
        value = after(Duration::from_millis(10), "fast") => value,
        value = slow => value,
    };
    assert_eq!(winner, "fast");
    assert!(
        loser_dropped.load(Ordering::SeqCst),
        "the loser was cancelled"
    );
    println!("select!: {winner} won, and the slow branch was dropped, not left running");
}

/// Dropping a future cancels it at the `.await` where it waits: the code after that point
/// never runs. `tokio::time::timeout` works this way. A spawned task is different: dropping
/// its `JoinHandle` detaches it, and only `abort` cancels it.
async fn drop_cancels() {
    let finished = Arc::new(AtomicUsize::new(0));
    let work = |finished: Arc<AtomicUsize>| async move {
        sleep(Duration::from_secs(1)).await;
        finished.fetch_add(1, Ordering::SeqCst);
    };

    let timed_out = tokio::time::timeout(Duration::from_millis(10), work(Arc::clone(&finished)));
    assert!(timed_out.await.is_err(), "the timeout fired first");

    drop(tokio::spawn(work(Arc::clone(&finished)))); // detached: keeps running
    let aborted = tokio::spawn(work(Arc::clone(&finished)));
    aborted.abort();

    sleep(Duration::from_secs(2)).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "only the detached task finished its work"
    );
    println!("drop cancels a future; a detached task runs on until it is aborted");
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    futures_are_lazy().await;
    spawn_is_eager().await;
    all_like_promise_all().await;
    race_like_promise_race().await;
    drop_cancels().await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn example_runs() {
        super::main();
    }
}
