//! Rate control: throttle, debounce and sample.

use std::num::NonZeroU32;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::Stream;

use crate::alarm::Alarm;
use crate::Timer;

pin_project_lite::pin_project! {
    /// The stream returned by [`WeirStreamExt::throttle`](crate::WeirStreamExt::throttle).
    ///
    /// Items pass at most `count` per `per`, evenly spaced (`per / count` apart); an item
    /// that comes early waits. Nothing is dropped.
    ///
    /// * **Backpressure:** while waiting, the upstream is not polled.
    /// * **Cancel safety:** the waiting item is held by the stream, not the `next()` future.
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct Throttle<S: Stream, T: Timer> {
        #[pin]
        upstream: S,
        #[pin]
        alarm: Alarm<T>,
        interval: Duration,
        next_allowed: Option<Instant>,
    }
}

impl<S: Stream, T: Timer> Throttle<S, T> {
    pub(crate) fn new(upstream: S, count: NonZeroU32, per: Duration, timer: T) -> Self {
        Self {
            upstream,
            alarm: Alarm::new(timer),
            interval: per / count.get(),
            next_allowed: None,
        }
    }
}

impl<S: Stream, T: Timer> Stream for Throttle<S, T> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        if let Some(at) = *this.next_allowed {
            if this.alarm.now() < at {
                if this.alarm.deadline() != Some(at) {
                    this.alarm.as_mut().set(at);
                }
                if this.alarm.as_mut().poll_fired(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        match this.upstream.poll_next(cx) {
            Poll::Ready(Some(item)) => {
                let now = this.alarm.now();
                // Spacing is kept from the slot the item was allowed in, not from when the
                // consumer came back, so a slow consumer does not earn a burst.
                let base = this.next_allowed.map_or(now, |at| at.max(now));
                *this.next_allowed = Some(base + *this.interval);
                Poll::Ready(Some(item))
            }
            other => other,
        }
    }
}

pin_project_lite::pin_project! {
    /// The stream returned by [`WeirStreamExt::debounce`](crate::WeirStreamExt::debounce).
    ///
    /// Emits an item only once `quiet` has passed with no newer item; newer items replace
    /// it. When the upstream ends, the pending item is emitted at once.
    ///
    /// * **Backpressure:** the upstream is drained on every poll (replaced items are
    ///   dropped by design).
    /// * **Cancel safety:** the pending item is held by the stream.
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct Debounce<S: Stream, T: Timer> {
        #[pin]
        upstream: S,
        #[pin]
        alarm: Alarm<T>,
        quiet: Duration,
        pending: Option<S::Item>,
        upstream_done: bool,
    }
}

impl<S: Stream, T: Timer> Debounce<S, T> {
    pub(crate) fn new(upstream: S, quiet: Duration, timer: T) -> Self {
        Self {
            upstream,
            alarm: Alarm::new(timer),
            quiet,
            pending: None,
            upstream_done: false,
        }
    }
}

impl<S: Stream, T: Timer> Stream for Debounce<S, T> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        while !*this.upstream_done {
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    *this.pending = Some(item);
                    let at = this.alarm.now() + *this.quiet;
                    this.alarm.as_mut().set(at);
                }
                Poll::Ready(None) => *this.upstream_done = true,
                Poll::Pending => break,
            }
        }
        if *this.upstream_done {
            return Poll::Ready(this.pending.take());
        }
        if this.pending.is_some() && this.alarm.as_mut().poll_fired(cx).is_ready() {
            return Poll::Ready(this.pending.take());
        }
        Poll::Pending
    }
}

pin_project_lite::pin_project! {
    /// The stream returned by [`WeirStreamExt::sample`](crate::WeirStreamExt::sample).
    ///
    /// Every `period`, emits the latest item that arrived during that period, if any.
    /// Earlier items of the period are dropped by design. When the upstream ends, the
    /// latest unsent item is emitted at once.
    ///
    /// * **Backpressure:** the upstream is drained on every poll; a consumer slower than the
    ///   period gets the latest item when it comes back, and the missed ticks are skipped.
    /// * **Cancel safety:** the latest item is held by the stream.
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct Sample<S: Stream, T: Timer> {
        #[pin]
        upstream: S,
        #[pin]
        alarm: Alarm<T>,
        period: Duration,
        next_tick: Option<Instant>,
        latest: Option<S::Item>,
        upstream_done: bool,
    }
}

impl<S: Stream, T: Timer> Sample<S, T> {
    pub(crate) fn new(upstream: S, period: Duration, timer: T) -> Self {
        Self {
            upstream,
            alarm: Alarm::new(timer),
            period,
            next_tick: None,
            latest: None,
            upstream_done: false,
        }
    }
}

impl<S: Stream, T: Timer> Stream for Sample<S, T> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        if this.next_tick.is_none() {
            let first = this.alarm.now() + *this.period;
            *this.next_tick = Some(first);
            this.alarm.as_mut().set(first);
        }
        while !*this.upstream_done {
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => *this.latest = Some(item),
                Poll::Ready(None) => *this.upstream_done = true,
                Poll::Pending => break,
            }
        }
        if *this.upstream_done {
            return Poll::Ready(this.latest.take());
        }
        while this.alarm.as_mut().poll_fired(cx).is_ready() {
            let next = this.next_tick.map_or_else(|| this.alarm.now(), |t| t) + *this.period;
            *this.next_tick = Some(next);
            this.alarm.as_mut().set(next);
            if let Some(item) = this.latest.take() {
                return Poll::Ready(Some(item));
            }
        }
        Poll::Pending
    }
}
