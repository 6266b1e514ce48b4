//! Reusable pinned slots for in-flight futures: allocation per stage, not per item.
//!
//! A concurrent map keeps at most `limit` futures in flight. Each slot boxes its first
//! future once; later futures are written into the same box with [`Pin::set`], which drops
//! the finished future in place. After warm-up, running a million items allocates nothing.
//! (All safe code: `Pin::set` is the safe way to replace a pinned value.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

#[derive(Debug)]
pub(crate) struct FutureSlots<F> {
    slots: Vec<Option<Pin<Box<F>>>>,
    active: Vec<bool>,
    in_flight: usize,
}

impl<F: Future> FutureSlots<F> {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            slots: (0..limit).map(|_| None).collect(),
            active: vec![false; limit],
            in_flight: 0,
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Starts `future` in slot `index`, which must not be active.
    pub(crate) fn insert_at(&mut self, index: usize, future: F) {
        debug_assert!(!self.active[index], "slot {index} is busy");
        match &mut self.slots[index] {
            Some(boxed) => boxed.set(future),
            empty => *empty = Some(Box::pin(future)),
        }
        self.active[index] = true;
        self.in_flight += 1;
    }

    /// Polls the future in slot `index` (pending if the slot is not active); a finished
    /// future leaves its slot inactive, its box kept for the next future.
    pub(crate) fn poll(&mut self, index: usize, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self.active[index] {
            return Poll::Pending;
        }
        let future = self.slots[index]
            .as_mut()
            .expect("an active slot holds a future");
        let output = future.as_mut().poll(cx);
        if output.is_ready() {
            self.active[index] = false;
            self.in_flight -= 1;
        }
        output
    }
}
