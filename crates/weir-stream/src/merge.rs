//! A fair merge of N streams.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::ready_set::ChildWakers;

/// Merges `streams` fairly: see [`MergeFair`].
///
/// ```
/// # futures_lite::future::block_on(async {
/// use futures_lite::{stream, StreamExt};
/// let merged = weir_stream::merge_fair(vec![stream::iter(vec![1, 2]), stream::iter(vec![10, 20])]);
/// assert_eq!(merged.collect::<Vec<_>>().await, vec![1, 10, 2, 20]);
/// # });
/// ```
pub fn merge_fair<S: Stream>(streams: impl IntoIterator<Item = S>) -> MergeFair<S> {
    let children: Vec<Pin<Box<S>>> = streams.into_iter().map(Box::pin).collect();
    let wakers = ChildWakers::new(children.len());
    let live = children.len();
    MergeFair {
        done: vec![false; children.len()],
        children,
        wakers,
        cursor: 0,
        live,
    }
}

/// The stream returned by [`merge_fair`].
///
/// * **Fairness:** children take turns, round-robin from the one after the last that
///   yielded: a child that is always ready gets one item per turn and cannot starve the
///   others (chained two-way merges can: the innermost stream gets half of all turns).
/// * **Cost:** only children that were woken are polled, so a poll costs O(1) in the number
///   of quiet children, not O(N).
/// * **Backpressure:** each child is polled only when the merged stream is.
/// * **Cancel safety:** nothing is buffered; dropping `next()` loses nothing.
#[must_use = "streams do nothing unless polled"]
pub struct MergeFair<S> {
    children: Vec<Pin<Box<S>>>,
    done: Vec<bool>,
    wakers: ChildWakers,
    cursor: usize,
    live: usize,
}

impl<S> std::fmt::Debug for MergeFair<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeFair")
            .field("children", &self.children.len())
            .field("live", &self.live)
            .finish()
    }
}

impl<S: Stream> Stream for MergeFair<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.get_mut();
        this.wakers.register(cx.waker());
        while let Some(index) = this.wakers.take_from(this.cursor) {
            if this.done[index] {
                continue;
            }
            let mut child = Context::from_waker(this.wakers.waker(index));
            match this.children[index].as_mut().poll_next(&mut child) {
                Poll::Ready(Some(item)) => {
                    // It may have more: it stays ready, after everyone else's turn.
                    this.wakers.mark(index);
                    this.cursor = index + 1;
                    return Poll::Ready(Some(item));
                }
                Poll::Ready(None) => {
                    this.done[index] = true;
                    this.live -= 1;
                }
                Poll::Pending => {}
            }
        }
        if this.live == 0 {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}
