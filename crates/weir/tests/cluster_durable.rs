//! Durable topics across a cluster: three `weir serve` nodes on one PostgreSQL keep one log
//! per durable topic, so a message has the same position on every node, a subscriber
//! resumes on any node exactly where it was, and a node killed with `kill -9` and started
//! again loses nothing that was acknowledged. Real processes and a real PostgreSQL.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::{fresh_database, spawn_serve, temp_dir, Process, DEADLINE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;

/// A node of the cluster on `database`, keeping `orders.>` durable, its data in `dir`.
fn node(database: &str, dir: &std::path::Path) -> Process {
    spawn_serve(&[
        "--database",
        database,
        "--durable",
        "orders.>",
        "--data-dir",
        dir.to_str().unwrap(),
        "--retention-messages",
        "100000",
    ])
}

/// Three nodes on a fresh database, with their data directories, or `None` without
/// PostgreSQL.
fn cluster() -> Option<(String, Vec<(Process, std::path::PathBuf)>)> {
    let database = fresh_database()?;
    let nodes = ["durable-a", "durable-b", "durable-c"]
        .into_iter()
        .map(|label| {
            let dir = temp_dir(label);
            (node(&database, &dir), dir)
        })
        .collect();
    Some((database, nodes))
}

/// Publishes `payload`; returns the answer's position (epoch, offset), or `None` when the
/// node did not acknowledge it.
async fn publish(addr: &str, topic: &str, payload: &str) -> Option<(u64, u64)> {
    let raw = format!(
        "POST /v1/topics/{topic} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(raw.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer)
        .await
        .ok()?;
    let answer = String::from_utf8_lossy(&answer);
    if !answer.starts_with("HTTP/1.1 202") {
        return None;
    }
    let body: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1)?.trim()).ok()?;
    Some((body["epoch"].as_u64()?, body["offset"].as_u64()?))
}

/// Cuts every node's listening connection (the database terminates it): the nodes stop
/// hearing commits and listen again after about a second.
fn cut_listeners(database: &str) {
    let cut = std::process::Command::new("psql")
        .args([
            database,
            "-q",
            "-c",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        ])
        .status()
        .expect("psql runs");
    assert!(cut.success());
}

/// An SSE stream of one topic.
struct Sse {
    lines: Lines<BufReader<TcpStream>>,
}

/// One event as read: its id (`EPOCH-OFFSET`), or its type for a notice, and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    id: String,
    kind: String,
    data: String,
}

impl Sse {
    async fn open(addr: &str, path: &str, extra: &str) -> Sse {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut lines = BufReader::new(stream).lines();
        loop {
            let line = tokio::time::timeout(DEADLINE, lines.next_line())
                .await
                .expect("a head in time")
                .unwrap()
                .expect("a head");
            if line.is_empty() {
                return Sse { lines };
            }
        }
    }

    /// The next event (message or notice), skipping keep-alive comments: within the
    /// deadline, however many comments come meanwhile.
    async fn next(&mut self) -> Seen {
        let mut seen = Seen {
            id: String::new(),
            kind: "message".into(),
            data: String::new(),
        };
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let line = tokio::time::timeout_at(until, self.lines.next_line())
                .await
                .expect("an event within the deadline")
                .unwrap()
                .expect("the stream stays open");
            if let Some(id) = line.strip_prefix("id: ") {
                seen.id = id.to_owned();
            } else if let Some(kind) = line.strip_prefix("event: ") {
                seen.kind = kind.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                seen.data = data.to_owned();
            } else if line.is_empty() && !seen.data.is_empty() {
                return seen;
            }
        }
    }

    /// The next `n` messages; panics on a notice (a gap, a reset, lag).
    async fn messages(&mut self, n: usize) -> Vec<Seen> {
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let seen = self.next().await;
            assert_eq!(seen.kind, "message", "no notice expected: {seen:?}");
            got.push(seen);
        }
        got
    }
}

