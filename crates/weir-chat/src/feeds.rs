//! The subscriptions of one session (its rooms and topics), polled by the session's own
//! task: no task or channel per subscription.
//!
//! A publish wakes the session directly; the session takes what is ready from all its
//! subscriptions (round-robin, so a busy topic cannot starve a quiet one) and writes it in
//! one batch. When the client reads slowly, the session waits on its socket, stops taking
//! events, and its cursors fall behind in the hub, where the slow-subscriber policy applies;
//! the publisher never waits. (An earlier design forwarded each subscription through its own
//! task into a channel: two wake-ups and a queue per delivery, and a task, a channel and
//! their buffers per idle subscriber.)

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use weir_pubsub::{Event, Subscription};

use crate::feed_key::FeedKey;
use crate::render::{encode, Encoding};

struct Feed {
    key: FeedKey,
    subscription: Subscription,
}

/// A session's subscriptions.
#[derive(Default)]
pub(crate) struct Feeds {
    feeds: Vec<Feed>,
    turn: usize,
}

impl Feeds {
    pub(crate) fn contains(&self, key: &FeedKey) -> bool {
        self.feeds.iter().any(|feed| &feed.key == key)
    }

    pub(crate) fn len(&self) -> usize {
        self.feeds.len()
    }

    pub(crate) fn has_rooms(&self) -> bool {
        self.feeds
            .iter()
            .any(|feed| matches!(feed.key, FeedKey::Room(_)))
    }

    /// The rooms followed.
    pub(crate) fn rooms(&self) -> Vec<String> {
        self.feeds
            .iter()
            .filter_map(|feed| match &feed.key {
                FeedKey::Room(room) => Some(room.clone()),
                FeedKey::Topic(_) => None,
            })
            .collect()
    }

    pub(crate) fn insert(&mut self, key: FeedKey, subscription: Subscription) {
        // Exactly one more: a Vec's first growth makes room for four feeds (a kilobyte),
        // and most connections follow one or two.
        self.feeds.reserve_exact(1);
        self.feeds.push(Feed { key, subscription });
    }

    /// Ends a feed; false if there was none.
    pub(crate) fn remove(&mut self, key: &FeedKey) -> bool {
        let before = self.feeds.len();
        self.feeds.retain(|feed| &feed.key != key);
        self.feeds.len() < before
    }

    /// Up to `max` ready events in `encoding`, or `Pending` (woken by the next publish)
    /// when none is ready. Cancel-safe: an event is taken from a subscription only when it
    /// is returned.
    pub(crate) fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
        encoding: Encoding,
        max: usize,
    ) -> Poll<Vec<Bytes>> {
        let mut batch = Vec::new();
        let mut ended = Vec::new();
        // Rounds over every feed, one event each, until nothing is ready or the batch is full.
        loop {
            let mut progressed = false;
            let count = self.feeds.len();
            for step in 0..count {
                if batch.len() >= max {
                    break;
                }
                let index = (self.turn + step) % count;
                if ended.contains(&index) {
                    continue;
                }
                let feed = &mut self.feeds[index];
                match Pin::new(&mut feed.subscription).poll_next(cx) {
                    Poll::Ready(Some(event)) => {
                        if matches!(event, Event::Disconnected { .. }) {
                            ended.push(index);
                        }
                        batch.push(encode(event, &feed.key, encoding));
                        progressed = true;
                    }
                    Poll::Ready(None) => ended.push(index),
                    Poll::Pending => {}
                }
            }
            self.turn = self.turn.wrapping_add(1);
            if !progressed || batch.len() >= max {
                break;
            }
        }
        // The hub ended these subscriptions (after saying so): forget them.
        if !ended.is_empty() {
            let mut index = 0;
            self.feeds.retain(|_| {
                let keep = !ended.contains(&index);
                index += 1;
                keep
            });
        }
        if batch.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(batch)
        }
    }
}
