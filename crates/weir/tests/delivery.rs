//! The delivery contract over real sockets (docs/protocol.md, "Delivery"): a burst reaches
//! every subscriber that keeps reading, however far past the retention it goes, and a
//! subscriber that stops reading holds up no one.

#![allow(missing_docs)]

mod support;

use support::{start, DEADLINE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use weir::config::ServeConfig;

/// Subscribes a line-protocol connection to `topic`; returns it once confirmed. Its
/// receive buffer is small, so that what the server could not yet write waits in the hub
/// rather than in the kernel's buffers.
async fn subscriber(addr: &str, topic: &str) -> BufReader<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(format!("SUB {topic}\r\n").as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    while !line.starts_with("+OK subscribed") {
        line.clear();
        tokio::time::timeout(DEADLINE, stream.read_line(&mut line))
            .await
            .expect("the subscription is confirmed in time")
            .unwrap();
    }
    stream
}

/// Once `go` says so, reads `count` events; panics on a `LAGGED` line or an offset out of
/// order.
async fn read_all(
    mut stream: BufReader<TcpStream>,
    count: u64,
    mut go: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    go.wait_for(|go| *go).await.unwrap();
    let mut line = String::new();
    let mut next = 0;
    while next < count {
        line.clear();
        let read = tokio::time::timeout(DEADLINE, stream.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("event {next} within the deadline"))
            .unwrap();
        assert!(read > 0, "the connection closed at event {next}");
        let words: Vec<&str> = line.trim_end().splitn(4, ' ').collect();
        assert_eq!(
            words[0], "EVENT",
            "a subscriber that reads loses nothing: {line}"
        );
        let (_, offset) = words[2].split_once('-').unwrap();
        assert_eq!(offset.parse::<u64>().unwrap(), next, "in order: {line}");
        next += 1;
    }
    next
}

/// The burst, scaled to a test: one publisher writes 10,000 messages of 1,000 bytes
/// at once (no window, as a real burst arrives), ten times the retention, to 20
/// subscribers and one that never reads. The readers start reading only once every
/// publish is answered (a pause, or a server that fell behind), so past what the sockets
/// buffer (a few MB) the burst waits in the hub for them: about 7,000 messages, far past
/// the retention and the old limit of 1,024 messages (which lost them), and within the
/// 16 MiB of lag allowed. Every reader gets every message, in order, with no `LAGGED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_every_subscriber_that_reads_and_a_stalled_one_holds_up_no_one() {
    const SUBSCRIBERS: usize = 20;
    const MESSAGES: u64 = 10_000;
    let server = start(ServeConfig::defaults()).await;
    let (go, ready) = tokio::sync::watch::channel(false);
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..SUBSCRIBERS {
        let stream = subscriber(&server.line, "burst").await;
        readers.spawn(read_all(stream, MESSAGES, ready.clone()));
    }
    // Subscribed, then never read from again: its socket buffers fill, its writes wait.
    let _stalled = subscriber(&server.line, "burst").await;

    let publisher = TcpStream::connect(&server.line).await.unwrap();
    let mut burst = Vec::new();
    for n in 0..MESSAGES {
        burst.extend_from_slice(format!("PUB burst {n:05} {}\r\n", "x".repeat(994)).as_bytes());
    }
    let (answers, mut writer) = publisher.into_split();
    // The publisher's answers are read all along, as a client would.
    let answered = tokio::spawn(async move {
        let mut lines = BufReader::new(answers).lines();
        let mut ok = 0;
        while ok < MESSAGES {
            let line = tokio::time::timeout(DEADLINE, lines.next_line())
                .await
                .expect("every publish is answered in time")
                .unwrap()
                .expect("the publisher's connection stays open");
            if line.starts_with("+OK burst offset") {
                ok += 1;
            }
        }
    });
    writer.write_all(&burst).await.unwrap();
    answered.await.unwrap();
    go.send(true).unwrap();

    let mut finished = 0;
    while let Some(read) = readers.join_next().await {
        assert_eq!(read.expect("a reader"), MESSAGES);
        finished += 1;
    }
    assert_eq!(finished, SUBSCRIBERS);
}
