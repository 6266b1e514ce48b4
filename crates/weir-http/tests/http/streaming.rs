//! Streamed responses: chunked bodies, Server-Sent Events, and the WebSocket upgrade.

use tokio::io::AsyncReadExt;

use crate::support::*;

#[tokio::test]
async fn a_streamed_body_is_sent_chunked() {
    let server = start_default().await;
    let (response, mut client) =
        exchange(&server, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.body, b"one,two,three");
    // The connection stays usable after the last chunk.
    client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(client.response().await.status, 200);
}

#[tokio::test]
async fn a_streamed_body_to_http10_is_close_delimited() {
    let server = start_default().await;
    let (response, _) = exchange(&server, b"GET /stream HTTP/1.0\r\n\r\n").await;
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.body, b"one,two,three");
}

#[tokio::test]
async fn server_sent_events_are_flushed_with_heartbeats() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    client.send(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The route's heartbeat is 50 ms; the events come first, then keep-alive comments.
    while !String::from_utf8_lossy(&seen).contains(": keep-alive") {
        let n = tokio::time::timeout(DEADLINE, client.stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the stream stays open");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.contains("content-type: text/event-stream\r\n"),
        "{text}"
    );
    assert!(text.contains("cache-control: no-cache\r\n"));
    assert!(text.contains("id: 0\ndata: first\n\n"));
    assert!(text.contains("id: 1\ndata: second\ndata: line\n\n"));
}

#[tokio::test]
async fn websocket_upgrade_hands_over_the_socket_and_early_bytes() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    // The client's first bytes after the handshake travel in the same write as the request.
    client
        .send(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nearly",
        )
        .await;
    let response = client.response_to(true).await;
    assert_eq!(response.status, 101);
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(response.header("upgrade"), Some("websocket"));
    assert_eq!(client.read_bytes(5).await, b"early");
    client.send(b"later").await;
    assert_eq!(client.read_bytes(5).await, b"later");
}

#[tokio::test]
async fn a_bad_websocket_handshake_is_refused() {
    let server = start_default().await;
    let (response, _) = exchange(
        &server,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 426);
    assert_eq!(response.header("sec-websocket-version"), Some("13"));
}
