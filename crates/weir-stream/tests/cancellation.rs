//! `take_until` with a `CancellationToken`, the way Weir's servers stop their streams.

#![allow(missing_docs)]

use std::time::Duration;

use futures_lite::StreamExt;
use tokio_util::sync::CancellationToken;
use weir_stream::WeirStreamExt;

#[tokio::test(start_paused = true)]
async fn a_cancelled_token_ends_the_stream_between_items() {
    let token = CancellationToken::new();
    let ticks = futures_lite::stream::unfold(0u32, |n| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((n, n + 1))
    });
    let mut stream = std::pin::pin!(ticks.take_until(token.clone().cancelled_owned()));
    assert_eq!(stream.next().await, Some(0));
    assert_eq!(stream.next().await, Some(1));
    token.cancel();
    assert_eq!(
        stream.next().await,
        None,
        "no item is taken once the token is cancelled"
    );
    assert_eq!(stream.next().await, None, "and the stream stays ended");
}
