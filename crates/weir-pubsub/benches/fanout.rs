//! Fan-out: the hub's shared log with per-subscriber cursors against tokio's broadcast
//! channel, the other way to build it. 1,000 subscriber tasks, 1,000 messages of 100 bytes,
//! on a two-thread runtime; time until every subscriber has every message (1,000,000
//! deliveries). Results: docs/benchmarks.md.

#![allow(missing_docs)]

use bytes::Bytes;
use divan::Bencher;
use futures_lite::StreamExt;
use weir_pubsub::{Event, Hub, HubConfig, StartFrom};

const SUBSCRIBERS: usize = 1_000;
const MESSAGES: usize = 1_000;

fn main() {
    divan::main();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[divan::bench(sample_count = 10)]
fn hub_shared_log(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    let payload = Bytes::from(vec![b'x'; 100]);
    bencher.bench(|| {
        rt.block_on(async {
            let hub = Hub::new(HubConfig::default());
            let tasks: Vec<_> = (0..SUBSCRIBERS)
                .map(|i| {
                    let mut sub = hub
                        .subscribe("bench", StartFrom::Now, i.to_string())
                        .unwrap();
                    tokio::spawn(async move {
                        let mut got = 0;
                        while got < MESSAGES {
                            match sub.next().await {
                                Some(Event::Message(_)) => got += 1,
                                Some(other) => panic!("unexpected {other:?}"),
                                None => break,
                            }
                        }
                        got
                    })
                })
                .collect();
            for _ in 0..MESSAGES {
                hub.publish("bench", payload.clone()).unwrap();
                tokio::task::yield_now().await;
            }
            for task in tasks {
                assert_eq!(task.await.unwrap(), MESSAGES);
            }
        })
    });
}

#[divan::bench(sample_count = 10)]
fn tokio_broadcast(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    let payload = Bytes::from(vec![b'x'; 100]);
    bencher.bench(|| {
        rt.block_on(async {
            let (tx, _) = tokio::sync::broadcast::channel::<Bytes>(1024);
            let tasks: Vec<_> = (0..SUBSCRIBERS)
                .map(|_| {
                    let mut rx = tx.subscribe();
                    tokio::spawn(async move {
                        let mut got = 0;
                        while got < MESSAGES {
                            match rx.recv().await {
                                Ok(_) => got += 1,
                                Err(error) => panic!("unexpected {error}"),
                            }
                        }
                        got
                    })
                })
                .collect();
            for _ in 0..MESSAGES {
                tx.send(payload.clone()).unwrap();
                tokio::task::yield_now().await;
            }
            for task in tasks {
                assert_eq!(task.await.unwrap(), MESSAGES);
            }
        })
    });
}
