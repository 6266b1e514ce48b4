//! One topic's offset log: a ring of recent messages, its epoch, and who waits on it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::TopicName;

/// A message as the store keeps it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Its offset in the topic.
    pub offset: u64,
    /// The bytes published.
    pub payload: Bytes,
    /// When the hub accepted it.
    pub published_at: SystemTime,
}

/// A published message as subscribers see it.
///
/// Cloning copies one reference count: a thousand subscribers reading the same message
/// touch one shared counter, not one per field (the difference was a third of the hub's
/// fan-out time in benches/fanout.rs).
#[derive(Debug, Clone)]
pub struct Message(Arc<MessageParts>);

/// Slots of [`Message::encoded`]: one per wire format a server sends messages in.
pub const ENCODING_SLOTS: usize = 6;

#[derive(Debug)]
struct MessageParts {
    topic: TopicName,
    offset: u64,
    epoch: u64,
    payload: Bytes,
    published_at: SystemTime,
    /// The message as each transport writes it, made by the first subscriber that sends it.
    encodings: [OnceLock<Bytes>; ENCODING_SLOTS],
}

impl PartialEq for Message {
    /// Messages are equal when they are the same publication; cached encodings do not count.
    fn eq(&self, other: &Message) -> bool {
        let (a, b) = (&self.0, &other.0);
        a.topic == b.topic
            && a.offset == b.offset
            && a.epoch == b.epoch
            && a.payload == b.payload
            && a.published_at == b.published_at
    }
}

impl Eq for Message {}

impl Message {
    /// A message as accepted at `offset` of `topic` in `epoch`.
    pub(crate) fn committed(
        topic: &TopicName,
        offset: u64,
        epoch: u64,
        payload: Bytes,
        published_at: SystemTime,
    ) -> Message {
        Message(Arc::new(MessageParts {
            topic: topic.clone(),
            offset,
            epoch,
            payload,
            published_at,
            encodings: Default::default(),
        }))
    }

    /// The topic it was published to.
    pub fn topic(&self) -> &TopicName {
        &self.0.topic
    }

    /// Its offset in the topic: 0 for the first message, then one more each time.
    pub fn offset(&self) -> u64 {
        self.0.offset
    }

    /// The topic's epoch when it was published.
    pub fn epoch(&self) -> u64 {
        self.0.epoch
    }

    /// Its position (epoch and offset): the resume token clients are given.
    pub fn position(&self) -> crate::Position {
        crate::Position {
            epoch: self.0.epoch,
            offset: self.0.offset,
        }
    }

    /// The bytes published.
    pub fn payload(&self) -> &Bytes {
        &self.0.payload
    }

    /// When the hub accepted it.
    pub fn published_at(&self) -> SystemTime {
        self.0.published_at
    }

    /// The message in a transport's wire format, encoded once however many subscribers
    /// send it: the first caller for `slot` runs `encode`, the others share its bytes.
    /// Without this, rendering the same line a thousand times was most of the cost of
    /// fanning a message out to a thousand line-protocol subscribers.
    ///
    /// A transport owns its slots (below [`ENCODING_SLOTS`]) and must always encode a slot
    /// the same way.
    ///
    /// # Panics
    /// If `slot` is not below [`ENCODING_SLOTS`].
    pub fn encoded(&self, slot: usize, encode: impl FnOnce(&Message) -> Bytes) -> Bytes {
        self.0.encodings[slot].get_or_init(|| encode(self)).clone()
    }
}

/// How much history a topic keeps for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Messages kept (0: none, live delivery only).
    pub max_messages: usize,
    /// Age past which a message is no longer replayed.
    pub max_age: Duration,
}

impl Default for Retention {
    /// 1,000 messages or one hour: enough for a client to reconnect after a network blip or
    /// a deploy without a gap, small enough that a thousand busy topics hold tens of MiB.
    fn default() -> Self {
        Self {
            max_messages: 1000,
            max_age: Duration::from_secs(3600),
        }
    }
}

