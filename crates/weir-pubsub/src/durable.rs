//! Durable topics: their messages are written to a store before anyone sees them, and come
//! back after a restart with the same offsets and epoch.
//!
//! One writer thread owns the store. Publishers send it their messages through a bounded
//! queue and wait for the answer; the writer takes everything queued (up to a batch),
//! assigns offsets, commits the batch in one transaction, and only then appends the
//! messages to the in-memory logs, in offset order, and answers. So:
//!
//! * a publish that was answered is committed (it survives `kill -9` of the process);
//! * subscribers never see a message that a crash could take back, so an offset is never
//!   reused and the epoch can stay the same across restarts;
//! * many concurrent publishes share one commit (group commit), which is what makes an
//!   embedded database fast enough here.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::log::{Message, Retention, StoredMessage};
use crate::topic::Topic;
use crate::{PublishError, TopicName};

/// A durable topic as loaded at start-up: its epoch, the offset its next message gets, and
/// the retained tail of its log (consecutive offsets ending at `next_offset - 1`).
#[derive(Debug, Clone)]
pub struct StoredTopic {
    /// The topic's name, as it was published to.
    pub name: TopicName,
    /// Its epoch, kept across restarts.
    pub epoch: u64,
    /// The offset its next message gets.
    pub next_offset: u64,
    /// The retained messages, oldest first.
    pub messages: Vec<StoredMessage>,
}

/// One message to write.
#[derive(Debug, Clone)]
pub struct Append {
    /// The durable topic the message was published to.
    pub topic: TopicName,
    /// The topic's epoch (stored with the topic when it is first written).
    pub epoch: u64,
    /// The message's offset.
    pub offset: u64,
    /// The bytes published.
    pub payload: Bytes,
    /// When the hub accepted it.
    pub published_at: SystemTime,
}

/// A store failed; the publish it was for is refused (and was not applied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the topic store failed: {0}")]
pub struct StoreError(pub String);

/// Where durable topics are kept: SQLite by default, PostgreSQL when several nodes share
/// one. Used by one thread at a time (the writer), so implementations need not be `Sync`.
pub trait TopicStore: Send + 'static {
    /// Every durable topic with the tail of its log that `retention` keeps.
    fn load(
        &mut self,
        retention: &dyn Fn(&TopicName) -> Retention,
    ) -> Result<Vec<StoredTopic>, StoreError>;

    /// Writes `batch` in one transaction: all of it or none.
    fn append(&mut self, batch: &[Append]) -> Result<(), StoreError>;

    /// Deletes the messages of `topic` before `keep_from`: they are past its retention.
    fn trim(&mut self, topic: &TopicName, keep_from: u64) -> Result<(), StoreError>;
}

/// A publish waiting for the writer.
pub(crate) struct Request {
    pub(crate) topic: Arc<Topic>,
    pub(crate) payload: Bytes,
    pub(crate) reply: oneshot::Sender<Result<Message, PublishError>>,
}

/// Publishes queued for the writer at most; past it a publisher waits for room.
const QUEUE: usize = 4096;
/// Messages committed together at most.
const BATCH: usize = 512;
/// How often (in messages per topic) the store is trimmed to the retention.
const TRIM_EVERY: u64 = 256;

/// The sending side of the writer's queue.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Request>,
}

impl Writer {
    /// Starts the writer thread; it ends when every `Writer` is dropped, after the queue.
    pub(crate) fn start(store: Box<dyn TopicStore>) -> Writer {
        let (queue, requests) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("weir-topic-writer".into())
            .spawn(move || write_loop(store, requests))
            .expect("the writer thread starts");
        Writer { queue }
    }

    /// Queues a publish and waits until it is committed and visible.
    pub(crate) async fn publish(
        &self,
        topic: Arc<Topic>,
        payload: Bytes,
    ) -> Result<Message, PublishError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request {
                topic,
                payload,
                reply,
            })
            .await
            .map_err(|_| PublishError::Store("the topic writer has stopped".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(PublishError::Store("the topic writer has stopped".into())))
    }
}

fn write_loop(mut store: Box<dyn TopicStore>, mut requests: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = requests.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit(store.as_mut(), &mut batch);
    }
}

/// Commits one batch, then makes it visible and answers each publisher.
fn commit(store: &mut dyn TopicStore, batch: &mut Vec<Request>) {
    let now = SystemTime::now();
    // Offsets: the writer is the only one appending to durable topics, so a topic's next
    // offset is its log's, plus what this batch already gave it.
    let mut next: Vec<(TopicName, u64)> = Vec::new();
    let appends: Vec<Append> = batch
        .iter()
        .map(|request| {
            let log = request.topic.log();
            let offset = match next
                .iter_mut()
                .find(|(name, _)| *name == request.topic.name)
            {
                Some((_, next)) => {
                    *next += 1;
                    *next - 1
                }
                None => {
                    next.push((request.topic.name.clone(), log.next + 1));
                    log.next
                }
            };
            Append {
                topic: request.topic.name.clone(),
                epoch: log.epoch,
                offset,
                payload: request.payload.clone(),
                published_at: now,
            }
        })
        .collect();
    if let Err(error) = store.append(&appends) {
        tracing::error!(%error, messages = batch.len(), "durable publish failed");
        for request in batch.drain(..) {
            let _ = request
                .reply
                .send(Err(PublishError::Store(error.0.clone())));
        }
        return;
    }
    for (request, append) in batch.drain(..).zip(&appends) {
        let (message, waiters) = request.topic.log_mut().append(
            &request.topic.name,
            request.payload,
            append.published_at,
        );
        debug_assert_eq!(message.offset(), append.offset);
        for waiter in waiters {
            waiter.wake();
        }
        if message.offset() % TRIM_EVERY == TRIM_EVERY - 1 {
            let keep_from = request.topic.log().first();
            if let Err(error) = store.trim(&request.topic.name, keep_from) {
                tracing::warn!(%error, topic = %request.topic.name, "trimming a durable topic failed");
            }
        }
        let _ = request.reply.send(Ok(message));
    }
}
