//! Every configurable limit, with its response.

use std::num::NonZeroUsize;
use std::time::Duration;

use weir_http::ServerConfig;

use crate::support::*;

#[tokio::test]
async fn head_larger_than_the_limit_gets_431() {
    let server = start(ServerConfig {
        max_head_bytes: NonZeroUsize::new(1024).unwrap(),
        ..ServerConfig::default()
    })
    .await;
    let raw = format!(
        "GET /hello HTTP/1.1\r\nHost: x\r\nCookie: {}\r\n\r\n",
        "c".repeat(2000)
    );
    expect_status_and_close(&server, raw.as_bytes(), 431).await;
    // A head that is still arriving is rejected as soon as it passes the limit.
    let raw = format!(
        "GET /hello HTTP/1.1\r\nHost: x\r\nCookie: {}",
        "c".repeat(2000)
    );
    expect_status_and_close(&server, raw.as_bytes(), 431).await;
}

#[tokio::test]
async fn too_many_headers_get_431() {
    let server = start(ServerConfig {
        max_headers: NonZeroUsize::new(8).unwrap(),
        ..ServerConfig::default()
    })
    .await;
    let mut raw = String::from("GET /hello HTTP/1.1\r\nHost: x\r\n");
    for i in 0..8 {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    expect_status_and_close(&server, raw.as_bytes(), 431).await;
}

#[tokio::test]
async fn long_targets_get_414() {
    let server = start(ServerConfig {
        max_target_bytes: NonZeroUsize::new(100).unwrap(),
        ..ServerConfig::default()
    })
    .await;
    let raw = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200));
    expect_status_and_close(&server, raw.as_bytes(), 414).await;
    let config = ServerConfig {
        max_target_bytes: NonZeroUsize::new(100).unwrap(),
        max_head_bytes: NonZeroUsize::new(1024).unwrap(),
        ..ServerConfig::default()
    };
    let server = start(config).await;
    let raw = format!("GET /{}", "a".repeat(5000));
    expect_status_and_close(&server, raw.as_bytes(), 414).await;
}

#[tokio::test]
async fn declared_body_over_the_limit_gets_413_before_it_is_sent() {
    let server = start(ServerConfig {
        max_body_bytes: 1000,
        ..ServerConfig::default()
    })
    .await;
    // Only the head is sent: the answer must not wait for the body.
    let raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n";
    expect_status_and_close(&server, raw, 413).await;
}

#[tokio::test]
async fn chunked_body_over_the_limit_gets_413() {
    let server = start(ServerConfig {
        max_body_bytes: 1000,
        ..ServerConfig::default()
    })
    .await;
    let chunk = format!("800\r\n{}\r\n", "x".repeat(0x800));
    let raw = format!("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n");
    expect_status_and_close(&server, raw.as_bytes(), 413).await;
}

#[tokio::test]
async fn connections_past_the_limit_wait_in_the_backlog() {
    let server = start(ServerConfig {
        max_connections: NonZeroUsize::new(1).unwrap(),
        ..ServerConfig::default()
    })
    .await;
    let mut first = Client::connect(&server).await;
    first.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(first.response().await.status, 200);

    // The second connection is completed by the kernel but not served while the first lives.
    let mut second = Client::connect(&server).await;
    second.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let waited = tokio::time::timeout(Duration::from_millis(300), second.response()).await;
    assert!(
        waited.is_err(),
        "the second connection must wait for a slot"
    );
    assert_eq!(server.metrics.open_connections(), 1);

    drop(first);
    let response = second.response().await;
    assert_eq!(response.status, 200);
}
