//! Pub/sub over HTTP: publish with POST, subscribe with Server-Sent Events, resume with
//! Last-Event-ID, gap notices, and the limits.

#![allow(missing_docs)]

mod support;

use std::time::Duration;

use support::{http, read_until, start};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir::config::ServeConfig;

async fn publish(addr: &str, topic: &str, body: &str) -> String {
    http(
        addr,
        &format!("POST /v1/topics/{topic} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
    )
    .await
}

/// Opens an SSE stream and reads until `until` appears in what arrived.
async fn read_events(addr: &str, path: &str, extra: &str, until: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n").as_bytes())
        .await
        .unwrap();
    read_until(&mut stream, until).await
}

/// The epoch in a publish's answer.
fn epoch_of(answer: &str) -> u64 {
    let body = &answer[answer.find("\r\n\r\n").expect("a body") + 4..];
    let body: serde_json::Value = serde_json::from_str(body.trim()).expect("a JSON body");
    body["epoch"].as_u64().expect("an epoch")
}

#[tokio::test]
async fn publish_then_replay_and_resume_over_sse() {
    let server = start(ServeConfig::defaults()).await;
    let addr = server.http.as_str();
    let first = publish(addr, "news", "hello").await;
    assert!(first.starts_with("HTTP/1.1 202 Accepted"), "{first}");
    assert!(first.contains("\"offset\":0"), "{first}");
    let epoch = epoch_of(&first);
    publish(addr, "news", "second").await;

    let replay = read_events(addr, "/v1/topics/news/events?from=0", "", "data: second").await;
    assert!(
        replay.contains("content-type: text/event-stream"),
        "{replay}"
    );
    assert!(
        replay.contains(&format!("id: {epoch}-0\ndata: hello\n\n")),
        "{replay}"
    );
    assert!(
        replay.contains(&format!("id: {epoch}-1\ndata: second\n\n")),
        "{replay}"
    );

    // A browser reconnecting after event 0 sends its id back and gets what followed.
    publish(addr, "news", "third").await;
    let resumed = read_events(
        addr,
        "/v1/topics/news/events",
        &format!("Last-Event-ID: {epoch}-0\r\n"),
        "data: third",
    )
    .await;
    assert!(!resumed.contains("data: hello"), "{resumed}");
    assert!(!resumed.contains("event: reset"), "{resumed}");
    assert!(
        resumed.contains(&format!("id: {epoch}-1\ndata: second\n\n")),
        "{resumed}"
    );
    assert!(
        resumed.contains(&format!("id: {epoch}-2\ndata: third\n\n")),
        "{resumed}"
    );
    assert!(
        resumed.find("data: second").unwrap() < resumed.find("data: third").unwrap(),
        "in order"
    );
    // So does `?from=` with a position, the first one wanted.
    let from = read_events(
        addr,
        &format!("/v1/topics/news/events?from={epoch}-2"),
        "",
        "data: third",
    )
    .await;
    assert!(!from.contains("data: second"), "{from}");
}

/// A reconnect whose last id is from another epoch of the topic (the server restarted, or
/// the client landed on another node) is told with a `reset` event, then gets what this
/// epoch retains, instead of skipping to the old offset in silence.
#[tokio::test]
async fn a_resume_from_another_epoch_gets_a_reset_event() {
    let before = start(ServeConfig::defaults()).await;
    let old_epoch = epoch_of(&publish(&before.http, "news", "old").await);
    drop(before);

    let server = start(ServeConfig::defaults()).await;
    let addr = server.http.as_str();
    let epoch = epoch_of(&publish(addr, "news", "after-0").await);
    assert_ne!(epoch, old_epoch);
    for n in 1..5 {
        publish(addr, "news", &format!("after-{n}")).await;
    }
    // Offset 2 exists in the new epoch too: without the epoch, 3 and 4 came, 0 to 2 never.
    let resumed = read_events(
        addr,
        "/v1/topics/news/events",
        &format!("Last-Event-ID: {old_epoch}-2\r\n"),
        "data: after-4",
    )
    .await;
    let reset = format!(
        "event: reset\ndata: {{\"epoch\":{epoch},\"from\":0,\"previous_epoch\":{old_epoch},\"topic\":\"news\"}}\n\n"
    );
    assert!(resumed.contains(&reset), "{resumed}");
    let mut at = resumed.find(&reset).unwrap();
    for n in 0..5 {
        let event = format!("id: {epoch}-{n}\ndata: after-{n}\n\n");
        let found = resumed
            .find(&event)
            .unwrap_or_else(|| panic!("{event:?} in {resumed}"));
        assert!(found > at, "in order, after the reset: {resumed}");
        at = found;
    }

    // A pattern stream cannot resume: it says so, then goes on from now.
    let pattern = read_events(
        addr,
        "/v1/topics/news.%3E/events",
        &format!("Last-Event-ID: news.a:{epoch}-0\r\n"),
        "event: reset",
    )
    .await;
    assert!(pattern.contains("\"pattern\":\"news.>\""), "{pattern}");
}

#[tokio::test]
async fn live_subscribers_get_new_messages() {
    let server = start(ServeConfig::defaults()).await;
    let addr = server.http.as_str();
    let reader = {
        let addr = addr.to_string();
        tokio::spawn(async move {
            read_events(&addr, "/v1/topics/live/events", "", "data: fresh").await
        })
    };
    // The subscriber must be in place before the publish; retry publishing until it sees it.
    let seen = loop {
        publish(addr, "live", "fresh").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if reader.is_finished() {
            break reader.await.unwrap();
        }
    };
    assert!(seen.contains("data: fresh"));
}

#[tokio::test]
async fn an_offset_past_the_retention_gets_a_gap_event() {
    let mut config = ServeConfig::defaults();
    config.pubsub.default_retention.max_messages = 2;
    // Nor held for subscribers catching up past the newest two (2-byte payloads, each
    // counted 320 bytes more).
    config.pubsub.max_lag_bytes = 2 * 322;
    let server = start(config).await;
    let addr = server.http.as_str();
    for i in 0..5 {
        publish(addr, "short", &format!("m{i}")).await;
    }
    let events = read_events(addr, "/v1/topics/short/events?from=0", "", "data: m4").await;
    assert!(events.contains("event: gap\n"), "{events}");
    assert!(
        events.contains("\"from\":0") && events.contains("\"to\":2"),
        "{events}"
    );
    assert!(events.contains("-3\ndata: m3\n\n"), "{events}");
    assert!(
        events.find("event: gap").unwrap() < events.find("data: m3").unwrap(),
        "the gap comes first"
    );
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let mut config = ServeConfig::defaults();
    config.pubsub.max_payload = 8;
    let server = start(config).await;
    let addr = server.http.as_str();
    let big = publish(addr, "t", "123456789").await;
    assert!(big.starts_with("HTTP/1.1 413"), "{big}");
    assert!(big.contains("8 bytes"), "{big}");
    let bad_name = publish(addr, "a%20b", "x").await;
    assert!(bad_name.starts_with("HTTP/1.1 400"), "{bad_name}");
    assert!(bad_name.contains("topic"), "{bad_name}");
    let bad_from = http(
        addr,
        "GET /v1/topics/t/events?from=soon HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(bad_from.starts_with("HTTP/1.1 400"), "{bad_from}");
}

#[tokio::test]
async fn percent_escaped_topics_and_patterns_are_decoded() {
    // Browsers escape `>` in a path (encodeURIComponent too): `orders.%3E` is `orders.>`.
    let server = start(ServeConfig::defaults()).await;
    let addr = server.http.as_str();
    publish(addr, "orders%2Eeu", "first").await;
    let seen = read_events(
        addr,
        "/v1/topics/orders.%3E/events?from=earliest",
        "",
        "data: first",
    )
    .await;
    let id = seen
        .lines()
        .find_map(|line| line.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("an id in {seen}"));
    let (topic, position) = id.split_once(':').unwrap();
    assert_eq!(topic, "orders.eu");
    assert!(position.ends_with("-0"), "{id}");
}

/// The offsets a topic still holds, from `GET /v1/topics`: (first, next).
async fn held(addr: &str, topic: &str) -> Option<(u64, u64)> {
    let answer = http(
        addr,
        "GET /v1/topics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    let body = answer.split("\r\n\r\n").nth(1)?;
    let list: serde_json::Value = serde_json::from_str(body).ok()?;
    list["topics"].as_array()?.iter().find_map(|t| {
        (t["topic"] == topic).then(|| {
            (
                t["first_offset"].as_u64().unwrap(),
                t["next_offset"].as_u64().unwrap(),
            )
        })
    })
}

/// `weir_pubsub_retained_bytes` from `/metrics`.
async fn retained_bytes(addr: &str) -> u64 {
    let metrics = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("weir_pubsub_retained_bytes "))
        .and_then(|n| n.parse().ok())
        .expect("the gauge is there")
}

/// Retention was by count and age only: 150 publishes of 1 MiB took the server from 15 MB
/// to 170 MB, and one topic could hold a GiB. Bytes bound it now, per topic and overall,
/// and the oldest messages of all topics go first.
#[tokio::test]
async fn retained_messages_are_bounded_by_bytes_oldest_first() {
    let mut config = ServeConfig::defaults();
    config.pubsub.max_topic_bytes = 4 << 20;
    config.pubsub.max_retained_bytes = 8 << 20;
    let server = start(config).await;
    let addr = server.http.as_str();
    let mib = "x".repeat(1 << 20);
    for _ in 0..20 {
        let answer = publish(addr, "big", &mib).await;
        assert!(
            answer.starts_with("HTTP/1.1 202"),
            "a publish is never refused for it"
        );
    }
    let (first, next) = held(addr, "big").await.unwrap();
    assert_eq!(next, 20);
    assert_eq!(
        next - first,
        3,
        "4 MiB hold three 1 MiB messages and their overhead"
    );
    assert!(retained_bytes(addr).await <= 4 << 20);
    // Two more topics, published after: together past 8 MiB, so the oldest (big's) go.
    for topic in ["later", "latest"] {
        for _ in 0..3 {
            publish(addr, topic, &mib).await;
        }
    }
    let retained = retained_bytes(addr).await;
    assert!(retained <= 8 << 20, "{retained}");
    let (first, next) = held(addr, "big").await.unwrap();
    assert!(
        next - first < 3,
        "the oldest messages went first: big holds {}",
        next - first
    );
    assert_eq!(held(addr, "latest").await, Some((0, 3)), "the newest stay");
    // A replay from the start says what it missed.
    let events = read_events(addr, "/v1/topics/big/events?from=0", "", "event: gap").await;
    assert!(events.contains("\"from\":0"), "{events}");
}

/// Topics never went away, and subscribing creates them: a subscribe-only client filled
/// `--max-topics 40`, after which every publish to a new topic got 503, for good.
#[tokio::test]
async fn a_client_that_subscribed_to_many_names_does_not_hold_them_for_good() {
    let mut config = ServeConfig::defaults();
    config.pubsub.max_topics = 40;
    config.pubsub.topic_idle = Duration::from_millis(200);
    let server = start(config).await;
    let mut hoarder = support::LineClient::connect(&server.line).await;
    for i in 0..40 {
        assert_eq!(
            hoarder.ask(&format!("SUB name{i}")).await,
            format!("+OK subscribed to name{i}")
        );
    }
    let full = publish(&server.http, "fresh", "hello").await;
    assert!(full.starts_with("HTTP/1.1 503"), "{full}");
    drop(hoarder);
    let deadline = tokio::time::Instant::now() + support::DEADLINE;
    loop {
        let answer = publish(&server.http, "fresh", "hello").await;
        if answer.starts_with("HTTP/1.1 202") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle topics never made room: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A topic with a subscriber or a retained message stays.
    assert!(held(&server.http, "fresh").await.is_some());
}
