//! Running a stream on its own task, so it makes progress while its consumer is busy.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;

/// Spawns a future onto a runtime; the operators stay runtime-agnostic through it.
pub trait Spawner {
    /// Runs `future` to completion in the background.
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;
}

/// Spawns on the current tokio runtime.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSpawner;

#[cfg(feature = "tokio")]
impl Spawner for TokioSpawner {
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(tokio::spawn(future));
    }
}

/// Spawns on a smol (`async-executor`) executor.
#[cfg(feature = "smol")]
#[derive(Debug, Clone)]
pub struct SmolSpawner(pub Arc<async_executor::Executor<'static>>);

#[cfg(feature = "smol")]
impl Spawner for SmolSpawner {
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.0.spawn(future).detach();
    }
}

/// The queue between the driving task and the consumer.
#[derive(Debug)]
struct Channel<T> {
    state: Mutex<ChannelState<T>>,
    capacity: usize,
}

#[derive(Debug)]
struct ChannelState<T> {
    queue: VecDeque<T>,
    consumer: Option<Waker>,
    producer: Option<Waker>,
    producer_done: bool,
    consumer_gone: bool,
}

impl<T> Channel<T> {
    fn lock(&self) -> MutexGuard<'_, ChannelState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The stream returned by [`WeirStreamExt::detach`](crate::WeirStreamExt::detach).
///
/// * **Backpressure:** the task pulls from the upstream only while the queue has room
///   (`capacity` items): a slow consumer slows the upstream down; nothing is dropped.
/// * **Progress:** the upstream is polled by its own task whenever it is woken, whether or
///   not the consumer is polling. A detached concurrent map (its own `detach`) starts a new
///   future only when the queue has room for its result, and keeps polling the futures it
///   started even while the queue is full, so none of them stalls (futures-rs issue 2387).
/// * **Cancel safety:** dropping `next()` loses nothing. Dropping this stream stops the task
///   at its next wake-up and drops the upstream.
/// * **Allocation:** one queue of `capacity` items and one task, per stage.
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct Detached<T> {
    channel: Arc<Channel<T>>,
}

/// A stream that can be told how much room its consumer has, so that it takes in only as
/// much new work as can complete, while still driving work already started.
///
/// This is what a detached stage needs to fix futures-rs issue 2387 completely: a plain
/// stream can only be polled for its next item, so when the consumer's queue is full the
/// driving task must stop polling it, and a concurrent map's in-flight futures would stall
/// there. A [`MapConcurrent`](crate::MapConcurrent) told the room admits new futures only
/// while every in-flight one has a place for its result, and keeps polling them.
pub trait Drive: Stream {
    /// Polls for the next item. `room` is how many items the consumer can take now; an item
    /// may be returned only when `room > 0`.
    fn poll_with_room(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        room: usize,
    ) -> Poll<Option<Self::Item>>;
}

pin_project_lite::pin_project! {
    /// Any stream as a [`Drive`]: polled only when there is room.
    #[derive(Debug)]
    pub(crate) struct Plain<S> {
        #[pin]
        inner: S,
    }
}

impl<S> Plain<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S: Stream> Stream for Plain<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.project().inner.poll_next(cx)
    }
}

impl<S: Stream> Drive for Plain<S> {
    fn poll_with_room(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        room: usize,
    ) -> Poll<Option<S::Item>> {
        if room == 0 {
            return Poll::Pending;
        }
        self.poll_next(cx)
    }
}

pub(crate) fn detach<S, Sp>(upstream: S, spawner: &Sp, capacity: NonZeroUsize) -> Detached<S::Item>
where
    S: Drive + Send + 'static,
    S::Item: Send + 'static,
    Sp: Spawner,
{
    let channel = Arc::new(Channel {
        state: Mutex::new(ChannelState {
            queue: VecDeque::with_capacity(capacity.get()),
            consumer: None,
            producer: None,
            producer_done: false,
            consumer_gone: false,
        }),
        capacity: capacity.get(),
    });
    spawner.spawn(drive(upstream, channel.clone()));
    Detached { channel }
}

async fn drive<S: Drive>(upstream: S, channel: Arc<Channel<S::Item>>) {
    let mut upstream = std::pin::pin!(upstream);
    poll_fn(|cx| loop {
        let room = {
            let mut state = channel.lock();
            if state.consumer_gone {
                return Poll::Ready(());
            }
            // Registered before every wait: room freed and consumer gone both wake us.
            state.producer = Some(cx.waker().clone());
            channel.capacity - state.queue.len()
        };
        match upstream.as_mut().poll_with_room(cx, room) {
            Poll::Ready(Some(item)) => {
                let consumer = {
                    let mut state = channel.lock();
                    state.queue.push_back(item);
                    state.consumer.take()
                };
                if let Some(consumer) = consumer {
                    consumer.wake();
                }
            }
            Poll::Ready(None) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await;
    let consumer = {
        let mut state = channel.lock();
        state.producer_done = true;
        state.consumer.take()
    };
    if let Some(consumer) = consumer {
        consumer.wake();
    }
}

impl<T> Stream for Detached<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.channel.lock();
        if let Some(item) = state.queue.pop_front() {
            let producer = state.producer.take();
            drop(state);
            if let Some(producer) = producer {
                producer.wake();
            }
            return Poll::Ready(Some(item));
        }
        if state.producer_done {
            return Poll::Ready(None);
        }
        state.consumer = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> Drop for Detached<T> {
    fn drop(&mut self) {
        let producer = {
            let mut state = self.channel.lock();
            state.consumer_gone = true;
            state.queue.clear();
            state.producer.take()
        };
        if let Some(producer) = producer {
            producer.wake();
        }
    }
}
