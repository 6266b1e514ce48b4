//! A queue of local messages on their way to other nodes, bounded in messages and in bytes:
//! past either bound a message is refused (the caller drops and counts it), so a publisher
//! never waits for another node and a slow or absent one cannot take the node's memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::wire::Outbound;

/// Local messages waiting to be sent (to PostgreSQL, or on one route), at most; past it
/// (or past [`QUEUE_BYTES`]) a message is dropped and counted, and the publisher is not
/// slowed. Large enough that the byte bound is the one a burst of small messages meets
/// (a burst of 20,000 filled the 16,384 it was: bench/pubsub/cluster.sh).
pub(crate) const QUEUE_MESSAGES: usize = 1 << 20;
/// Bytes waiting to be sent, at most (payloads, topics and each message's own
/// [`Outbound::size`] overhead): a bound on memory while the database or a peer is
/// slow or away, whatever the messages' sizes.
pub(crate) const QUEUE_BYTES: usize = 64 << 20;

/// The sending half, shared by publishers.
#[derive(Debug)]
pub(crate) struct OutboundQueue {
    sender: mpsc::Sender<Outbound>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The receiving half, owned by the task that sends: taking a message gives its bytes back.
#[derive(Debug)]
pub(crate) struct QueueReceiver {
    receiver: mpsc::Receiver<Outbound>,
    bytes: Arc<AtomicUsize>,
}

/// A queue of at most `messages` messages and `max_bytes` bytes.
pub(crate) fn bounded(messages: usize, max_bytes: usize) -> (OutboundQueue, QueueReceiver) {
    let (sender, receiver) = mpsc::channel(messages);
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        OutboundQueue {
            sender,
            bytes: bytes.clone(),
            max_bytes,
        },
        QueueReceiver { receiver, bytes },
    )
}

impl OutboundQueue {
    /// Queues `message`, or says why it cannot go.
    pub(crate) fn push(&self, message: Outbound) -> Result<(), &'static str> {
        let size = message.size();
        if self.bytes.fetch_add(size, Ordering::Relaxed) + size > self.max_bytes {
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            return Err("the queue to other nodes is full");
        }
        if self.sender.try_send(message).is_err() {
            // Full, or closed (the sender stopped): either way it does not go.
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            return Err("the queue to other nodes is full or closed");
        }
        Ok(())
    }

    /// Bytes waiting.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl QueueReceiver {
    fn taken(&self, message: Option<Outbound>) -> Option<Outbound> {
        if let Some(message) = &message {
            self.bytes.fetch_sub(message.size(), Ordering::Relaxed);
        }
        message
    }

    /// The next message; `None` once every sending half is gone.
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        let message = self.receiver.recv().await;
        self.taken(message)
    }

    /// The next message if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Outbound> {
        let message = self.receiver.try_recv().ok();
        self.taken(message)
    }

    /// Whether every sending half is gone (the link was closed).
    pub(crate) fn is_closed(&self) -> bool {
        self.receiver.is_closed()
    }

    /// Empties the queue; returns how many messages it held.
    pub(crate) fn drain(&mut self) -> u64 {
        let mut count = 0;
        while self.try_recv().is_some() {
            count += 1;
        }
        count
    }
}
