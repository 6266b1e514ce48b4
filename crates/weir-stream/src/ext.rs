//! The extension trait that puts every operator on every `Stream`.

use std::future::Future;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use futures_core::Stream;

use crate::batch::Batch;
use crate::buffer::Buffer;
use crate::detach::{detach, Detached, Plain, Spawner};
use crate::fanout::{fan_out, FanOutReceiver};
use crate::map_concurrent::{MapConcurrent, MapConcurrentOrdered};
use crate::rate::{Debounce, Sample, Throttle};
use crate::timeout::{IdleTimeoutStream, TakeUntil, TimeoutEach};
use crate::window::{WindowSpec, Windows};
use crate::{OverflowPolicy, Timer};

/// Weir's stream operators. Implemented for every [`Stream`]; a `TryStream` is a stream of
/// `Result`s and takes the same operators.
///
/// Every operator states, in its type's documentation, its backpressure behaviour, its
/// cancel safety and (where it has several inputs or outputs) its fairness.
pub trait WeirStreamExt: Stream + Sized {
    /// A bounded read-ahead queue with an overflow policy; see [`Buffer`].
    ///
    /// ```
    /// # futures_lite::future::block_on(async {
    /// use std::num::NonZeroUsize;
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::{OverflowPolicy, WeirStreamExt};
    ///
    /// let cap = NonZeroUsize::new(2).unwrap();
    /// let mut newest = stream::iter(1..=5).buffer(cap, OverflowPolicy::DropOldest);
    /// let drops = newest.drops();
    /// // The first poll takes every ready item: only the last two fit.
    /// assert_eq!(newest.next().await, Some(Ok(4)));
    /// assert_eq!(drops.get(), 3);
    /// # });
    /// ```
    fn buffer(self, capacity: NonZeroUsize, policy: OverflowPolicy) -> Buffer<Self> {
        Buffer::new(self, capacity, policy)
    }

    /// Maps each item to a future and runs up to `limit` at once; results in completion
    /// order. See [`MapConcurrent`].
    ///
    /// ```
    /// # futures_lite::future::block_on(async {
    /// use std::num::NonZeroUsize;
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::WeirStreamExt;
    ///
    /// let limit = NonZeroUsize::new(4).unwrap();
    /// let mut doubled: Vec<u32> = stream::iter(1..=8).map_concurrent(limit, |x| async move { x * 2 }).collect().await;
    /// doubled.sort();
    /// assert_eq!(doubled, vec![2, 4, 6, 8, 10, 12, 14, 16]);
    /// # });
    /// ```
    fn map_concurrent<F, Fut>(self, limit: NonZeroUsize, f: F) -> MapConcurrent<Self, F, Fut>
    where
        F: FnMut(Self::Item) -> Fut,
        Fut: Future,
    {
        MapConcurrent::new(self, limit, f)
    }

    /// As [`map_concurrent`](Self::map_concurrent), with results in input order. See
    /// [`MapConcurrentOrdered`].
    ///
    /// ```
    /// # futures_lite::future::block_on(async {
    /// use std::num::NonZeroUsize;
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::WeirStreamExt;
    ///
    /// let limit = NonZeroUsize::new(3).unwrap();
    /// let out: Vec<u32> = stream::iter(1..=5).map_concurrent_ordered(limit, |x| async move { x + 100 }).collect().await;
    /// assert_eq!(out, vec![101, 102, 103, 104, 105]);
    /// # });
    /// ```
    fn map_concurrent_ordered<F, Fut>(
        self,
        limit: NonZeroUsize,
        f: F,
    ) -> MapConcurrentOrdered<Self, F, Fut>
    where
        F: FnMut(Self::Item) -> Fut,
        Fut: Future,
    {
        MapConcurrentOrdered::new(self, limit, f)
    }

    /// Runs this stream on its own task, with a queue of `capacity` items between it and the
    /// consumer; see [`Detached`]. The stage keeps making progress while the consumer is busy.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::num::NonZeroUsize;
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::{TokioSpawner, WeirStreamExt};
    ///
    /// let four = NonZeroUsize::new(4).unwrap();
    /// let fetched = stream::iter(1..=3)
    ///     .map_concurrent(four, |x| async move { x * 10 })
    ///     .detach(&TokioSpawner, four);
    /// let mut all: Vec<u32> = fetched.collect().await;
    /// all.sort();
    /// assert_eq!(all, vec![10, 20, 30]);
    /// # }
    /// ```
    fn detach<Sp: Spawner>(self, spawner: &Sp, capacity: NonZeroUsize) -> Detached<Self::Item>
    where
        Self: Send + 'static,
        Self::Item: Send + 'static,
    {
        detach(Plain::new(self), spawner, capacity)
    }

    /// Groups items into batches of at most `max_items`, emitted when full or `max_wait`
    /// after their first item; see [`Batch`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::{num::NonZeroUsize, time::Duration};
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::{TokioTimer, WeirStreamExt};
    ///
    /// let three = NonZeroUsize::new(3).unwrap();
    /// let batches: Vec<Vec<u8>> = stream::iter(1..=7).batch(three, Duration::from_millis(10), TokioTimer).collect().await;
    /// assert_eq!(batches, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
    /// # }
    /// ```
    fn batch<T: Timer>(
        self,
        max_items: NonZeroUsize,
        max_wait: Duration,
        timer: T,
    ) -> Batch<Self, T> {
        Batch::new(self, max_items, max_wait, timer)
    }

