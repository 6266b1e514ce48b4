//! Two `weir serve` nodes on one PostgreSQL act as one hub: a message published on either
//! reaches subscribers on both, once each, in order, whatever its size; job events too.
//! Real processes and a real PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{fresh_database, http, spawn_serve, temp_dir, Process, DEADLINE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;

/// Two nodes on a fresh database, or `None` without PostgreSQL.
fn cluster() -> Option<(Process, Process)> {
    let database = fresh_database()?;
    let node = |label| {
        let dir = temp_dir(label);
        spawn_serve(&["--database", &database, "--data-dir", dir.to_str().unwrap()])
    };
    Some((node("relay-a"), node("relay-b")))
}

/// An SSE subscription over a raw socket.
struct Sse {
    lines: Lines<BufReader<TcpStream>>,
}

impl Sse {
    async fn open(addr: &str, pattern: &str) -> Sse {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET /v1/topics/{pattern}/events HTTP/1.1\r\nHost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut sse = Sse {
            lines: BufReader::new(stream).lines(),
        };
        let status = sse.line(DEADLINE).await.expect("a status line");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        while sse
            .line(DEADLINE)
            .await
            .is_some_and(|line| !line.is_empty())
        {}
        sse
    }

    async fn line(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, self.lines.next_line())
            .await
            .ok()
            .map(|line| line.unwrap().expect("the stream stays open"))
    }

    /// The next message's data within `wait`, skipping heartbeats and ids; `None` if none.
    async fn next(&mut self, wait: Duration) -> Option<String> {
        let until = Instant::now() + wait;
        loop {
            let line = self
                .line(until.saturating_duration_since(Instant::now()))
                .await?;
            if let Some(data) = line.strip_prefix("data: ") {
                return Some(data.to_owned());
            }
        }
    }

    /// The next message that is not a warm-up message.
    async fn next_real(&mut self) -> String {
        loop {
            let data = self
                .next(DEADLINE)
                .await
                .expect("a message within the deadline");
            if !data.starts_with("warm-up") {
                return data;
            }
        }
    }
}

