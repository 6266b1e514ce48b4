//! Durable topics through the `TopicStore` trait: offsets assigned in commit order under
//! concurrent publishers, nothing visible before it is committed, a failed commit refused
//! and not applied, and a reload that continues offsets and keeps the epoch.
//!
//! The store here is a small in-memory one that can be told to fail: a real database
//! cannot be made to fail one commit on demand. SQLite itself is tested end to end in the
//! binary (`crates/weir/tests/durable.rs`, including `kill -9`).

#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_lite::StreamExt;
use weir_pubsub::{
    Append, Event, Hub, HubConfig, PublishError, Retention, StartFrom, StoreError, StoredMessage,
    StoredTopic, TopicName, TopicPattern, TopicStore,
};

#[derive(Clone, Default)]
struct MemoryStore {
    rows: Arc<Mutex<Vec<Append>>>,
    fail: Arc<AtomicBool>,
}

impl TopicStore for MemoryStore {
    fn load(
        &mut self,
        _retention: &dyn Fn(&TopicName) -> Retention,
    ) -> Result<Vec<StoredTopic>, StoreError> {
        let rows = self.rows.lock().unwrap();
        let mut topics: Vec<StoredTopic> = Vec::new();
        for row in rows.iter() {
            let message = StoredMessage {
                offset: row.offset,
                payload: row.payload.clone(),
                published_at: row.published_at,
            };
            match topics.iter_mut().find(|t| t.name == row.topic) {
                Some(topic) => {
                    topic.next_offset = row.offset + 1;
                    topic.messages.push(message);
                }
                None => topics.push(StoredTopic {
                    name: row.topic.clone(),
                    epoch: row.epoch,
                    next_offset: row.offset + 1,
                    messages: vec![message],
                }),
            }
        }
        Ok(topics)
    }

    fn append(&mut self, batch: &mut [Append]) -> Result<Vec<Append>, StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError("disk full".into()));
        }
        self.rows.lock().unwrap().extend_from_slice(batch);
        Ok(Vec::new())
    }

    fn trim(&mut self, _topic: &TopicName, _keep_from: u64) -> Result<(), StoreError> {
        Ok(())
    }
}

fn config() -> HubConfig {
    HubConfig {
        durable: vec![TopicPattern::new("orders.>").unwrap()],
        ..HubConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_durable_publishes_get_unique_offsets_in_commit_order() {
    let store = MemoryStore::default();
    let hub = Hub::with_store(config(), Box::new(store.clone())).unwrap();
    let mut subscriber = hub.subscribe("orders.new", StartFrom::Now, "test").unwrap();
    let mut publishers = Vec::new();
    for p in 0..8 {
        let hub = hub.clone();
        publishers.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..100 {
                let message = hub
                    .publish_wait("orders.new", Bytes::from(format!("{p}-{i}")))
                    .await
                    .unwrap();
                offsets.push(message.offset());
            }
            offsets
        }));
    }
    let mut offsets = Vec::new();
    for publisher in publishers {
        offsets.extend(publisher.await.unwrap());
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..800).collect::<Vec<u64>>());
    let stored: Vec<u64> = store
        .rows
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.offset)
        .collect();
    assert_eq!(
        stored,
        (0..800).collect::<Vec<u64>>(),
        "committed in offset order"
    );
    for expected in 0..800 {
        match subscriber.next().await.unwrap() {
            Event::Message(message) => assert_eq!(message.offset(), expected),
            other => panic!("{other:?}"),
        }
    }
    // The in-memory path refuses durable topics rather than skip the store.
    assert_eq!(
        hub.publish("orders.new", Bytes::from_static(b"x"))
            .unwrap_err(),
        PublishError::Durable("orders.new".into())
    );
    // Other topics are not written.
    hub.publish_wait("news", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(store.rows.lock().unwrap().len(), 800);
}

#[tokio::test]
async fn a_failed_commit_is_refused_and_not_applied() {
    let store = MemoryStore::default();
    let hub = Hub::with_store(config(), Box::new(store.clone())).unwrap();
    hub.publish_wait("orders.a", Bytes::from_static(b"kept"))
        .await
        .unwrap();
    let mut subscriber = hub.subscribe("orders.a", StartFrom::Now, "test").unwrap();
    store.fail.store(true, Ordering::SeqCst);
    let refused = hub
        .publish_wait("orders.a", Bytes::from_static(b"lost"))
        .await
        .unwrap_err();
    assert_eq!(refused, PublishError::Store("disk full".into()));
    store.fail.store(false, Ordering::SeqCst);
    let next = hub
        .publish_wait("orders.a", Bytes::from_static(b"after"))
        .await
        .unwrap();
    assert_eq!(next.offset(), 1, "the refused publish took no offset");
    match subscriber.next().await.unwrap() {
        Event::Message(message) => assert_eq!(&message.payload()[..], b"after"),
        other => panic!("the refused message was seen: {other:?}"),
    }
}

#[tokio::test]
async fn a_reloaded_hub_continues_offsets_and_keeps_the_epoch() {
    let store = MemoryStore::default();
    let first = Hub::with_store(config(), Box::new(store.clone())).unwrap();
    let mut epoch = 0;
    for text in ["a", "b", "c"] {
        epoch = first
            .publish_wait("orders.x", Bytes::from(text))
            .await
            .unwrap()
            .epoch();
    }
    drop(first);
    let second = Hub::with_store(config(), Box::new(store.clone())).unwrap();
    let mut replay = second
        .subscribe("orders.x", StartFrom::Earliest, "test")
        .unwrap();
    for text in ["a", "b", "c"] {
        match replay.next().await.unwrap() {
            Event::Message(message) => {
                assert_eq!(&message.payload()[..], text.as_bytes());
                assert_eq!(message.epoch(), epoch);
            }
            other => panic!("{other:?}"),
        }
    }
    let next = second
        .publish_wait("orders.x", Bytes::from_static(b"d"))
        .await
        .unwrap();
    assert_eq!((next.offset(), next.epoch()), (3, epoch));
}