    /// Lets at most `count` items through per `per`, evenly spaced; see [`Throttle`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::{num::NonZeroU32, time::Duration};
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::{TokioTimer, WeirStreamExt};
    ///
    /// let start = tokio::time::Instant::now();
    /// let ten_per_second = NonZeroU32::new(10).unwrap();
    /// let n = stream::iter(0..5).throttle(ten_per_second, Duration::from_secs(1), TokioTimer).count().await;
    /// assert_eq!(n, 5);
    /// assert!(start.elapsed() >= Duration::from_millis(400));
    /// # }
    /// ```
    fn throttle<T: Timer>(self, count: NonZeroU32, per: Duration, timer: T) -> Throttle<Self, T> {
        Throttle::new(self, count, per, timer)
    }

    /// Emits an item once `quiet` has passed without a newer one; see [`Debounce`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::{TokioTimer, WeirStreamExt};
    ///
    /// // A burst of keystrokes: only the last survives.
    /// let last: Vec<char> = stream::iter("weir".chars()).debounce(Duration::from_millis(300), TokioTimer).collect().await;
    /// assert_eq!(last, vec!['r']);
    /// # }
    /// ```
    fn debounce<T: Timer>(self, quiet: Duration, timer: T) -> Debounce<Self, T> {
        Debounce::new(self, quiet, timer)
    }

    /// Every `period`, emits the latest item of that period; see [`Sample`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::{TokioTimer, WeirStreamExt};
    ///
    /// let sampled: Vec<u32> = stream::iter(1..=100).sample(Duration::from_secs(1), TokioTimer).collect().await;
    /// assert_eq!(sampled, vec![100]);
    /// # }
    /// ```
    fn sample<T: Timer>(self, period: Duration, timer: T) -> Sample<Self, T> {
        Sample::new(self, period, timer)
    }

    /// Yields `Err(Elapsed)` whenever an item takes longer than `limit`, and goes on; see
    /// [`TimeoutEach`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::{TokioTimer, WeirStreamExt};
    ///
    /// let mut silent = std::pin::pin!(stream::pending::<u8>().timeout_each(Duration::from_secs(1), TokioTimer));
    /// assert!(silent.next().await.unwrap().is_err());
    /// # }
    /// ```
    fn timeout_each<T: Timer>(self, limit: Duration, timer: T) -> TimeoutEach<Self, T> {
        TimeoutEach::new(self, limit, timer)
    }

    /// Ends the stream with `Err(IdleTimeout)` once `limit` passes without an item; see
    /// [`IdleTimeoutStream`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::{TokioTimer, WeirStreamExt};
    ///
    /// let items: Vec<_> = stream::iter(1..=2).chain(stream::pending()).idle_timeout(Duration::from_secs(5), TokioTimer).collect().await;
    /// assert_eq!(items.len(), 3);
    /// assert!(items[2].is_err());
    /// # }
    /// ```
    fn idle_timeout<T: Timer>(self, limit: Duration, timer: T) -> IdleTimeoutStream<Self, T> {
        IdleTimeoutStream::new(self, limit, timer)
    }

    /// Ends the stream when `stop` completes; see [`TakeUntil`].
    ///
    /// ```
    /// # futures_lite::future::block_on(async {
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::WeirStreamExt;
    ///
    /// let stopped: Vec<u8> = stream::iter(1..=3).take_until(std::future::ready(())).collect().await;
    /// assert!(stopped.is_empty());
    /// # });
    /// ```
    fn take_until<F: Future>(self, stop: F) -> TakeUntil<Self, F> {
        TakeUntil::new(self, stop)
    }

    /// Sends every item to each of `consumers` streams, each with a queue of `capacity`, and
    /// `policy` for a consumer whose queue is full; see [`FanOutReceiver`].
    ///
    /// ```
    /// # futures_lite::future::block_on(async {
    /// use std::num::NonZeroUsize;
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::{OverflowPolicy, WeirStreamExt};
    ///
    /// let two = NonZeroUsize::new(2).unwrap();
    /// let mut outs = stream::iter(1..=3).fan_out(two, two, OverflowPolicy::Backpressure);
    /// let b = outs.pop().unwrap();
    /// let a = outs.pop().unwrap();
    /// let (a, b) = futures_lite::future::zip(a.collect::<Vec<_>>(), b.collect::<Vec<_>>()).await;
    /// assert_eq!(a, vec![Ok(1), Ok(2), Ok(3)]);
    /// assert_eq!(a, b);
    /// # });
    /// ```
    fn fan_out(
        self,
        consumers: NonZeroUsize,
        capacity: NonZeroUsize,
        policy: OverflowPolicy,
    ) -> Vec<FanOutReceiver<Self>>
    where
        Self::Item: Clone,
    {
        fan_out(self, consumers, capacity, policy)
    }

    /// Groups items into event-time windows closed by watermarks; see [`Windows`].
    fn windows<K>(self, spec: WindowSpec, event_time: K) -> Windows<Self, K>
    where
        K: FnMut(&Self::Item) -> u64,
    {
        Windows::new(self, spec, event_time)
    }
}

impl<S: Stream> WeirStreamExt for S {}
