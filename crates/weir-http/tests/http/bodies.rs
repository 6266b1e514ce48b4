//! Request bodies: Content-Length, chunked with trailers, 100-continue, draining.

use tokio::io::AsyncWriteExt;
use weir_http::ServerConfig;

use crate::support::*;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn chunked_echo_of_ten_mib() {
    let body = pattern(10 * 1024 * 1024);
    let server = start(ServerConfig {
        max_body_bytes: 32 * 1024 * 1024,
        ..ServerConfig::default()
    })
    .await;
    let mut client = Client::connect(&server).await;
    let mut raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    // Chunks of varying sizes, including ones that straddle the server's reads.
    let mut offset = 0;
    let mut size = 1;
    while offset < body.len() {
        let end = (offset + size).min(body.len());
        raw.extend_from_slice(format!("{:x};ext=1\r\n", end - offset).as_bytes());
        raw.extend_from_slice(&body[offset..end]);
        raw.extend_from_slice(b"\r\n");
        offset = end;
        size = size * 3 % 100_003 + 1;
    }
    raw.extend_from_slice(b"0\r\nX-Checksum: 1\r\n\r\n");
    // The handler answers only after reading the whole body, so the client can send it all
    // before reading.
    client.send(&raw).await;
    let response = client.response().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), body.len());
    assert!(response.body == body, "the echoed body differs");
}

#[tokio::test]
async fn a_large_body_streams_through_the_handler_in_pieces() {
    let body = pattern(10 * 1024 * 1024);
    let server = start(ServerConfig {
        max_body_bytes: 32 * 1024 * 1024,
        ..ServerConfig::default()
    })
    .await;
    let mut client = Client::connect(&server).await;
    let head = format!(
        "POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    client.send(head.as_bytes()).await;
    client.send(&body).await;
    let response = client.response().await;
    let text = String::from_utf8(response.body).unwrap();
    let fields: Vec<u64> = text.split(' ').map(|f| f.parse().unwrap()).collect();
    let expected_sum = body
        .iter()
        .fold(0u64, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
    assert_eq!(fields[0], body.len() as u64);
    assert_eq!(fields[1], expected_sum);
    assert!(
        fields[2] <= 64 * 1024,
        "pieces are bounded by the read size, got {}",
        fields[2]
    );
}

#[tokio::test]
async fn chunked_trailers_reach_the_handler() {
    let server = start_default().await;
    let raw = b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
    let (response, _) = exchange(&server, raw).await;
    assert!(
        String::from_utf8(response.body).unwrap().ends_with(" 2"),
        "two trailers"
    );
}

#[tokio::test]
async fn expect_continue_is_answered_when_the_handler_reads() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    client
        .send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .await;
    let interim = client.response().await;
    assert_eq!(interim.status, 100);
    client.send(b"hello").await;
    let response = client.response().await;
    assert_eq!((response.status, &response.body[..]), (200, &b"hello"[..]));
    // The connection goes on.
    client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(client.response().await.status, 200);
}

#[tokio::test]
async fn expect_continue_is_not_answered_when_the_handler_does_not_read() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    client.send(b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").await;
    let response = client.response().await;
    assert_eq!(
        (response.status, &response.body[..]),
        (200, &b"ignored"[..])
    );
    // The client never sent the body, so the connection cannot be reused.
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.read_to_close().await.is_empty());
}

#[tokio::test]
async fn an_unread_small_body_is_drained_and_the_connection_kept() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    client
        .send(b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(client.response().await.status, 200);
    let second = client.response().await;
    assert_eq!((second.status, &second.body[..]), (200, &b"hello"[..]));
}

#[tokio::test]
async fn an_unread_large_body_closes_the_connection() {
    let server = start(ServerConfig {
        max_drain_bytes: 10,
        ..ServerConfig::default()
    })
    .await;
    let mut client = Client::connect(&server).await;
    client
        .send(b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
}

#[tokio::test]
async fn a_body_cut_short_is_a_bad_request() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    client
        .send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .await;
    client.stream.shutdown().await.unwrap();
    let response = client.response().await;
    assert_eq!(response.status, 400);
}