/// Every node serves one log: publishes on all three get one sequence of offsets in one
/// epoch, each node replays it the same, and a subscriber that moves from node to node
/// with its last id goes on exactly, with no reset and nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_topic_is_one_log_across_the_cluster() {
    let Some((_database, nodes)) = cluster() else {
        return;
    };
    let addrs: Vec<String> = nodes.iter().map(|(p, _)| p.addr.clone()).collect();
    let mut positions = Vec::new();
    for n in 0..30 {
        let at = publish(&addrs[n % 3], "orders.eu", &format!("order-{n}"))
            .await
            .expect("acknowledged");
        positions.push(at);
    }
    let epoch = positions[0].0;
    assert!(
        positions.iter().all(|(e, _)| *e == epoch),
        "one epoch: {positions:?}"
    );
    let offsets: Vec<u64> = positions.iter().map(|(_, o)| *o).collect();
    assert_eq!(
        offsets,
        (0..30).collect::<Vec<u64>>(),
        "one sequence, in publish order"
    );

    let expected: Vec<(String, String)> = (0..30)
        .map(|n| (format!("{epoch}-{n}"), format!("order-{n}")))
        .collect();
    for addr in &addrs {
        let mut replay = Sse::open(addr, "/v1/topics/orders.eu/events?from=earliest", "").await;
        let got: Vec<(String, String)> = replay
            .messages(30)
            .await
            .into_iter()
            .map(|s| (s.id, s.data))
            .collect();
        assert_eq!(got, expected, "node {addr} replays the same log");
    }

    // A subscriber on A reads ten, then moves to B, then to C, resuming with its last id.
    let mut last = String::new();
    let mut got = Vec::new();
    for (hop, addr) in addrs.iter().enumerate() {
        let extra = if last.is_empty() {
            String::new()
        } else {
            format!("Last-Event-ID: {last}\r\n")
        };
        let path = if last.is_empty() {
            "/v1/topics/orders.eu/events?from=earliest"
        } else {
            "/v1/topics/orders.eu/events"
        };
        let mut sse = Sse::open(addr, path, &extra).await;
        // Published on another node while this subscriber is here: it arrives too.
        publish(&addrs[(hop + 1) % 3], "orders.eu", &format!("live-{hop}"))
            .await
            .expect("acknowledged");
        let take = if hop == 2 { 33 - got.len() } else { 10 };
        for seen in sse.messages(take).await {
            last = seen.id.clone();
            got.push(seen.data);
        }
    }
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "nothing twice: {got:?}");
    assert_eq!(got.len(), 33, "everything once: {got:?}");
}

