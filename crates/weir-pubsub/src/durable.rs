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

use std::future::Future;
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

/// Where durable topics are kept: SQLite by default (one node's own), PostgreSQL when
/// several nodes share one ([`TopicStore::shared`]). Used by one thread at a time (the
/// writer), so implementations need not be `Sync`.
pub trait TopicStore: Send + 'static {
    /// Every durable topic with the tail of its log that `retention` keeps.
    fn load(
        &mut self,
        retention: &dyn Fn(&TopicName) -> Retention,
    ) -> Result<Vec<StoredTopic>, StoreError>;

    /// Writes `batch` in one transaction: all of it or none. Each append comes numbered
    /// after what this node's log holds; a shared store, where other nodes append to the
    /// same topics, numbers them itself after what it holds (setting `offset` and `epoch`)
    /// and returns first what other nodes committed to these topics that this node's log
    /// lacks (from each topic's first `offset` in `batch` on), in offset order.
    fn append(&mut self, batch: &mut [Append]) -> Result<Vec<Append>, StoreError>;

    /// Deletes the messages of `topic` before `keep_from`: they are past its retention.
    fn trim(&mut self, topic: &TopicName, keep_from: u64) -> Result<(), StoreError>;

    /// Whether other nodes write to this store too. Then durable topics are not relayed:
    /// each node reads what the others committed from the store
    /// ([`Hub::catch_up`](crate::Hub::catch_up)), with the same offsets and epoch
    /// everywhere.
    fn shared(&self) -> bool {
        false
    }

    /// The messages of `topic` from offset `from` on (at most `limit`, the newest), with
    /// the topic's epoch and next offset: how a node catches up with what other nodes
    /// committed. `None` when the store does not know the topic. Only a shared store
    /// needs it.
    fn read_from(
        &mut self,
        topic: &TopicName,
        from: u64,
        limit: usize,
    ) -> Result<Option<StoredTopic>, StoreError> {
        let _ = (topic, from, limit);
        Ok(None)
    }

    /// Every topic the store holds, with its next offset (for a node that was cut off to
    /// find what it missed). Only a shared store needs it.
    fn heads(&mut self) -> Result<Vec<(TopicName, u64)>, StoreError> {
        Ok(Vec::new())
    }

    /// For a shared store, the random number drawn once for the whole store from which
    /// every node derives a durable topic's epoch ([`shared_epoch`]), so that they agree
    /// without asking each other; `None` for a store of one node (the hub then draws
    /// epochs itself).
    fn epoch_salt(&self) -> Option<u64> {
        None
    }
}

/// The epoch of durable topic `name` in a shared store whose salt is `salt`: the same on
/// every node, different for another store (a database started afresh), below 2^52 as
/// every epoch. FNV-1a: stable across releases and machines, which the standard library's
/// hasher does not promise.
pub fn shared_epoch(salt: u64, name: &TopicName) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in salt.to_le_bytes().iter().chain(name.as_str().as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash & ((1 << 52) - 1)
}

/// A publish waiting for the writer.
pub(crate) struct Request {
    pub(crate) topic: Arc<Topic>,
    pub(crate) payload: Bytes,
    pub(crate) reply: oneshot::Sender<Result<Message, PublishError>>,
}

/// What the writer is asked to do.
pub(crate) enum Job {
    /// Commit a publish.
    Publish(Request),
    /// Bring `topic`'s log up to `upto` (exclusive) from the store: other nodes committed
    /// messages there. `done` hears when it is.
    CatchUp {
        topic: Arc<Topic>,
        upto: u64,
        done: Option<oneshot::Sender<()>>,
    },
    /// Bring every topic up to date (this node may have missed notices).
    CatchUpAll { topics: FindTopic },
}

/// Finds this node's topic of a name, if it has one.
pub(crate) type FindTopic = Box<dyn Fn(&TopicName) -> Option<Arc<Topic>> + Send>;

/// Publishes queued for the writer at most; past it a publisher waits for room.
const QUEUE: usize = 4096;
/// Messages committed together at most.
const BATCH: usize = 512;
/// How often (in messages per topic) the store is trimmed to the retention.
const TRIM_EVERY: u64 = 256;

/// The newest run of consecutive offsets of `messages` that ends at `next_offset - 1`
/// (a log holds no holes), or nothing.
pub(crate) fn contiguous_tail(
    messages: Vec<StoredMessage>,
    next_offset: u64,
) -> Vec<StoredMessage> {
    let start = messages
        .windows(2)
        .rposition(|pair| pair[1].offset != pair[0].offset + 1)
        .map_or(0, |i| i + 1);
    let mut messages = messages;
    messages.drain(..start);
    if messages.last().is_some_and(|m| m.offset + 1 != next_offset) {
        messages.clear();
    }
    messages
}

/// Messages a catch-up reads at most per topic: a node cut off for longer skips the
/// older ones (its subscribers are told with `lagged`) rather than load them all.
const CATCH_UP_LIMIT: usize = 10_000;

/// The sending side of the writer's queue.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
    shared: bool,
}

impl Writer {
    /// Starts the writer thread; it ends when every `Writer` is dropped, after the queue.
    pub(crate) fn start(store: Box<dyn TopicStore>) -> Writer {
        let shared = store.shared();
        let (queue, jobs) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("weir-topic-writer".into())
            .spawn(move || write_loop(store, jobs))
            .expect("the writer thread starts");
        Writer { queue, shared }
    }

    /// Whether other nodes share the store.
    pub(crate) fn shared(&self) -> bool {
        self.shared
    }

