//! Connection limits against one client that takes every slot: a cap per client address,
//! a deadline to authenticate, and room for the operator's health checks when the server
//! is full. Over real sockets.

#![allow(missing_docs)]

mod support;

use std::num::NonZeroUsize;
use std::time::Duration;

use support::{http, start, LineClient, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::config::ServeConfig;
use weir_auth::Tokens;

/// Everything the server sends before it closes, or what came within `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(within, stream.read_to_end(&mut seen))
        .await
        .is_ok();
    (String::from_utf8_lossy(&seen).into_owned(), closed)
}

/// Opens an SSE stream that holds its connection.
async fn stream_events(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /v1/topics/news/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 512];
    let read = tokio::time::timeout(DEADLINE, stream.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert!(head[..read].starts_with(b"HTTP/1.1 200"));
    stream
}

/// Four SSE streams filled `--max-connections 4`, and `/healthz` timed out.
#[tokio::test]
async fn health_and_metrics_answer_when_every_connection_is_taken() {
    let mut config = ServeConfig::defaults();
    config.http.max_connections = NonZeroUsize::new(4).unwrap();
    let server = start(config).await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(stream_events(&server.http).await);
    }
    let health = http(
        &server.http,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = http(
        &server.http,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    // Only those: the API waits for a regular connection.
    let api = http(
        &server.http,
        "GET /v1/topics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(api.starts_with("HTTP/1.1 503"), "{api}");
    assert!(api.to_ascii_lowercase().contains("retry-after: 1"), "{api}");
    drop(streams);
}

/// One client could take every HTTP slot; now one address holds at most its share.
#[tokio::test]
async fn one_address_holds_at_most_its_share_of_http_connections() {
    let mut config = ServeConfig::defaults();
    config.http.max_connections_per_address = 2;
    let server = start(config).await;
    // Two idle connections (the server waits for their first request).
    let first = TcpStream::connect(&server.http).await.unwrap();
    let _second = TcpStream::connect(&server.http).await.unwrap();
    // A third is closed unanswered (perhaps reset: its request was never read).
    let mut third = TcpStream::connect(&server.http).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, third.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "closed within the deadline");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    drop(first);
    // The place comes back once the server has seen the close.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        // Until then a new connection is closed at once (maybe reset): read what comes.
        let mut stream = TcpStream::connect(&server.http).await.unwrap();
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Four idle line connections that never authenticate filled `--line-max-connections 4`,
/// and one `\n` every 15 minutes kept each alive.
#[tokio::test]
async fn line_connections_are_capped_per_address_and_must_authenticate() {
    let mut config = ServeConfig::defaults();
    config.tokens = Tokens::parse("reader-0123456789abc:subscribe").unwrap();
    config.line_max_connections_per_address = 2;
    config.line_auth_timeout = Duration::from_millis(300);
    let server = start(config).await;
    let mut idle = TcpStream::connect(&server.line).await.unwrap();
    let mut reader = LineClient::connect(&server.line).await;
    assert_eq!(
        reader.ask("AUTH reader-0123456789abc").await,
        "+OK authenticated"
    );
    let mut third = TcpStream::connect(&server.line).await.unwrap();
    let (said, closed) = read_until_closed(&mut third, DEADLINE).await;
    assert!(closed, "{said}");
    assert!(
        said.contains("too many connections from your address"),
        "{said}"
    );
    // The one that never authenticated is closed after the deadline, keep-alives or not.
    idle.write_all(b"\n").await.unwrap();
    let (said, closed) = read_until_closed(&mut idle, DEADLINE).await;
    assert!(closed, "{said}");
    assert!(said.contains("no AUTH within"), "{said}");
    // The authenticated one goes on.
    assert_eq!(reader.ask("SUB news").await, "+OK subscribed to news");
}
