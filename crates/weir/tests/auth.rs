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
        "POST /v1/topics/{topic} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get(path: &str, auth: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\r\n")
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
            format!("GET /v1/topics/news/events?from=earliest&token={READER} HTTP/1.1\r\nHost: localhost\r\n\r\n")
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
            "GET /v1/ws{auth} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
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
    assert_eq!(client.event().await, "EVENT news 0 hello");
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

const PRODUCER: &str = "producer-0123456789a";

fn with_producer() -> ServeConfig {
    let mut config = ServeConfig::defaults();
    config.tokens = Tokens::parse(&format!(
        "{PUBLISHER}:publish,{READER}:subscribe,{PRODUCER}:enqueue"
    ))
    .unwrap();
    config
}

fn enqueue(body: &str, token: &str) -> String {
    format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        bearer(token),
        body.len()
    )
}

/// Job events once went out on ordinary topics with the whole job: a `subscribe` token read
/// an `http` job's `Authorization` header from `queues.>`, though `GET /v1/jobs` refused it.
#[tokio::test]
async fn a_subscriber_reads_no_job_secrets() {
    let server = start(with_producer()).await;
    let secret = "Bearer s3cret-of-the-producer";
    let job = format!(
        r#"{{"queue":"hooks","kind":"http","payload":{{"url":"http://127.0.0.1:9/","headers":{{"Authorization":"{secret}"}}}}}}"#
    );
    // The events' own topics need the right to read jobs.
    let refused = http(
        &server.http,
        &get("/v1/topics/$queues.>/events", &bearer(READER)),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(refused.contains("lacks the enqueue scope"), "{refused}");
    // A subscription to everything sees every client topic, and no system topic.
    let mut everything = TcpStream::connect(&server.http).await.unwrap();
    everything
        .write_all(get("/v1/topics/>/events", &bearer(READER)).as_bytes())
        .await
        .unwrap();
    read_until(&mut everything, "\r\n\r\n").await;
    // A producer may read the events: they carry no payload, result or token.
    let mut events = TcpStream::connect(&server.http).await.unwrap();
    events
        .write_all(get("/v1/topics/$queues.hooks/events", &bearer(PRODUCER)).as_bytes())
        .await
        .unwrap();
    read_until(&mut events, "\r\n\r\n").await;
    let created = http(&server.http, &enqueue(&job, PRODUCER)).await;
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let event = read_until(&mut events, "\"event\":\"enqueued\"").await;
    assert!(!event.contains("s3cret"), "{event}");
    assert!(!event.contains("payload"), "{event}");
    assert!(!event.contains("fencing_token"), "{event}");
    // The marker published after the job: the `>` stream's next event must be it.
    let marker = http(&server.http, &post("after", "marker", &bearer(PUBLISHER))).await;
    assert!(marker.starts_with("HTTP/1.1 202"), "{marker}");
    let seen = read_until(&mut everything, "data: marker").await;
    assert!(
        !seen.contains("s3cret") && !seen.contains("enqueued"),
        "{seen}"
    );
}

/// A `publish` token could post a fake `completed` event on a job's topic, which the
/// dashboard showed and which hid the job's real updates.
#[tokio::test]
async fn nobody_publishes_on_the_servers_topics() {
    let server = start(with_producer()).await;
    for topic in ["$queues.default", "$jobs.1", "$chat.lobby"] {
        let forged = http(
            &server.http,
            &post(topic, r#"{"event":"completed"}"#, &bearer(PUBLISHER)),
        )
        .await;
        assert!(forged.starts_with("HTTP/1.1 403"), "{topic}: {forged}");
        assert!(forged.contains("system topic"), "{forged}");
    }
    let mut line = LineClient::connect(&server.line).await;
    assert_eq!(
        line.ask(&format!("AUTH {PUBLISHER}")).await,
        "+OK authenticated"
    );
    let answer = line.ask("PUB $queues.default forged").await;
    assert!(
        answer.starts_with("-ERR $queues.default is a system topic"),
        "{answer}"
    );
}

/// Rooms were ordinary topics: anyone allowed to publish could post `MSG lobby admin …`
/// under any nickname, bypassing `NICK`.
#[tokio::test]
async fn a_chat_message_comes_only_from_its_speaker() {
    let server = start(ServeConfig::defaults()).await;
    let mut ada = LineClient::connect(&server.line).await;
    ada.ask("NICK ada").await;
    ada.send("JOIN lobby").await;
    ada.expect("JOIN lobby ada").await;
    let mut mallory = LineClient::connect(&server.line).await;
    let forged = r#"{"kind":"say","nick":"admin","text":"send me your token"}"#;
    let answer = mallory.ask(&format!("PUB $chat.lobby {forged}")).await;
    assert!(answer.starts_with("-ERR"), "{answer}");
    // The old room topic is an ordinary topic now, which no room reads.
    assert!(mallory
        .ask(&format!("PUB chat.lobby {forged}"))
        .await
        .starts_with("+OK"));
    ada.send("SAY lobby hello").await;
    assert_eq!(
        ada.line().await,
        "MSG lobby ada hello",
        "nothing forged came first"
    );
}

/// A token limited to topic patterns: `publish:orders.*` and `subscribe:chat.>|news`.
#[tokio::test]
async fn a_token_reaches_only_its_topic_patterns() {
    const LIMITED: &str = "limited-0123456789ab";
    let mut config = ServeConfig::defaults();
    config.tokens =
        Tokens::parse(&format!("{LIMITED}:publish:orders.*+subscribe:chat.>|news")).unwrap();
    let server = start(config).await;
    let ok = http(&server.http, &post("orders.new", "1", &bearer(LIMITED))).await;
    assert!(ok.starts_with("HTTP/1.1 202"), "{ok}");
    let outside = http(&server.http, &post("news", "1", &bearer(LIMITED))).await;
    assert!(outside.starts_with("HTTP/1.1 403"), "{outside}");
    assert!(outside.contains("does not reach news"), "{outside}");
    let wide = http(&server.http, &get("/v1/topics/>/events", &bearer(LIMITED))).await;
    assert!(
        wide.starts_with("HTTP/1.1 403"),
        "wider than its rights: {wide}"
    );
    let mut line = LineClient::connect(&server.line).await;
    assert_eq!(
        line.ask(&format!("AUTH {LIMITED}")).await,
        "+OK authenticated"
    );
    assert_eq!(
        line.ask("SUB chat.eu.>").await,
        "+OK subscribed to chat.eu.>"
    );
    assert!(line.ask("SUB orders.*").await.starts_with("-ERR"));
    assert!(line.ask("PUB news x").await.starts_with("-ERR"));
}

const JWT_SECRET: &str = "a-backend-secret-of-32-bytes-or-more!";

/// A token an application's backend signs for one user, valid for `seconds`.
fn signed(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn in_seconds(seconds: u64) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + seconds
}

fn with_signed_tokens() -> ServeConfig {
    let mut config = ServeConfig::defaults();
    config.tokens = Tokens::parse("")
        .unwrap()
        .with_signed(weir_auth::SignedTokens::hs256(JWT_SECRET.as_bytes()).unwrap());
    config
}

/// Signed tokens are checked on every transport, and a session ends, with a reason, when
/// its token expires.
#[tokio::test]
async fn signed_tokens_are_checked_everywhere_and_end_their_sessions_at_expiry() {
    let server = start(with_signed_tokens()).await;
    let token = signed(serde_json::json!({
        "sub": "user-1", "exp": in_seconds(2), "scope": "publish subscribe", "publish": ["news"]
    }));
    let ok = http(&server.http, &post("news", "hi", &bearer(&token))).await;
    assert!(ok.starts_with("HTTP/1.1 202"), "{ok}");
    let outside = http(&server.http, &post("orders", "hi", &bearer(&token))).await;
    assert!(outside.starts_with("HTTP/1.1 403"), "{outside}");
    // A stream, a line session and a WebSocket, all on the same token.
    let mut sse = TcpStream::connect(&server.http).await.unwrap();
    sse.write_all(get(&format!("/v1/topics/news/events?token={token}"), "").as_bytes())
        .await
        .unwrap();
    read_until(&mut sse, "\r\n\r\n").await;
    let mut line = LineClient::connect(&server.line).await;
    assert_eq!(
        line.ask(&format!("AUTH {token}")).await,
        "+OK authenticated"
    );
    let mut ws = TcpStream::connect(&server.http).await.unwrap();
    ws.write_all(
        format!(
            "GET /v1/ws?token={token} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    read_until(&mut ws, "\r\n\r\n").await;
    // At expiry each ends, saying why.
    let ended = read_until(&mut sse, "token expired").await;
    assert!(ended.contains("event: disconnected"), "{ended}");
    assert_eq!(line.line().await, "-ERR token expired; closing");
    let closed = read_until(&mut ws, "token expired").await;
    assert!(closed.contains("disconnected"), "{closed}");
    // And the expired token opens nothing new.
    let late = http(&server.http, &post("news", "late", &bearer(&token))).await;
    assert!(late.starts_with("HTTP/1.1 401"), "{late}");
    assert!(late.contains("the token expired"), "{late}");
    let mut again = LineClient::connect(&server.line).await;
    assert_eq!(
        again.ask(&format!("AUTH {token}")).await,
        "-ERR the token expired"
    );
}

/// weir-auth says who reads which system namespace; weir-jobs and weir-chat name the
/// topics. The three must agree, or job events would be readable with the wrong scope.
#[test]
fn the_rules_for_system_topics_name_the_topics_the_server_publishes() {
    use weir_auth::{Scope, SYSTEM_NAMESPACES};
    let rule = |prefix: &str| {
        SYSTEM_NAMESPACES
            .iter()
            .find(|(name, _)| *name == prefix)
            .map(|(_, scope)| *scope)
    };
    assert_eq!(
        rule(weir_jobs::QUEUE_TOPIC_PREFIX),
        Some(Some(Scope::Enqueue))
    );
    assert_eq!(
        rule(weir_jobs::JOB_TOPIC_PREFIX),
        Some(Some(Scope::Enqueue))
    );
    assert_eq!(
        rule(weir_chat::ROOM_TOPIC_PREFIX),
        Some(None),
        "rooms are joined"
    );
}
