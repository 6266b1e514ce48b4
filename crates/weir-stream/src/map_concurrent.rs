//! Concurrent map: up to `limit` futures in flight, results in completion order or in input
//! order.

use std::collections::VecDeque;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::detach::{detach, Detached, Drive, Spawner};
use crate::ready_set::ChildWakers;
use crate::slab::FutureSlots;

/// What both concurrent maps share: `Stream` is `Drive` with unlimited room, and `detach`
/// runs the stage on its own task with admission by room.
macro_rules! concurrent_stage {
    ($stage:ident, $detach_doc:literal) => {
        impl<S, F, Fut> Stream for $stage<S, F, Fut>
        where
            S: Stream,
            F: FnMut(S::Item) -> Fut,
            Fut: Future,
        {
            type Item = Fut::Output;

            fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                self.poll_with_room(cx, usize::MAX)
            }
        }

        impl<S, F, Fut> $stage<S, F, Fut>
        where
            S: Stream + Send + 'static,
            F: FnMut(S::Item) -> Fut + Send + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: Send + 'static,
        {
            #[doc = $detach_doc]
            pub fn detach<Sp: Spawner>(
                self,
                spawner: &Sp,
                capacity: NonZeroUsize,
            ) -> Detached<Fut::Output> {
                detach(self, spawner, capacity)
            }
        }
    };
}

concurrent_stage!(
    MapConcurrent,
    "Runs this stage on its own task with a queue of `capacity` results; see [`Detached`]. A future is started only when the queue has room for its result, so every started future is polled to completion on time, whatever the consumer does."
);
concurrent_stage!(
    MapConcurrentOrdered,
    "Runs this stage on its own task with a queue of `capacity` results; see [`Detached`]. Started futures are polled to completion on time while the queue is full; their results wait inside the stage (at most `limit`)."
);

pin_project_lite::pin_project! {
    /// The stream returned by [`WeirStreamExt::map_concurrent`](crate::WeirStreamExt::map_concurrent):
    /// results in completion order.
    ///
    /// * **Backpressure:** at most `limit` futures are in flight; the upstream is polled only
    ///   when a slot is free.
    /// * **Progress:** every poll polls each in-flight future that was woken (and only those),
    ///   not just the first. Futures make progress only while this stream is polled: to keep
    ///   them running while the consumer is busy, move the stage onto its own task with
    ///   [`detach`](crate::WeirStreamExt::detach) (this is what fixes futures-rs issue 2387).
    /// * **Fairness:** woken futures are polled round-robin from where the last result came.
    /// * **Allocation:** `limit` boxes and `limit` wakers, made once; none per item.
    /// * **Cancel safety:** dropping `next()` loses nothing; dropping the stream drops the
    ///   in-flight futures.
    #[must_use = "streams do nothing unless polled"]
    pub struct MapConcurrent<S, F, Fut> {
        #[pin]
        upstream: S,
        f: F,
        slots: FutureSlots<Fut>,
        wakers: ChildWakers,
        free: Vec<usize>,
        cursor: usize,
        upstream_done: bool,
    }
}

impl<S, F, Fut> MapConcurrent<S, F, Fut>
where
    S: Stream,
    F: FnMut(S::Item) -> Fut,
    Fut: Future,
{
    pub(crate) fn new(upstream: S, limit: NonZeroUsize, f: F) -> Self {
        let limit = limit.get();
        let wakers = ChildWakers::idle(limit);
        Self {
            upstream,
            f,
            slots: FutureSlots::new(limit),
            wakers,
            free: (0..limit).rev().collect(),
            cursor: 0,
            upstream_done: false,
        }
    }
}

