//! futures-rs issue 2387: `buffer_unordered` stops polling its in-flight futures while the
//! consumer is busy, so their timers, leases and timeouts run late. These tests show the
//! effect on a concurrent map consumed in place, and its fix: `detach` moves the stage onto
//! its own task, which keeps polling while the consumer works.

#![allow(missing_docs)]

use std::num::NonZeroUsize;
use std::time::Duration;

use futures_lite::{stream, StreamExt};
use tokio::time::Instant;
use weir_stream::{TokioSpawner, WeirStreamExt};

const WORK: Duration = Duration::from_millis(10);
const CONSUMER_BUSY: Duration = Duration::from_millis(100);

/// Each job waits WORK and reports how long it took from its start to its completion being
/// observed by the job itself (which needs a poll after its timer fires).
fn jobs() -> impl futures_core::Stream<Item = impl std::future::Future<Output = Duration>> {
    stream::iter(0..8).map(|_| async {
        let started = Instant::now();
        tokio::time::sleep(WORK).await;
        started.elapsed()
    })
}

#[tokio::test(start_paused = true)]
async fn in_place_stage_starves_while_the_consumer_is_busy() {
    let limit = NonZeroUsize::new(4).unwrap();
    let mut stage = std::pin::pin!(jobs().map_concurrent(limit, |job| job));
    let mut took = Vec::new();
    while let Some(elapsed) = stage.next().await {
        took.push(elapsed);
        tokio::time::sleep(CONSUMER_BUSY).await;
    }
    assert_eq!(took.len(), 8);
    assert!(
        took.iter().any(|&t| t >= CONSUMER_BUSY),
        "in place, jobs finish only when the consumer comes back: {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn detached_stage_keeps_its_futures_running() {
    let limit = NonZeroUsize::new(4).unwrap();
    let mut stage = jobs()
        .map_concurrent(limit, |job| job)
        .detach(&TokioSpawner, limit);
    let mut took = Vec::new();
    while let Some(elapsed) = stage.next().await {
        took.push(elapsed);
        tokio::time::sleep(CONSUMER_BUSY).await;
    }
    assert_eq!(took.len(), 8);
    assert!(
        took.iter().all(|&t| t < 2 * WORK),
        "detached, every job completes on time while the consumer sleeps: {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_detached_stage_stops_its_task() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let source = stream::iter(0..u64::MAX).then(|i| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        i
    });
    // The upstream owns `tx`: when the task drops the upstream, `rx` sees it closed.
    let guarded = source.map(move |i| {
        let _keep = &tx;
        i
    });
    let mut stage = guarded.detach(&TokioSpawner, NonZeroUsize::new(2).unwrap());
    assert_eq!(stage.next().await, Some(0));
    drop(stage);
    tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("the task dropped the upstream")
        .unwrap_err();
}
