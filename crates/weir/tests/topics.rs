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

#[tokio::test]
async fn publish_then_replay_and_resume_over_sse() {
    let server = start(ServeConfig::defaults()).await;
    let addr = server.http.as_str();
    let first = publish(addr, "news", "hello").await;
    assert!(first.starts_with("HTTP/1.1 202 Accepted"), "{first}");
    assert!(first.contains("\"offset\":0"), "{first}");
    publish(addr, "news", "second").await;

    let replay = read_events(addr, "/v1/topics/news/events?from=0", "", "data: second").await;
    assert!(
        replay.contains("content-type: text/event-stream"),
        "{replay}"
    );
    assert!(replay.contains("id: 0\ndata: hello\n\n"), "{replay}");
    assert!(replay.contains("id: 1\ndata: second\n\n"), "{replay}");

    // A browser reconnecting after event 0 sends Last-Event-ID: 0 and gets what followed.
    publish(addr, "news", "third").await;
    let resumed = read_events(
        addr,
        "/v1/topics/news/events",
        "Last-Event-ID: 0\r\n",
        "data: third",
    )
    .await;
    assert!(!resumed.contains("data: hello"), "{resumed}");
    assert!(resumed.contains("id: 1\ndata: second\n\n"), "{resumed}");
    assert!(resumed.contains("id: 2\ndata: third\n\n"), "{resumed}");
    assert!(
        resumed.find("id: 1").unwrap() < resumed.find("id: 2").unwrap(),
        "in order"
    );
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
    assert!(events.contains("id: 3\ndata: m3\n\n"), "{events}");
    assert!(
        events.find("event: gap").unwrap() < events.find("id: 3").unwrap(),
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
    assert!(seen.contains("id: orders.eu:0"), "{seen}");
}
