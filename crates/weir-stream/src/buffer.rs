//! A bounded read-ahead queue with an overflow policy.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::{DropCounter, OverflowPolicy, Overflowed};

/// Items one poll may take from an always-ready upstream before it yields.
const PULL_BUDGET: usize = 256;

pin_project_lite::pin_project! {
    /// The stream returned by [`WeirStreamExt::buffer`](crate::WeirStreamExt::buffer).
    ///
    /// Each poll first takes every item the upstream has ready (up to
    /// `max(capacity, 256)` items per poll, so an always-ready upstream cannot hold the poll
    /// forever), then hands out the oldest queued item.
    ///
    /// * **Backpressure:** with [`OverflowPolicy::Backpressure`] the upstream is not polled
    ///   while the queue is full; the other policies keep pulling and drop (counted by
    ///   [`Buffer::drops`]) or fail.
    /// * **Cancel safety:** items live in the queue between polls; dropping the `next()`
    ///   future loses nothing.
    /// * **Allocation:** one queue of `capacity` slots, allocated once.
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct Buffer<S: Stream> {
        #[pin]
        upstream: S,
        queue: VecDeque<S::Item>,
        capacity: usize,
        policy: OverflowPolicy,
        drops: DropCounter,
        upstream_done: bool,
        failed: bool,
    }
}

impl<S: Stream> Buffer<S> {
    pub(crate) fn new(upstream: S, capacity: NonZeroUsize, policy: OverflowPolicy) -> Self {
        Self {
            upstream,
            queue: VecDeque::with_capacity(capacity.get()),
            capacity: capacity.get(),
            policy,
            drops: DropCounter::new(),
            upstream_done: false,
            failed: false,
        }
    }

    /// A handle on the number of items dropped so far (always 0 for Backpressure and Fail).
    pub fn drops(&self) -> DropCounter {
        self.drops.clone()
    }

    /// Items waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

impl<S: Stream> Stream for Buffer<S> {
    type Item = Result<S::Item, Overflowed>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        let mut pulled = 0;
        let budget = (*this.capacity).max(PULL_BUDGET);
        while !*this.upstream_done && pulled < budget {
            let full = this.queue.len() >= *this.capacity;
            if full && *this.policy == OverflowPolicy::Backpressure {
                break;
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    pulled += 1;
                    if !full {
                        this.queue.push_back(item);
                        continue;
                    }
                    match this.policy {
                        OverflowPolicy::DropOldest => {
                            this.queue.pop_front();
                            this.queue.push_back(item);
                            this.drops.add(1);
                        }
                        OverflowPolicy::DropNewest => this.drops.add(1),
                        OverflowPolicy::Fail => {
                            *this.failed = true;
                            this.queue.clear();
                            return Poll::Ready(Some(Err(Overflowed {
                                capacity: *this.capacity,
                            })));
                        }
                        OverflowPolicy::Backpressure => unreachable!("checked before polling"),
                    }
                }
                Poll::Ready(None) => *this.upstream_done = true,
                Poll::Pending => break,
            }
        }
        match this.queue.pop_front() {
            Some(item) => Poll::Ready(Some(Ok(item))),
            None if *this.upstream_done => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (low, high) = self.upstream.size_hint();
        let queued = self.queue.len();
        match self.policy {
            OverflowPolicy::Backpressure => (
                low.saturating_add(queued),
                high.and_then(|h| h.checked_add(queued)),
            ),
            _ => (queued.min(1), high.and_then(|h| h.checked_add(queued))),
        }
    }
}
