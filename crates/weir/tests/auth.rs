//! Tokens with scopes and the subscription limits, over real sockets on every transport.

#![allow(missing_docs)]

mod support;

use support::{http, read_until, start, LineClient};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir::config::ServeConfig;
use weir_auth::Tokens;

const PUBLISHER: &str = "publisher-0123456789";
const READER: &str = "reader-0123456789abc";
const ADMIN: &str = "admin-0123456789abcd";

fn with_tokens() -> ServeConfig {
    let mut config = ServeConfig::defaults();
    config.tokens = Tokens::parse(&format!(
        "{PUBLISHER}:publish,{READER}:subscribe,{ADMIN}:admin"
    ))
    .unwrap();
    config
}

fn post(topic: &str, body: &str, auth: &str) -> String {
    format!(
        "POST /v1/topics/{topic} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get(path: &str, auth: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}\r\n")
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

#[tokio::test]
async fn http_requests_without_a_valid_token_get_401_and_change_nothing() {
    let server = start(with_tokens()).await;
    let refused = http(&server.http, &post("news", "sneaky", "")).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("www-authenticate: Bearer"), "{refused}");
    let wrong = http(
        &server.http,
        &post("news", "sneaky", &bearer("not-a-real-token-xyz")),
    )
    .await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    // A token without the scope: 403.
    let reader = http(&server.http, &post("news", "sneaky", &bearer(READER))).await;
    assert!(reader.starts_with("HTTP/1.1 403"), "{reader}");
    assert!(reader.contains("lacks the publish scope"), "{reader}");

    let ok = http(&server.http, &post("news", "first", &bearer(PUBLISHER))).await;
    assert!(ok.starts_with("HTTP/1.1 202"), "{ok}");
    assert!(
        ok.contains("\"offset\":0"),
        "the refused requests published nothing: {ok}"
    );

    // Browsers cannot set headers on EventSource: ?token= works too.
    let mut events = TcpStream::connect(&server.http).await.unwrap();
    events
        .write_all(
            format!("GET /v1/topics/news/events?from=earliest&token={READER} HTTP/1.1\r\nHost: t\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let seen = read_until(&mut events, "data: first").await;
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    let anonymous = http(&server.http, &get("/v1/topics/news/events", "")).await;
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    let publisher = http(
        &server.http,
        &get("/v1/topics/news/events", &bearer(PUBLISHER)),
    )
    .await;
    assert!(publisher.starts_with("HTTP/1.1 403"), "{publisher}");
}

#[tokio::test]
async fn metrics_need_admin_and_health_stays_open() {
    let server = start(with_tokens()).await;
    let health = http(&server.http, &get("/healthz", "")).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let anonymous = http(&server.http, &get("/metrics", "")).await;
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    let reader = http(&server.http, &get("/metrics", &bearer(READER))).await;
    assert!(reader.starts_with("HTTP/1.1 403"), "{reader}");
    let admin = http(&server.http, &get("/metrics", &bearer(ADMIN))).await;
    assert!(admin.starts_with("HTTP/1.1 200"), "{admin}");
}

#[tokio::test]
async fn a_websocket_upgrade_needs_a_token() {
    let server = start(with_tokens()).await;
    let upgrade = |auth: &str| {
        format!(
            "GET /v1/ws{auth} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let mut refused = TcpStream::connect(&server.http).await.unwrap();
    refused.write_all(upgrade("").as_bytes()).await.unwrap();
    let head = read_until(&mut refused, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let mut accepted = TcpStream::connect(&server.http).await.unwrap();
    accepted
        .write_all(upgrade(&format!("?token={READER}")).as_bytes())
        .await
        .unwrap();
    let head = read_until(&mut accepted, "\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Each frame is checked against the token's scopes: this one may not publish.
    let frame = br#"{"op":"publish","topic":"news","payload":"x"}"#;
    let mask = [1u8, 2, 3, 4];
    let mut masked = vec![0x81, 0x80 | frame.len() as u8];
    masked.extend(mask);
    masked.extend(frame.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    accepted.write_all(&masked).await.unwrap();
    let answer = read_until(&mut accepted, "scope").await;
    assert!(
        answer.contains("this token lacks the publish scope"),
        "{answer}"
    );
    let nothing = http(&server.http, &get("/v1/topics", &bearer(ADMIN))).await;
    assert!(
        !nothing.contains("\"news\""),
        "nothing was published: {nothing}"
    );
}

#[tokio::test]
async fn the_line_protocol_asks_for_auth_and_checks_scopes() {
    let server = start(with_tokens()).await;
    let mut client = LineClient::connect(&server.line).await;
    assert!(client
        .ask("SUB news")
        .await
        .starts_with("-ERR authenticate first"));
    assert!(client
        .ask("NICK ada")
        .await
        .starts_with("-ERR authenticate first"));
    assert_eq!(
        client.ask("AUTH wrong-token-0123456789").await,
        "-ERR invalid token"
    );
    assert_eq!(
        client.ask(&format!("AUTH {READER}")).await,
        "+OK authenticated"
    );
    assert_eq!(client.ask("SUB news").await, "+OK subscribed to news");
    assert!(client
        .ask("PUB news hello")
        .await
        .starts_with("-ERR this token lacks the publish scope"));

    let mut publisher = LineClient::connect(&server.line).await;
    assert_eq!(
        publisher.ask(&format!("AUTH {PUBLISHER}")).await,
        "+OK authenticated"
    );
    assert_eq!(publisher.ask("PUB news hello").await, "+OK news offset 0");
    assert_eq!(client.line().await, "EVENT news 0 hello");
}

#[tokio::test]
async fn subscriptions_per_connection_and_subscribers_per_topic_are_limited() {
    let mut config = ServeConfig::defaults();
    config.max_subscriptions = 2;
    config.pubsub.max_subscribers_per_topic = 1;
    let server = start(config).await;

    let mut client = LineClient::connect(&server.line).await;
    assert_eq!(client.ask("SUB a").await, "+OK subscribed to a");
    assert_eq!(client.ask("NICK ada").await, "+OK you are ada");
    client.send("JOIN lobby").await;
    client.expect("+OK joined lobby").await;
    client.send("SUB b").await;
    let refused = client.expect("-ERR").await;
    assert!(refused.starts_with("-ERR subscription limit"), "{refused}");
    assert!(refused.contains("pubsub.max_subscriptions"), "{refused}");
    // Giving one back makes room.
    assert_eq!(client.ask("UNSUB a").await, "+OK unsubscribed from a");
    assert_eq!(client.ask("SUB b").await, "+OK subscribed to b");

    // Topic b has its one subscriber: the next is refused, over SSE with 503.
    let mut other = LineClient::connect(&server.line).await;
    let refused = other.ask("SUB b").await;
    assert!(refused.contains("maximum of 1 subscribers"), "{refused}");
    let sse = http(&server.http, &get("/v1/topics/b/events", "")).await;
    assert!(sse.starts_with("HTTP/1.1 503"), "{sse}");
}