    /// Queues a publish and waits until it is committed and visible.
    /// Queues a publish (waiting only for room in the queue) and returns its answer, to be
    /// awaited later: a connection that pipelines publishes queues the next while this one
    /// commits, so they share a commit, and the writer takes them in the order queued.
    pub(crate) async fn submit(
        &self,
        topic: Arc<Topic>,
        payload: Bytes,
    ) -> Result<impl Future<Output = Result<Message, PublishError>> + Send + 'static, PublishError>
    {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job::Publish(Request {
                topic,
                payload,
                reply,
            }))
            .await
            .map_err(|_| PublishError::Store("the topic writer has stopped".into()))?;
        Ok(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(PublishError::Store("the topic writer has stopped".into())))
        })
    }

    /// Queues a catch-up (waiting for room in the queue, not for the catch-up).
    pub(crate) async fn request(&self, job: Job) {
        // The writer stopped only when the hub is gone: nothing left to catch up.
        let _ = self.queue.send(job).await;
    }
}

fn write_loop(mut store: Box<dyn TopicStore>, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = jobs.blocking_recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Publish(request) => batch.push(request),
                Job::CatchUp { topic, upto, done } => {
                    catch_up(store.as_mut(), &topic, upto);
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                }
                Job::CatchUpAll { topics } => catch_up_all(store.as_mut(), topics.as_ref()),
            }
            if batch.len() < BATCH {
                next = jobs.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit(store.as_mut(), &mut batch);
        }
    }
}

/// Commits one batch, then makes it visible and answers each publisher.
fn commit(store: &mut dyn TopicStore, batch: &mut Vec<Request>) {
    let now = SystemTime::now();
    // Offsets: the writer is the only one appending to durable topics here, so a topic's
    // next offset is its log's, plus what this batch already gave it (a shared store
    // renumbers them after what other nodes committed).
    let mut next: Vec<(TopicName, u64)> = Vec::new();
    let mut appends: Vec<Append> = batch
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
    let before = match store.append(&mut appends) {
        Ok(before) => before,
        Err(error) => {
            tracing::error!(%error, messages = batch.len(), "durable publish failed");
            for request in batch.drain(..) {
                let _ = request
                    .reply
                    .send(Err(PublishError::Store(error.0.clone())));
            }
            return;
        }
    };
    // What other nodes committed first, then this batch, each where the store put it.
    for earlier in before {
        if let Some(request) = batch.iter().find(|r| r.topic.name == earlier.topic) {
            apply(
                &request.topic,
                earlier.offset,
                earlier.payload,
                earlier.published_at,
            );
        }
    }
    for (request, append) in batch.drain(..).zip(appends) {
        let message = apply(
            &request.topic,
            append.offset,
            append.payload,
            append.published_at,
        );
        if message.offset() % TRIM_EVERY == TRIM_EVERY - 1 {
            let log = request.topic.log();
            // A shared store keeps what the retention says, whatever this node's memory
            // let go (its budget, a catch-up that read only the newest).
            let keep_from = if store.shared() {
                log.shared_keep_from(message.offset())
            } else {
                log.first()
            };
            drop(log);
            if let Err(error) = store.trim(&request.topic.name, keep_from) {
                tracing::warn!(%error, topic = %request.topic.name, "trimming a durable topic failed");
            }
        }
        let _ = request.reply.send(Ok(message));
    }
}

/// Appends a committed message to its topic's log at `offset`, waking its readers. A log
/// that lacks the messages before it (a node that was cut off, past what a catch-up reads)
/// skips to it; one that has it already (the notice of it came first) keeps its own.
fn apply(topic: &Topic, offset: u64, payload: Bytes, published_at: SystemTime) -> Message {
    let mut log = topic.log_mut();
    if offset < log.next {
        // Had already (its notice came first), and perhaps let go since: never appended
        // twice, nor at another offset.
        return match log.read(offset) {
            crate::log::ReadAt::Message(held) => held,
            _ => Message::committed(&topic.name, offset, log.epoch, payload, published_at),
        };
    }
    if offset > log.next {
        tracing::warn!(topic = %topic.name, from = log.next, to = offset, "durable topic skipped messages it could not read back");
        log.skip_to(offset);
    }
    let (message, waiters) = log.append(&topic.name, payload, published_at);
    drop(log);
    for waiter in waiters {
        waiter.wake();
    }
    message
}

/// Reads what other nodes committed to `topic` up to `upto` (`u64::MAX`: whatever the
/// store holds) and appends it.
fn catch_up(store: &mut dyn TopicStore, topic: &Topic, upto: u64) {
    let from = topic.log().next;
    if from >= upto {
        return;
    }
    match store.read_from(&topic.name, from, CATCH_UP_LIMIT) {
        Ok(Some(stored)) => {
            for message in stored.messages {
                apply(topic, message.offset, message.payload, message.published_at);
            }
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%error, topic = %topic.name, "catching up a durable topic failed")
        }
    }
}

/// Catches up every topic the store holds that this node has (`topics` finds it, making
/// it if needed).
fn catch_up_all(store: &mut dyn TopicStore, topics: &dyn Fn(&TopicName) -> Option<Arc<Topic>>) {
    match store.heads() {
        Ok(heads) => {
            for (name, next) in heads {
                if let Some(topic) = topics(&name) {
                    catch_up(store, &topic, next);
                }
            }
        }
        Err(error) => tracing::warn!(%error, "catching up durable topics failed"),
    }
}
