//! Deadlines on a stream: per item, and for the stream as a whole going quiet.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use crate::alarm::Alarm;
use crate::Timer;

/// The next item took longer than the per-item timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(pub Duration);

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no item within {:?}", self.0)
    }
}

impl std::error::Error for Elapsed {}

pin_project_lite::pin_project! {
    /// The stream returned by [`WeirStreamExt::timeout_each`](crate::WeirStreamExt::timeout_each).
    ///
    /// Yields `Err(Elapsed)` each time `limit` passes without an item, and goes on waiting:
    /// the caller decides whether a slow item is fatal.
    ///
    /// * **Cancel safety:** the deadline belongs to the stream; dropping `next()` keeps it.
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct TimeoutEach<S, T: Timer> {
        #[pin]
        upstream: S,
        #[pin]
        alarm: Alarm<T>,
        limit: Duration,
    }
}

impl<S, T: Timer> TimeoutEach<S, T> {
    pub(crate) fn new(upstream: S, limit: Duration, timer: T) -> Self {
        Self {
            upstream,
            alarm: Alarm::new(timer),
            limit,
        }
    }
}

impl<S: Stream, T: Timer> Stream for TimeoutEach<S, T> {
    type Item = Result<S::Item, Elapsed>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if this.alarm.deadline().is_none() {
            let at = this.alarm.now() + *this.limit;
            this.alarm.as_mut().set(at);
        }
        match this.upstream.poll_next(cx) {
            Poll::Ready(item) => {
                this.alarm.as_mut().clear();
                Poll::Ready(item.map(Ok))
            }
            Poll::Pending => match this.alarm.as_mut().poll_fired(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Elapsed(*this.limit)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// The stream went quiet for longer than its idle timeout, and was ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeout(pub Duration);

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stream idle for {:?}", self.0)
    }
}

impl std::error::Error for IdleTimeout {}

pin_project_lite::pin_project! {
    /// The stream returned by [`WeirStreamExt::idle_timeout`](crate::WeirStreamExt::idle_timeout).
    ///
    /// Passes items through; when `limit` passes without one, yields `Err(IdleTimeout)` and
    /// ends, dropping the upstream's remaining items unread.
    ///
    /// * **Backpressure:** none added: the upstream is polled only when this stream is.
    /// * **Cancel safety:** the deadline belongs to the stream; dropping `next()` keeps it.
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct IdleTimeoutStream<S, T: Timer> {
        #[pin]
        inner: TimeoutEach<S, T>,
        ended: bool,
    }
}

impl<S, T: Timer> IdleTimeoutStream<S, T> {
    pub(crate) fn new(upstream: S, limit: Duration, timer: T) -> Self {
        Self {
            inner: TimeoutEach::new(upstream, limit, timer),
            ended: false,
        }
    }
}

impl<S: Stream, T: Timer> Stream for IdleTimeoutStream<S, T> {
    type Item = Result<S::Item, IdleTimeout>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        match this.inner.poll_next(cx) {
            Poll::Ready(Some(Err(Elapsed(limit)))) => {
                *this.ended = true;
                Poll::Ready(Some(Err(IdleTimeout(limit))))
            }
            Poll::Ready(Some(Ok(item))) => Poll::Ready(Some(Ok(item))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

pin_project_lite::pin_project! {
    /// The stream returned by [`WeirStreamExt::take_until`](crate::WeirStreamExt::take_until).
    ///
    /// Ends as soon as `stop` completes (a cancellation token's `cancelled()`, a shutdown
    /// signal, a deadline). `stop` is checked before each item, so once it has completed no
    /// further item is taken from the upstream.
    ///
    /// * **Cancel safety:** items are never held; dropping `next()` loses nothing.
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct TakeUntil<S, F> {
        #[pin]
        upstream: S,
        #[pin]
        stop: Option<F>,
    }
}

impl<S, F> TakeUntil<S, F> {
    pub(crate) fn new(upstream: S, stop: F) -> Self {
        Self {
            upstream,
            stop: Some(stop),
        }
    }
}

impl<S: Stream, F: Future> Stream for TakeUntil<S, F> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        match this.stop.as_mut().as_pin_mut() {
            None => return Poll::Ready(None),
            Some(stop) => {
                if stop.poll(cx).is_ready() {
                    this.stop.set(None);
                    return Poll::Ready(None);
                }
            }
        }
        this.upstream.poll_next(cx)
    }
}
