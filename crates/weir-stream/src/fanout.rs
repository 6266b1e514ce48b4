//! Fan-out: every item to each of N consumers, with a stated policy for a slow one.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures_core::Stream;

use crate::{DropCounter, OverflowPolicy, Overflowed};

/// Wakes every consumer that is waiting: the source's waker. Whichever consumer polls the
/// source, an item it produces may be for anyone.
#[derive(Debug, Default)]
struct WakeAll {
    wakers: Mutex<Vec<Option<Waker>>>,
}

impl Wake for WakeAll {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let wakers: Vec<Waker> = {
            let mut slots = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
            slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

struct State<S: Stream> {
    source: Pin<Box<S>>,
    queues: Vec<VecDeque<S::Item>>,
    connected: Vec<bool>,
    overflowed: Vec<bool>,
    source_done: bool,
}

struct Shared<S: Stream> {
    state: Mutex<State<S>>,
    wake_all: Arc<WakeAll>,
    source_waker: Waker,
    capacity: usize,
    policy: OverflowPolicy,
    drops: Vec<DropCounter>,
}

impl<S: Stream> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One consumer of a [`fan_out`](crate::WeirStreamExt::fan_out).
///
/// * **Backpressure:** with [`OverflowPolicy::Backpressure`] the source is read only when
///   every connected consumer's queue has room: all consumers go at the pace of the slowest.
///   With `DropOldest`/`DropNewest`, a full consumer loses items (counted by
///   [`FanOutReceiver::drops`]) and the others go on. With `Fail`, a full consumer is
///   disconnected (it reads `Err(Overflowed)`, then the end) and the others go on.
/// * **Fairness:** the source is read by whichever consumer asks; the items go to all.
/// * **Cancel safety:** items wait in the consumer's queue; dropping `next()` loses nothing.
///   Dropping a consumer disconnects it and frees the others from waiting for it.
#[must_use = "streams do nothing unless polled"]
pub struct FanOutReceiver<S: Stream> {
    shared: Arc<Shared<S>>,
    index: usize,
}

impl<S: Stream> std::fmt::Debug for FanOutReceiver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOutReceiver")
            .field("index", &self.index)
            .finish()
    }
}

pub(crate) fn fan_out<S>(
    source: S,
    consumers: NonZeroUsize,
    capacity: NonZeroUsize,
    policy: OverflowPolicy,
) -> Vec<FanOutReceiver<S>>
where
    S: Stream,
    S::Item: Clone,
{
    let n = consumers.get();
    let wake_all = Arc::new(WakeAll {
        wakers: Mutex::new(vec![None; n]),
    });
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            source: Box::pin(source),
            queues: (0..n)
                .map(|_| VecDeque::with_capacity(capacity.get()))
                .collect(),
            connected: vec![true; n],
            overflowed: vec![false; n],
            source_done: false,
        }),
        source_waker: Waker::from(wake_all.clone()),
        wake_all,
        capacity: capacity.get(),
        policy,
        drops: (0..n).map(|_| DropCounter::new()).collect(),
    });
    (0..n)
        .map(|index| FanOutReceiver {
            shared: shared.clone(),
            index,
        })
        .collect()
}

impl<S: Stream> FanOutReceiver<S> {
    /// Items this consumer lost to its overflow policy.
    pub fn drops(&self) -> DropCounter {
        self.shared.drops[self.index].clone()
    }
}

impl<S> Stream for FanOutReceiver<S>
where
    S: Stream,
    S::Item: Clone,
{
    type Item = Result<S::Item, Overflowed>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let shared = &*self.shared;
        let me = self.index;
        let mut state = shared.lock();
        loop {
            if let Some(item) = state.queues[me].pop_front() {
                if shared.policy == OverflowPolicy::Backpressure {
                    // Room was made: a consumer waiting on a full queue may read the source.
                    drop(state);
                    shared.wake_all.wake_by_ref();
                }
                return Poll::Ready(Some(Ok(item)));
            }
            if state.overflowed[me] {
                state.overflowed[me] = false;
                return Poll::Ready(Some(Err(Overflowed {
                    capacity: shared.capacity,
                })));
            }
            if state.source_done || !state.connected[me] {
                return Poll::Ready(None);
            }
            shared
                .wake_all
                .wakers
                .lock()
                .unwrap_or_else(|e| e.into_inner())[me] = Some(cx.waker().clone());
            if shared.policy == OverflowPolicy::Backpressure {
                let blocked = state
                    .queues
                    .iter()
                    .zip(&state.connected)
                    .any(|(queue, &connected)| connected && queue.len() >= shared.capacity);
                if blocked {
                    return Poll::Pending;
                }
            }
            let mut source_cx = Context::from_waker(&shared.source_waker);
            match state.source.as_mut().poll_next(&mut source_cx) {
                Poll::Ready(Some(item)) => {
                    distribute(&mut state, shared, item);
                    drop(state);
                    shared.wake_all.wake_by_ref();
                    state = shared.lock();
                }
                Poll::Ready(None) => {
                    state.source_done = true;
                    drop(state);
                    shared.wake_all.wake_by_ref();
                    state = shared.lock();
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn distribute<S: Stream>(state: &mut State<S>, shared: &Shared<S>, item: S::Item)
where
    S::Item: Clone,
{
    for index in 0..state.queues.len() {
        if !state.connected[index] {
            continue;
        }
        let queue = &mut state.queues[index];
        if queue.len() < shared.capacity {
            queue.push_back(item.clone());
            continue;
        }
        match shared.policy {
            OverflowPolicy::DropOldest => {
                queue.pop_front();
                queue.push_back(item.clone());
                shared.drops[index].add(1);
            }
            OverflowPolicy::DropNewest => shared.drops[index].add(1),
            OverflowPolicy::Fail => {
                queue.clear();
                state.connected[index] = false;
                state.overflowed[index] = true;
            }
            // Not read while a queue is full.
            OverflowPolicy::Backpressure => queue.push_back(item.clone()),
        }
    }
}

impl<S: Stream> Drop for FanOutReceiver<S> {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.connected[self.index] = false;
            state.queues[self.index].clear();
        }
        // Others may have been waiting for this consumer's room.
        self.shared.wake_all.wake_by_ref();
    }
}