/// A subscription's wake-up handle, registered with each topic it waits on; `armed` keeps
/// it registered at most once per topic between two publishes.
#[derive(Debug, Default)]
pub(crate) struct SubWaker {
    waker: Mutex<Option<Waker>>,
    armed: AtomicBool,
}

impl SubWaker {
    pub(crate) fn set(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    pub(crate) fn wake(&self) {
        self.armed.store(false, Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A message in a log, with where it starts in the topic's stream of bytes.
#[derive(Debug)]
struct Entry {
    message: Message,
    /// The cost (see [`message_cost`]) of every message appended before this one, since
    /// the log began: the bytes from here to the newest are `appended - start`.
    start: u64,
}

#[derive(Debug)]
pub(crate) struct TopicLog {
    pub(crate) epoch: u64,
    entries: VecDeque<Entry>,
    /// Offset of `entries[0]`.
    first: u64,
    /// Offset the next message will get.
    pub(crate) next: u64,
    retention: Retention,
    /// What every message ever appended cost: the end of the stream of bytes.
    appended: u64,
    /// How far behind, in bytes, a subscriber may fall; messages within it of the newest
    /// stay, whatever the retention says, so that a subscriber that is reading never loses
    /// one to a burst (see [`crate::HubConfig::max_lag_bytes`]).
    max_lag_bytes: u64,
    /// What `entries` cost, and the most they may: past it the oldest go, whatever the
    /// count.
    bytes: usize,
    max_bytes: usize,
    /// Every log's `bytes` together, for the hub's budget.
    retained: Arc<AtomicUsize>,
    /// Its own lock, so that readers holding the log's read lock can register: a reader
    /// checks for news and registers under one read lock, and an append (under the write
    /// lock) takes the list, so no wake-up falls between the two.
    waiters: Mutex<Vec<Arc<SubWaker>>>,
}

impl Drop for TopicLog {
    /// A log let go gives its bytes back to the hub's budget.
    fn drop(&mut self) {
        self.retained.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// What a read at a subscriber's cursor found.
#[derive(Debug)]
pub(crate) enum ReadAt {
    /// The message at the cursor.
    Message(Message),
    /// The cursor is at the end: nothing new.
    UpToDate,
    /// The cursor points before the oldest message still held.
    Overwritten,
}

/// Bytes a retained message costs besides its payload: its `Arc`'d parts (name, offsets,
/// time, the encoding slots) and its place in the ring, rounded up.
pub(crate) const MESSAGE_OVERHEAD: usize = 320;

/// What a retained message of `payload` bytes costs, as the byte limits count it.
pub(crate) fn message_cost(payload: usize) -> usize {
    payload.saturating_add(MESSAGE_OVERHEAD)
}

/// How a log is bounded: by its retention (count and age), by the lag subscribers are
/// allowed, and by bytes.
#[derive(Debug, Clone)]
pub(crate) struct LogLimits {
    pub(crate) retention: Retention,
    pub(crate) max_lag_bytes: usize,
    pub(crate) max_bytes: usize,
    pub(crate) retained: Arc<AtomicUsize>,
}

impl TopicLog {
    pub(crate) fn new(epoch: u64, limits: LogLimits) -> Self {
        Self {
            epoch,
            entries: VecDeque::new(),
            first: 0,
            next: 0,
            retention: limits.retention,
            appended: 0,
            max_lag_bytes: limits.max_lag_bytes as u64,
            bytes: 0,
            max_bytes: limits.max_bytes,
            retained: limits.retained,
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Drops the oldest message, if any; false when the log holds none.
    pub(crate) fn evict_oldest(&mut self) -> bool {
        let Some(oldest) = self.entries.pop_front() else {
            return false;
        };
        let cost = message_cost(oldest.message.payload().len());
        self.bytes -= cost;
        self.retained.fetch_sub(cost, Ordering::Relaxed);
        self.first += 1;
        true
    }

    /// Lets go of every message held and goes on at `offset` (past `next`): the messages
    /// in between cannot be had. Readers behind are told with `lagged`.
    pub(crate) fn skip_to(&mut self, offset: u64) {
        while self.evict_oldest() {}
        self.first = offset;
        self.next = offset;
    }

    /// The oldest offset a store shared by several nodes keeps, now that `newest` is
    /// committed: by the count retention alone, not by what this node's memory holds
    /// (another node may hold more).
    pub(crate) fn shared_keep_from(&self, newest: u64) -> u64 {
        (newest + 1).saturating_sub(self.retention.max_messages as u64)
    }

    /// Whether the oldest message is held only for subscribers catching up (beyond the
    /// count retention): the hub's budget takes such messages first.
    pub(crate) fn oldest_is_surplus(&self) -> bool {
        self.entries.len() > self.retention.max_messages
    }

    /// When the oldest message held was published.
    pub(crate) fn oldest_at(&self) -> Option<SystemTime> {
        self.entries.front().map(|e| e.message.published_at())
    }

    /// When the newest message held was published.
    pub(crate) fn newest_at(&self) -> Option<SystemTime> {
        self.entries.back().map(|e| e.message.published_at())
    }

    /// Whether the oldest message is past its age retention.
    pub(crate) fn has_expired(&self, now: SystemTime) -> bool {
        self.oldest_at().is_some_and(|at| {
            now.duration_since(at)
                .is_ok_and(|age| age > self.retention.max_age)
        })
    }

    /// Drops the messages past their age retention (a subscriber that far behind has
    /// lagged, and is told so when it reads); returns how many.
    pub(crate) fn drop_expired(&mut self, now: SystemTime) -> usize {
        let mut dropped = 0;
        while self.has_expired(now) {
            self.evict_oldest();
            dropped += 1;
        }
        dropped
    }

    /// Messages held.
    pub(crate) fn held(&self) -> usize {
        self.entries.len()
    }

    /// Appends a message and returns it with the waiters to wake (outside the lock).
    pub(crate) fn append(
        &mut self,
        topic: &TopicName,
        payload: Bytes,
        now: SystemTime,
    ) -> (Message, Vec<Arc<SubWaker>>) {
        let message = Message::committed(topic, self.next, self.epoch, payload, now);
        let cost = message_cost(message.payload().len());
        self.entries.push_back(Entry {
            message: message.clone(),
            start: self.appended,
        });
        self.appended += cost as u64;
        self.bytes += cost;
        self.retained.fetch_add(cost, Ordering::Relaxed);
        self.next += 1;
        // The oldest goes when it is past the count retention and more than the lag
        // allowed behind the newest (no subscriber that is keeping up needs it), or when
        // the topic holds more bytes than it may. The newest always stays: a subscriber is
        // never left with nothing to read.
        while self.entries.len() > 1
            && (self.bytes > self.max_bytes
                || (self.entries.len() > self.retention.max_messages
                    && self.appended - self.entries[0].start > self.max_lag_bytes))
        {
            self.evict_oldest();
        }
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|e| e.into_inner()));
        (message, waiters)
    }

    /// Puts back a durable topic's log as loaded from its store: `messages` hold
    /// consecutive offsets ending at `next - 1` (the newest the retention keeps are kept).
    pub(crate) fn restore(&mut self, topic: &TopicName, next: u64, messages: Vec<StoredMessage>) {
        let skip = messages
            .len()
            .saturating_sub(self.retention.max_messages.max(1));
        for stored in messages.into_iter().skip(skip) {
            let message = Message::committed(
                topic,
                stored.offset,
                self.epoch,
                stored.payload,
                stored.published_at,
            );
            let cost = message_cost(message.payload().len());
            self.entries.push_back(Entry {
                message,
                start: self.appended,
            });
            self.appended += cost as u64;
            self.bytes += cost;
            self.retained.fetch_add(cost, Ordering::Relaxed);
        }
        self.next = next;
        self.first = next - self.entries.len() as u64;
        while self.bytes > self.max_bytes && self.entries.len() > 1 {
            self.evict_oldest();
        }
    }

    /// The oldest offset a replay may start from now: within the count and age retention.
    pub(crate) fn replay_start(&self, now: SystemTime) -> u64 {
        let by_count = self
            .next
            .saturating_sub(self.retention.max_messages as u64)
            .max(self.first);
        by_count + self.expired_from(by_count, now)
    }

    /// The oldest offset a subscriber resuming from a position can still be given: every
    /// message held that is within its age, including those held beyond the count
    /// retention for subscribers catching up (a client that reconnects in the middle of a
    /// burst resumes where it was, not after a gap).
    pub(crate) fn resume_start(&self, now: SystemTime) -> u64 {
        self.first + self.expired_from(self.first, now)
    }

    /// How many messages from offset `from` on are past their age, oldest first.
    fn expired_from(&self, from: u64, now: SystemTime) -> u64 {
        self.entries
            .iter()
            .skip((from - self.first) as usize)
            .take_while(|e| {
                now.duration_since(e.message.published_at())
                    .is_ok_and(|age| age > self.retention.max_age)
            })
            .count() as u64
    }

    pub(crate) fn read(&self, cursor: u64) -> ReadAt {
        if cursor < self.first {
            return ReadAt::Overwritten;
        }
        match self.entries.get((cursor - self.first) as usize) {
            Some(entry) => ReadAt::Message(entry.message.clone()),
            None => ReadAt::UpToDate,
        }
    }

    /// How far behind the newest message a subscriber whose next message is `cursor` is,
    /// in bytes as the limits count them; `None` when its next message is no longer held.
    pub(crate) fn bytes_behind(&self, cursor: u64) -> Option<u64> {
        if cursor < self.first {
            return None;
        }
        Some(match self.entries.get((cursor - self.first) as usize) {
            Some(entry) => self.appended - entry.start,
            None => 0,
        })
    }

    /// The oldest offset the count retention keeps (at least the newest message): reading
    /// from there on is never lag, whatever the messages weigh.
    fn retained_from(&self) -> u64 {
        self.next
            .saturating_sub(self.retention.max_messages.max(1) as u64)
            .max(self.first)
    }

    /// Whether a subscriber at `cursor` is behind what the log still holds, or before
    /// what the count retention keeps and further behind than the lag allowed. Messages the
    /// retention keeps are a replay, not lag (a thousand retained 20 KB messages outweigh
    /// 16 MiB), and the newest message is always readable, however large.
    pub(crate) fn too_far_behind(&self, cursor: u64) -> bool {
        match self.bytes_behind(cursor) {
            None => true,
            Some(behind) => cursor < self.retained_from() && behind > self.max_lag_bytes,
        }
    }

    /// Where a subscriber that fell too far behind goes on: the oldest message within the
    /// lag allowed of the newest, or the oldest the retention keeps if that is older.
    /// Always past such a subscriber's cursor.
    pub(crate) fn catch_up_point(&self) -> u64 {
        let within = self
            .entries
            .partition_point(|e| self.appended - e.start > self.max_lag_bytes);
        (self.first + within as u64).min(self.retained_from())
    }

    /// The lag allowed, in bytes.
    pub(crate) fn max_lag_bytes(&self) -> u64 {
        self.max_lag_bytes
    }

    /// Registers `waker` to be woken by the next append (once, however often it asks).
    pub(crate) fn wait(&self, waker: &Arc<SubWaker>) {
        if !waker.armed.swap(true, Ordering::AcqRel) {
            self.waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(waker.clone());
        }
    }

    pub(crate) fn first(&self) -> u64 {
        self.first
    }
}
