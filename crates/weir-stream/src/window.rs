//! Event-time windows: tumbling, sliding and session, closed by watermarks, with allowed
//! lateness and a side output for late items.
//!
//! Times are whatever unit the caller's `event_time` function returns (milliseconds since
//! the epoch, say). The **watermark** is the largest event time seen minus the allowed
//! out-of-orderness: the claim that no item older than it is still expected. A window
//! `[start, end)` **fires** when the watermark reaches `end`. Until the watermark reaches
//! `end + allowed_lateness`, a late item still joins its window and the window fires again
//! with everything it holds ([`Firing::Late`]); after that the window is forgotten and an
//! item for it goes to the side output ([`WindowEvent::Late`]). When the upstream ends, every
//! open window fires.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

/// How items are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Back-to-back windows of `size`: each item in exactly one.
    Tumbling {
        /// Window length in event-time units; windows start at multiples of it.
        size: u64,
    },
    /// Windows of `size` starting every `slide`: each item in `size / slide` windows.
    Sliding {
        /// Window length in event-time units.
        size: u64,
        /// Distance between window starts; windows start at multiples of it.
        slide: u64,
    },
    /// Windows that grow while items keep coming less than `gap` apart.
    Session {
        /// The silence that ends a session.
        gap: u64,
    },
}

/// A window kind plus the watermark rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// How items are grouped.
    pub kind: WindowKind,
    /// How far behind the newest item an item may arrive and still count as on time.
    pub max_out_of_orderness: u64,
    /// How long after the watermark passes a window's end it still takes late items.
    pub allowed_lateness: u64,
}

impl WindowSpec {
    /// Tumbling windows of `size`, no out-of-orderness or lateness allowed.
    ///
    /// # Panics
    /// When `size` is 0.
    pub fn tumbling(size: u64) -> Self {
        assert!(size > 0, "a window size must be above zero");
        Self::of(WindowKind::Tumbling { size })
    }

    /// Sliding windows of `size` starting every `slide`, no out-of-orderness or lateness
    /// allowed.
    ///
    /// # Panics
    /// When `size` or `slide` is 0, or `slide > size`.
    pub fn sliding(size: u64, slide: u64) -> Self {
        assert!(
            size > 0 && slide > 0 && slide <= size,
            "need 0 < slide <= size"
        );
        Self::of(WindowKind::Sliding { size, slide })
    }

    /// Session windows that close after `gap` without an item, no out-of-orderness or
    /// lateness allowed.
    ///
    /// # Panics
    /// When `gap` is 0.
    pub fn session(gap: u64) -> Self {
        assert!(gap > 0, "a session gap must be above zero");
        Self::of(WindowKind::Session { gap })
    }

    fn of(kind: WindowKind) -> Self {
        Self {
            kind,
            max_out_of_orderness: 0,
            allowed_lateness: 0,
        }
    }

    /// Sets the out-of-orderness the watermark allows for.
    pub fn with_out_of_orderness(mut self, max: u64) -> Self {
        self.max_out_of_orderness = max;
        self
    }

    /// Sets the allowed lateness.
    pub fn with_allowed_lateness(mut self, lateness: u64) -> Self {
        self.allowed_lateness = lateness;
        self
    }
}

/// Why a window was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// The watermark passed the window's end (or the upstream ended).
    OnTime,
    /// A late item joined the window within the allowed lateness; the window is emitted
    /// again with all its items.
    Late,
}

/// A window's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window<T> {
    /// The first event time it covers (inclusive): a multiple of `size` (tumbling) or
    /// `slide` (sliding), or a session's earliest item.
    pub start: u64,
    /// The end (exclusive): `start + size`, or a session's latest item plus `gap`. The
    /// window fires when the watermark reaches it.
    pub end: u64,
    /// The items, in arrival order.
    pub items: Vec<T>,
    /// Why it was emitted.
    pub firing: Firing,
}