/// A node is killed with `kill -9` and started again while publishes flow to the others:
/// every acknowledged publish is in the log once, at its acknowledged offset, on every node,
/// the restarted one included (it reads what it missed from the database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_stream_loses_nothing_acknowledged() {
    let Some((database, mut nodes)) = cluster() else {
        return;
    };
    let addrs: Vec<String> = nodes.iter().map(|(p, _)| p.addr.clone()).collect();
    // A subscriber on C follows the whole stream live.
    let mut live = Sse::open(&addrs[2], "/v1/topics/orders.burst/events", "").await;

    let publisher = {
        let addrs = addrs.clone();
        tokio::spawn(async move {
            let mut acknowledged = BTreeMap::new();
            let started = Instant::now();
            let mut n = 0u64;
            while started.elapsed() < Duration::from_secs(3) {
                // Round-robin over all three: those sent to the killed node fail.
                let addr = &addrs[(n % 3) as usize];
                if let Some((epoch, offset)) =
                    publish(addr, "orders.burst", &format!("m-{n}")).await
                {
                    assert!(
                        acknowledged
                            .insert(offset, (epoch, format!("m-{n}")))
                            .is_none(),
                        "offset {offset} acknowledged twice"
                    );
                }
                n += 1;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    nodes[0].0.kill_9();
    let restarted = node(&database, &nodes[0].1);
    let acknowledged = publisher.await.unwrap();
    assert!(
        acknowledged.len() > 20,
        "the stream got going: {}",
        acknowledged.len()
    );
    let epoch = acknowledged.values().next().unwrap().0;
    let last = *acknowledged.keys().next_back().unwrap();

    // The live subscriber saw every offset up to the last, in order, once.
    let seen = live.messages(last as usize + 1).await;
    for (offset, event) in seen.iter().enumerate() {
        assert_eq!(event.id, format!("{epoch}-{offset}"), "in order, no gap");
        if let Some((_, body)) = acknowledged.get(&(offset as u64)) {
            assert_eq!(&event.data, body, "offset {offset}");
        }
    }
    // Every node, the restarted one too, replays every acknowledged publish.
    for addr in [&restarted.addr, &addrs[1], &addrs[2]] {
        let mut replay = Sse::open(addr, "/v1/topics/orders.burst/events?from=earliest", "").await;
        let got = replay.messages(last as usize + 1).await;
        for (offset, (_, body)) in &acknowledged {
            assert_eq!(
                &got[*offset as usize].data, body,
                "node {addr}, offset {offset}"
            );
        }
    }
    drop(restarted);
}

/// A durable topic another node made after this one started: a subscriber here from now
/// starts after what the store holds (not at 0 with the history replayed as new), one
/// from the earliest gets the history, and a wildcard subscriber here sees the new topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_made_on_another_node_is_read_from_the_store() {
    let Some((_database, nodes)) = cluster() else {
        return;
    };
    let addrs: Vec<String> = nodes.iter().map(|(p, _)| p.addr.clone()).collect();
    let mut wildcard = Sse::open(&addrs[2], "/v1/topics/orders.%3E/events", "").await;
    for n in 0..5 {
        publish(&addrs[0], "orders.new", &format!("before-{n}"))
            .await
            .expect("acknowledged");
    }
    let mut from_now = Sse::open(&addrs[1], "/v1/topics/orders.new/events", "").await;
    let (epoch, offset) = publish(&addrs[0], "orders.new", "after")
        .await
        .expect("acknowledged");
    assert_eq!(offset, 5);
    let first = from_now.messages(1).await.remove(0);
    assert_eq!(
        (first.id, first.data),
        (format!("{epoch}-5"), "after".to_owned())
    );

    let mut earliest = Sse::open(&addrs[1], "/v1/topics/orders.new/events?from=earliest", "").await;
    let replayed: Vec<String> = earliest
        .messages(6)
        .await
        .into_iter()
        .map(|s| s.data)
        .collect();
    assert_eq!(replayed[..2], ["before-0", "before-1"]);

    let seen: Vec<String> = wildcard
        .messages(6)
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    let expected: Vec<String> = (0..6).map(|n| format!("orders.new:{epoch}-{n}")).collect();
    assert_eq!(
        seen, expected,
        "the wildcard subscriber on another node sees the new topic"
    );
}

/// A node whose connection to the others is cut (its listening connection killed by the
/// database) while messages are committed elsewhere reads them from the store when it
/// listens again: nothing is published after, so only that catch-up can bring them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_catches_up_from_the_store() {
    let Some((database, nodes)) = cluster() else {
        return;
    };
    let addrs: Vec<String> = nodes.iter().map(|(p, _)| p.addr.clone()).collect();
    let mut on_b = Sse::open(&addrs[1], "/v1/topics/orders.cut/events?from=earliest", "").await;
    let (epoch, _) = publish(&addrs[0], "orders.cut", "before")
        .await
        .expect("acknowledged");
    assert_eq!(on_b.messages(1).await[0].data, "before");

    // Every node's listening connection is cut; they listen again after a second.
    cut_listeners(&database);
    for n in 0..20 {
        publish(&addrs[0], "orders.cut", &format!("while-cut-{n}"))
            .await
            .expect("acknowledged");
    }
    let got = on_b.messages(20).await;
    for (n, seen) in got.iter().enumerate() {
        assert_eq!(
            (seen.id.as_str(), seen.data.as_str()),
            (
                format!("{epoch}-{}", n + 1).as_str(),
                format!("while-cut-{n}").as_str()
            )
        );
    }
}

/// A client resumes on a node that has not yet read what another node committed (its
/// listening connection was cut): the node catches up before subscribing, so the client
/// gets exactly what follows its position, not this node's end and then, as the catch-up
/// arrives, messages it already had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_past_what_a_node_has_read_gets_nothing_twice() {
    let Some((database, nodes)) = cluster() else {
        return;
    };
    let addrs: Vec<String> = nodes.iter().map(|(p, _)| p.addr.clone()).collect();
    // B holds the topic (a subscriber there read its first message).
    let mut first_on_b = Sse::open(
        &addrs[1],
        "/v1/topics/orders.ahead/events?from=earliest",
        "",
    )
    .await;
    let (epoch, _) = publish(&addrs[0], "orders.ahead", "m-0")
        .await
        .expect("acknowledged");
    assert_eq!(first_on_b.messages(1).await[0].data, "m-0");

    // B stops hearing commits (for about a second), while A commits twenty more.
    cut_listeners(&database);
    for n in 1..=20 {
        publish(&addrs[0], "orders.ahead", &format!("m-{n}"))
            .await
            .expect("acknowledged");
    }
    // A client that read up to m-15 (on A) resumes on B.
    let mut resumed = Sse::open(
        &addrs[1],
        "/v1/topics/orders.ahead/events",
        &format!("Last-Event-ID: {epoch}-15\r\n"),
    )
    .await;
    let got = resumed.messages(5).await;
    let expected: Vec<(String, String)> = (16..=20)
        .map(|n| (format!("{epoch}-{n}"), format!("m-{n}")))
        .collect();
    let got: Vec<(String, String)> = got.into_iter().map(|s| (s.id, s.data)).collect();
    assert_eq!(got, expected, "exactly what follows the position");
    // And nothing more once B has caught up (m-1 … m-15 are not delivered again).
    publish(&addrs[0], "orders.ahead", "m-21")
        .await
        .expect("acknowledged");
    let next = resumed.messages(1).await.remove(0);
    assert_eq!((next.id, next.data), (format!("{epoch}-21"), "m-21".into()));
}