async fn publish(addr: &str, topic: &str, payload: &str) {
    let raw = format!(
        "POST /v1/topics/{topic} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    let answer = http(addr, &raw).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
}

/// Publishes warm-up messages on `addr` until `subscriber` (on the other node) sees one:
/// a node learns what the other's subscribers want in the background, within moments.
async fn until_relayed(addr: &str, topic: &str, subscriber: &mut Sse) {
    let started = Instant::now();
    loop {
        publish(addr, topic, "warm-up").await;
        if subscriber.next(Duration::from_millis(300)).await.is_some() {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "nothing relayed to the other node"
        );
    }
}

async fn metric(addr: &str, name: &str) -> f64 {
    let answer = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    answer
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {answer}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_once_each_in_order_whatever_their_size() {
    let Some((a, b)) = cluster() else {
        return;
    };
    let (a, b) = (a.addr.clone(), b.addr.clone());
    let mut wildcard_on_b = Sse::open(&b, "room.>").await;
    let mut exact_on_a = Sse::open(&a, "room.1").await;
    until_relayed(&a, "room.warm", &mut wildcard_on_b).await;
    until_relayed(&b, "room.1", &mut exact_on_a).await;

    // From A: numbered messages, then one far larger than a notification (8,000 bytes),
    // with multibyte characters across every cut.
    let large: String = "größer ✓ ".repeat(20_000);
    for n in 0..50 {
        publish(&a, "room.1", &format!("a-{n}")).await;
    }
    publish(&a, "room.1", &large).await;
    // Then from B.
    for n in 0..10 {
        publish(&b, "room.1", &format!("b-{n}")).await;
    }

    let from_a: Vec<String> = (0..50).map(|n| format!("a-{n}")).chain([large]).collect();
    let from_b: Vec<String> = (0..10).map(|n| format!("b-{n}")).collect();
    // B's subscriber gets A's messages through the relay and B's own directly; A's gets its
    // own once (A skips its own notifications, and B does not send them back) and B's.
    // Each node's messages keep their order; how the two interleave depends on timing.
    for (node, subscriber) in [("B", &mut wildcard_on_b), ("A", &mut exact_on_a)] {
        let mut got = Vec::new();
        for _ in 0..from_a.len() + from_b.len() {
            got.push(subscriber.next_real().await);
        }
        let (got_a, got_b): (Vec<String>, Vec<String>) = got
            .into_iter()
            .partition(|message| !message.starts_with("b-"));
        assert!(
            got_a == from_a,
            "node {node}: A's messages out of order, missing or doubled"
        );
        assert_eq!(got_b, from_b, "node {node}");
        assert_eq!(
            subscriber.next(Duration::from_millis(500)).await,
            None,
            "node {node}: nothing twice"
        );
    }

    assert!(metric(&b, "weir_pubsub_relay_received_total").await >= 51.0);
    assert_eq!(metric(&b, "weir_pubsub_relay_peers").await, 1.0);
    assert_eq!(metric(&a, "weir_pubsub_relay_lost_total").await, 0.0);
    // A topic no other node wants is not sent at all: of six messages, the five that B
    // does not want leave A's count alone.
    let sent_before = metric(&a, "weir_pubsub_relay_sent_total").await;
    for n in 0..5 {
        publish(&a, "quiet.x", &format!("q-{n}")).await;
    }
    publish(&a, "room.marker", "marker").await;
    assert_eq!(wildcard_on_b.next_real().await, "marker");
    let started = Instant::now();
    while metric(&a, "weir_pubsub_relay_sent_total").await < sent_before + 1.0 {
        assert!(
            started.elapsed() < DEADLINE,
            "A never counted the marker as sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(&a, "weir_pubsub_relay_sent_total").await,
        sent_before + 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_events_reach_subscribers_on_the_other_node() {
    let Some((a, b)) = cluster() else {
        return;
    };
    let (a, b) = (a.addr.clone(), b.addr.clone());
    let enqueue = |addr: String| async move {
        let body = json!({"queue": "relayq", "kind": "echo", "payload": {}}).to_string();
        let raw = format!(
            "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = http(&addr, &raw).await;
        let json = answer.split("\r\n\r\n").nth(1).unwrap();
        serde_json::from_str::<Value>(json).unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    // The queue's events, subscribed on B, for a job enqueued on A.
    // Clients cannot publish warm-up messages on a system topic: a client topic subscribed
    // beside it shows when A knows what B wants (B announces all it wants at once).
    let mut queue_on_b = Sse::open(&b, "$queues.relayq").await;
    let mut ready_on_b = Sse::open(&b, "relay.ready").await;
    until_relayed(&a, "relay.ready", &mut ready_on_b).await;
    let id = enqueue(a.clone()).await;
    let event: Value = serde_json::from_str(&queue_on_b.next_real().await).unwrap();
    assert_eq!(
        (event["event"].as_str(), event["job"]["id"].as_i64()),
        (Some("enqueued"), Some(id))
    );
    // A job's own topic exists only where someone subscribed: here on B alone. Its events
    // still cross from A, where the change is made. (B announces all it wants at once, so
    // once A relays the marker topic, A knows of the job's topic too.)
    let topic = format!("$jobs.{id}");
    let mut job_on_b = Sse::open(&b, &topic).await;
    let mut marker_on_b = Sse::open(&b, "relay.marker").await;
    until_relayed(&a, "relay.marker", &mut marker_on_b).await;
    let topics = http(
        &a,
        "GET /v1/topics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(!topics.contains(&format!("\"{topic}\"")), "{topics}");
    let raw = format!(
        "POST /v1/jobs/{id}/cancel HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let answer = http(&a, &raw).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for subscriber in [&mut job_on_b, &mut queue_on_b] {
        let event: Value = serde_json::from_str(&subscriber.next_real().await).unwrap();
        assert_eq!(
            (event["event"].as_str(), event["job"]["id"].as_i64()),
            (Some("cancelled"), Some(id))
        );
    }
}

/// Chat across nodes: a nickname is the cluster's, not a node's, and `WHO` names who is in
/// a room on every node; a nickname given up on one node is free on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nicknames_and_who_cover_the_cluster() {
    let Some((a, b)) = cluster() else {
        return;
    };
    let mut ada = support::LineClient::connect(&a.line).await;
    let mut other = support::LineClient::connect(&b.line).await;
    assert_eq!(ada.ask("NICK ada").await, "+OK you are ada");
    assert_eq!(
        other.ask("NICK ADA").await,
        "-ERR nickname ADA is taken",
        "taken on another node, case-insensitively"
    );
    assert_eq!(ada.ask("JOIN lobby").await, "+OK joined lobby (1 here)");
    assert_eq!(other.ask("NICK bob").await, "+OK you are bob");
    other.send("JOIN lobby").await;
    assert_eq!(other.expect("+OK").await, "+OK joined lobby (2 here)");
    // Events (Bob's own join, Ada's part) may come before an answer: skip to it.
    other.send("WHO lobby").await;
    assert_eq!(other.expect("+OK").await, "+OK lobby: ada bob");
    // Ada hears Bob's join first (it crossed from the other node).
    ada.send("WHO lobby").await;
    assert_eq!(ada.expect("+OK").await, "+OK lobby: ada bob");

    // Ada leaves (her connection closes): the room and the name are free everywhere.
    ada.send("QUIT").await;
    drop(ada);
    let started = Instant::now();
    loop {
        other.send("WHO lobby").await;
        if other.expect("+OK").await == "+OK lobby: bob" {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "ada never left the room");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut again = support::LineClient::connect(&b.line).await;
    assert_eq!(again.ask("NICK ada").await, "+OK you are ada");
}

/// A port free on loopback now (the node listens on it moments later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A route frame, as crates/weir-pubsub's route_wire writes them (unsealed: a stranger
/// has no key to seal a batch with).
fn route_frame(topic: &str, payload: &str) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&((3 + topic.len() + payload.len()) as u32).to_be_bytes());
    frame.push(0);
    frame.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    frame.extend_from_slice(topic.as_bytes());
    frame.extend_from_slice(payload.as_bytes());
    frame
}

/// Whether the node closes `stream` within the deadline (reading whatever it says first).
async fn closed_by_node(stream: &mut TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut sink = [0u8; 256];
    let until = Instant::now() + DEADLINE;
    while let Ok(read) = tokio::time::timeout_at(until.into(), stream.read(&mut sink)).await {
        match read {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_carry_messages_once_each_and_strangers_cannot_speak_on_them() {
    let Some(database) = fresh_database() else {
        return;
    };
    let node = |label, route: Option<u16>| {
        let dir = temp_dir(label);
        let route = route.map(|port| format!("127.0.0.1:{port}"));
        let mut args = vec!["--database", &database, "--data-dir", dir.to_str().unwrap()];
        if let Some(route) = &route {
            args.extend(["--route-addr", route]);
        }
        spawn_serve(&args)
    };
    let b_route = free_port();
    // A and B have routes; C has none and is reached through PostgreSQL.
    let (a, b, c) = (
        node("route-a", Some(free_port())),
        node("route-b", Some(b_route)),
        node("route-c", None),
    );
    let (a, b, c) = (a.addr.clone(), b.addr.clone(), c.addr.clone());
    let mut on_b = Sse::open(&b, "feed").await;
    let mut on_c = Sse::open(&c, "feed").await;
    let mut on_a = Sse::open(&a, "feed").await;
    until_relayed(&a, "feed", &mut on_b).await;
    until_relayed(&a, "feed", &mut on_c).await;
    until_relayed(&c, "feed", &mut on_a).await;
    until_relayed(&c, "feed", &mut on_b).await;

    // From A (routes): B gets them by its route, C through PostgreSQL; from C (none): both
    // through PostgreSQL. Each subscriber gets each message once, in its sender's order.
    let large: String = "größer ✓ ".repeat(20_000);
    let from_a: Vec<String> = (0..200)
        .map(|n| format!("a-{n}"))
        .chain([large.clone()])
        .collect();
    let from_c: Vec<String> = (0..20).map(|n| format!("c-{n}")).collect();
    for message in &from_a {
        publish(&a, "feed", message).await;
    }
    for message in &from_c {
        publish(&c, "feed", message).await;
    }
    for (label, subscriber, expected) in [
        ("B", &mut on_b, vec![from_a.clone(), from_c.clone()]),
        ("C", &mut on_c, vec![from_a.clone(), from_c.clone()]),
        ("A", &mut on_a, vec![from_a.clone(), from_c.clone()]),
    ] {
        let total: usize = expected.iter().map(Vec::len).sum();
        let mut got = Vec::new();
        for _ in 0..total {
            got.push(subscriber.next_real().await);
        }
        let (got_c, got_a): (Vec<String>, Vec<String>) =
            got.into_iter().partition(|m| m.starts_with("c-"));
        assert!(
            got_a == expected[0],
            "node {label}: A's messages missing, doubled or out of order"
        );
        assert_eq!(got_c, expected[1], "node {label}");
        assert_eq!(
            subscriber.next(Duration::from_millis(500)).await,
            None,
            "node {label}: nothing twice"
        );
    }
    assert_eq!(metric(&a, "weir_pubsub_relay_dropped_total").await, 0.0);

    // A stranger on B's route port: frames with no handshake, then after a handshake with
    // a proof made without the cluster's secret. B publishes neither and closes both.
    let port = format!("127.0.0.1:{b_route}");
    let mut blunt = TcpStream::connect(&port).await.unwrap();
    blunt
        .write_all(&route_frame("feed", "injected-blunt").repeat(3))
        .await
        .unwrap();
    assert!(
        closed_by_node(&mut blunt).await,
        "B kept a connection that sent no proof"
    );

    let mut forger = TcpStream::connect(&port).await.unwrap();
    let mut hello = [0u8; 40];
    tokio::io::AsyncReadExt::read_exact(&mut forger, &mut hello)
        .await
        .unwrap();
    assert_eq!(&hello[..8], b"WEIRRT01");
    let mut answer = vec![7u8; 8 + 8 + 32]; // a node id, the one wanted, a nonce
    answer.extend((0..32).map(|_| fastrand::u8(..))); // a guessed proof
    answer.extend(route_frame("feed", "injected-forged"));
    forger.write_all(&answer).await.unwrap();
    assert!(
        closed_by_node(&mut forger).await,
        "B kept a connection with a forged proof"
    );

    publish(&a, "feed", "after").await;
    assert_eq!(on_b.next_real().await, "after", "the route still works");
    assert_eq!(
        on_b.next(Duration::from_millis(500)).await,
        None,
        "nothing injected reached B's subscriber"
    );
}