/// What a [`Windows`] stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowEvent<T> {
    /// A window that fired: on time, or again for a late item ([`Window::firing`]).
    Window(Window<T>),
    /// The side output: an item too late for any window it belongs to.
    Late(T),
}

#[derive(Debug)]
struct OpenWindow<T> {
    end: u64,
    items: Vec<T>,
    fired: bool,
}

pin_project_lite::pin_project! {
    /// The stream returned by [`WeirStreamExt::windows`](crate::WeirStreamExt::windows).
    ///
    /// * **Backpressure:** one upstream item is taken per poll when no window is ready, so
    ///   the consumer's pace sets the intake.
    /// * **Memory:** bounded by the open windows: those whose end plus allowed lateness the
    ///   watermark has not yet passed.
    /// * **Cancel safety:** windows and pending emissions live in the stream.
    ///
    /// ```
    /// # futures_lite::future::block_on(async {
    /// use futures_lite::{stream, StreamExt};
    /// use weir_stream::{WeirStreamExt, WindowEvent, WindowSpec};
    ///
    /// let events = stream::iter(vec![1u64, 3, 12, 15, 4, 25]);
    /// let out: Vec<_> = events.windows(WindowSpec::tumbling(10), |&t| t).collect().await;
    /// let WindowEvent::Window(first) = &out[0] else { panic!() };
    /// assert_eq!((first.start, first.end, first.items.clone()), (0, 10, vec![1, 3]));
    /// assert_eq!(out[1], WindowEvent::Late(4), "the watermark had passed 10");
    /// # });
    /// ```
    #[must_use = "streams do nothing unless polled"]
    pub struct Windows<S: Stream, K> {
        #[pin]
        upstream: S,
        event_time: K,
        spec: WindowSpec,
        open: BTreeMap<u64, OpenWindow<S::Item>>,
        ready: VecDeque<WindowEvent<S::Item>>,
        max_seen: Option<u64>,
        upstream_done: bool,
    }
}

impl<S: Stream, K> std::fmt::Debug for Windows<S, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Windows")
            .field("spec", &self.spec)
            .field("open", &self.open.len())
            .finish()
    }
}

impl<S: Stream, K> Windows<S, K> {
    pub(crate) fn new(upstream: S, spec: WindowSpec, event_time: K) -> Self {
        Self {
            upstream,
            event_time,
            spec,
            open: BTreeMap::new(),
            ready: VecDeque::new(),
            max_seen: None,
            upstream_done: false,
        }
    }
}