impl<S, F, Fut> Drive for MapConcurrent<S, F, Fut>
where
    S: Stream,
    F: FnMut(S::Item) -> Fut,
    Fut: Future,
{
    fn poll_with_room(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        room: usize,
    ) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        this.wakers.register(cx.waker());
        // Admit new work only while every in-flight future has room for its result.
        while !*this.upstream_done && !this.free.is_empty() && this.slots.in_flight() < room {
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    let slot = this.free.pop().expect("checked non-empty");
                    this.slots.insert_at(slot, (this.f)(item));
                    this.wakers.mark(slot);
                }
                Poll::Ready(None) => *this.upstream_done = true,
                Poll::Pending => break,
            }
        }
        while let Some(slot) = this.wakers.take_from(*this.cursor) {
            let mut child = Context::from_waker(this.wakers.waker(slot));
            if let Poll::Ready(output) = this.slots.poll(slot, &mut child) {
                this.free.push(slot);
                *this.cursor = slot + 1;
                return Poll::Ready(Some(output));
            }
        }
        if *this.upstream_done && this.slots.in_flight() == 0 {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

pin_project_lite::pin_project! {
    /// The stream returned by
    /// [`WeirStreamExt::map_concurrent_ordered`](crate::WeirStreamExt::map_concurrent_ordered):
    /// results in input order.
    ///
    /// As [`MapConcurrent`], except that a result waits until every earlier one has been
    /// handed out. Results waiting so count against `limit`, so a slow head of line slows
    /// the intake instead of growing a buffer: at most `limit` items are ever held.
    #[must_use = "streams do nothing unless polled"]
    pub struct MapConcurrentOrdered<S, F, Fut: Future> {
        #[pin]
        upstream: S,
        f: F,
        slots: FutureSlots<Fut>,
        wakers: ChildWakers,
        results: VecDeque<Option<Fut::Output>>,
        // Items taken in and handed out so far, and the slots of the next of each: kept
        // apart so the hot path never divides (a `%` by a runtime limit was a third of
        // this operator's time on ready futures).
        next_seq: u64,
        next_out: u64,
        tail_slot: usize,
        head_slot: usize,
        limit: usize,
        upstream_done: bool,
    }
}

impl<S, F, Fut> MapConcurrentOrdered<S, F, Fut>
where
    S: Stream,
    F: FnMut(S::Item) -> Fut,
    Fut: Future,
{
    pub(crate) fn new(upstream: S, limit: NonZeroUsize, f: F) -> Self {
        let limit = limit.get();
        let wakers = ChildWakers::idle(limit);
        Self {
            upstream,
            f,
            slots: FutureSlots::new(limit),
            wakers,
            results: (0..limit).map(|_| None).collect(),
            next_seq: 0,
            next_out: 0,
            tail_slot: 0,
            head_slot: 0,
            limit,
            upstream_done: false,
        }
    }
}

impl<S, F, Fut> Drive for MapConcurrentOrdered<S, F, Fut>
where
    S: Stream,
    F: FnMut(S::Item) -> Fut,
    Fut: Future,
{
    fn poll_with_room(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        room: usize,
    ) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        let limit = *this.limit as u64;
        this.wakers.register(cx.waker());
        while room > 0 && !*this.upstream_done && *this.next_seq - *this.next_out < limit {
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    let slot = *this.tail_slot;
                    this.slots.insert_at(slot, (this.f)(item));
                    this.wakers.mark(slot);
                    *this.next_seq += 1;
                    *this.tail_slot = if slot + 1 == *this.limit { 0 } else { slot + 1 };
                }
                Poll::Ready(None) => *this.upstream_done = true,
                Poll::Pending => break,
            }
        }
        let head = *this.head_slot;
        while let Some(slot) = this.wakers.take_from(head) {
            let mut child = Context::from_waker(this.wakers.waker(slot));
            if let Poll::Ready(output) = this.slots.poll(slot, &mut child) {
                this.results[slot] = Some(output);
            }
        }
        if room == 0 {
            return Poll::Pending;
        }
        if let Some(output) = this.results[head].take() {
            *this.next_out += 1;
            *this.head_slot = if head + 1 == *this.limit { 0 } else { head + 1 };
            return Poll::Ready(Some(output));
        }
        if *this.upstream_done && *this.next_out == *this.next_seq {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}
