//! Batching by size or by time, whichever comes first.

use std::num::NonZeroUsize;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use crate::alarm::Alarm;
use crate::Timer;

pin_project_lite::pin_project! {
    /// The stream returned by [`WeirStreamExt::batch`](crate::WeirStreamExt::batch).
    ///
    /// A batch is emitted when it holds `max_items`, or `max_wait` after its first item
    /// arrived, or when the upstream ends (a final, shorter batch). Batches are never empty.
    ///
    /// * **Backpressure:** the upstream is polled only while a batch is being filled and
    ///   the stream is polled; a full batch waits for the consumer.
    /// * **Cancel safety:** items wait in the batch between polls; nothing is lost.
    /// * **Allocation:** one `Vec` per batch (the batch itself) and one timer per stage.
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct Batch<S: Stream, T: Timer> {
        #[pin]
        upstream: S,
        #[pin]
        alarm: Alarm<T>,
        items: Vec<S::Item>,
        max_items: usize,
        max_wait: Duration,
        upstream_done: bool,
    }
}

impl<S: Stream, T: Timer> Batch<S, T> {
    pub(crate) fn new(upstream: S, max_items: NonZeroUsize, max_wait: Duration, timer: T) -> Self {
        Self {
            upstream,
            alarm: Alarm::new(timer),
            items: Vec::with_capacity(max_items.get()),
            max_items: max_items.get(),
            max_wait,
            upstream_done: false,
        }
    }
}

impl<S: Stream, T: Timer> Stream for Batch<S, T> {
    type Item = Vec<S::Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        while !*this.upstream_done && this.items.len() < *this.max_items {
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    if this.items.is_empty() {
                        let at = this.alarm.now() + *this.max_wait;
                        this.alarm.as_mut().set(at);
                    }
                    this.items.push(item);
                }
                Poll::Ready(None) => *this.upstream_done = true,
                Poll::Pending => break,
            }
        }
        let full = this.items.len() >= *this.max_items;
        let due = !this.items.is_empty() && this.alarm.as_mut().poll_fired(cx).is_ready();
        if full || due || (*this.upstream_done && !this.items.is_empty()) {
            this.alarm.as_mut().clear();
            let batch = std::mem::replace(this.items, Vec::with_capacity(*this.max_items));
            return Poll::Ready(Some(batch));
        }
        if *this.upstream_done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}