impl<S, K> Stream for Windows<S, K>
where
    S: Stream,
    S::Item: Clone,
    K: FnMut(&S::Item) -> u64,
{
    type Item = WindowEvent<S::Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(event));
            }
            if *this.upstream_done {
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => {
                    let time = (this.event_time)(&item);
                    let mut state = WindowState {
                        spec: this.spec,
                        open: this.open,
                        ready: this.ready,
                    };
                    state.accept(item, time, *this.max_seen);
                    *this.max_seen = Some(this.max_seen.map_or(time, |m| m.max(time)));
                    let watermark = this
                        .max_seen
                        .map(|m| m.saturating_sub(this.spec.max_out_of_orderness));
                    if let Some(watermark) = watermark {
                        state.advance(watermark);
                    }
                }
                Poll::Ready(None) => {
                    *this.upstream_done = true;
                    let mut state = WindowState {
                        spec: this.spec,
                        open: this.open,
                        ready: this.ready,
                    };
                    state.advance(u64::MAX);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The window bookkeeping, apart from the stream plumbing.
struct WindowState<'a, T> {
    spec: &'a WindowSpec,
    open: &'a mut BTreeMap<u64, OpenWindow<T>>,
    ready: &'a mut VecDeque<WindowEvent<T>>,
}

impl<T: Clone> WindowState<'_, T> {
    fn watermark(&self, max_seen: Option<u64>) -> Option<u64> {
        max_seen.map(|m| m.saturating_sub(self.spec.max_out_of_orderness))
    }

    /// Whether a window ending at `end` has been forgotten at `watermark`.
    fn expired(&self, end: u64, watermark: Option<u64>) -> bool {
        watermark.is_some_and(|w| end.saturating_add(self.spec.allowed_lateness) <= w)
    }

    fn accept(&mut self, item: T, time: u64, max_seen: Option<u64>) {
        let watermark = self.watermark(max_seen);
        match self.spec.kind {
            WindowKind::Tumbling { size } => {
                let start = time - time % size;
                self.add_to_fixed(item, time, &[start], size, watermark);
            }
            WindowKind::Sliding { size, slide } => {
                let last = time - time % slide;
                let starts: Vec<u64> = (0..=size / slide)
                    .filter_map(|k| last.checked_sub(k * slide))
                    .filter(|&s| s + size > time)
                    .collect();
                self.add_to_fixed(item, time, &starts, size, watermark);
            }
            WindowKind::Session { gap } => self.add_to_session(item, time, gap, watermark),
        }
    }

    fn add_to_fixed(
        &mut self,
        item: T,
        _time: u64,
        starts: &[u64],
        size: u64,
        watermark: Option<u64>,
    ) {
        let mut placed = false;
        for &start in starts {
            let end = start + size;
            if self.expired(end, watermark) {
                continue;
            }
            let window = self.open.entry(start).or_insert_with(|| OpenWindow {
                end,
                items: Vec::new(),
                fired: false,
            });
            window.items.push(item.clone());
            placed = true;
            if window.fired {
                self.ready.push_back(WindowEvent::Window(Window {
                    start,
                    end,
                    items: window.items.clone(),
                    firing: Firing::Late,
                }));
            }
        }
        if !placed {
            self.ready.push_back(WindowEvent::Late(item));
        }
    }

    fn add_to_session(&mut self, item: T, time: u64, gap: u64, watermark: Option<u64>) {
        let (mut start, mut end) = (time, time.saturating_add(gap));
        if self.expired(end, watermark) {
            self.ready.push_back(WindowEvent::Late(item));
            return;
        }
        // Merge every open session that overlaps [start, end).
        let overlapping: Vec<u64> = self
            .open
            .range(..end)
            .filter(|(_, w)| w.end > start)
            .map(|(&s, _)| s)
            .collect();
        let mut items = Vec::new();
        let mut fired = false;
        for s in overlapping {
            let window = self.open.remove(&s).expect("listed above");
            start = start.min(s);
            end = end.max(window.end);
            fired |= window.fired;
            items.extend(window.items);
        }
        items.push(item);
        if fired {
            self.ready.push_back(WindowEvent::Window(Window {
                start,
                end,
                items: items.clone(),
                firing: Firing::Late,
            }));
        }
        self.open.insert(start, OpenWindow { end, items, fired });
    }

    /// Fires windows the watermark has passed and forgets expired ones.
    fn advance(&mut self, watermark: u64) {
        let mut due: Vec<(u64, u64)> = self
            .open
            .iter()
            .filter(|(_, w)| !w.fired && w.end <= watermark)
            .map(|(&s, w)| (s, w.end))
            .collect();
        due.sort_by_key(|&(start, end)| (end, start));
        for (start, end) in due {
            let keep = !self.expired(end, Some(watermark));
            let window = self.open.get_mut(&start).expect("listed above");
            let items = if keep {
                window.items.clone()
            } else {
                std::mem::take(&mut window.items)
            };
            window.fired = true;
            self.ready.push_back(WindowEvent::Window(Window {
                start,
                end,
                items,
                firing: Firing::OnTime,
            }));
        }
        let allowed = self.spec.allowed_lateness;
        self.open
            .retain(|_, w| !(w.fired && w.end.saturating_add(allowed) <= watermark));
    }
}
