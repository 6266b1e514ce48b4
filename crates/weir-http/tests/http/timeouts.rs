//! Timeouts, tested with paused time: the runtime's clock jumps to the next timer whenever
//! every task is waiting, so a 10 s timeout takes no real time.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use weir_http::ServerConfig;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn slow_heads_get_408() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    client.send(b"GET /hello HTTP/1.1\r\nHo").await;
    // The server's header timer (10 s) fires while the client waits.
    let response = client.response().await;
    assert_eq!(response.status, 408);
    assert!(client.is_closed().await);
}

#[tokio::test(start_paused = true)]
async fn a_slowloris_that_keeps_trickling_still_gets_408() {
    let server = start(ServerConfig {
        header_read_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    })
    .await;
    let mut client = Client::connect(&server).await;
    client.send(b"GET /hello HTTP/1.1\r\n").await;
    // One byte every 2 s: each read succeeds, but the head as a whole takes too long.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        client.send(b"X").await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = client.stream.write_all(b"-Y: 1\r\n").await;
    let response = client.response().await;
    assert_eq!(response.status, 408);
}

#[tokio::test(start_paused = true)]
async fn idle_keep_alive_connections_are_closed() {
    let server = start(ServerConfig {
        idle_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    })
    .await;
    let mut client = Client::connect(&server).await;
    client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(client.response().await.status, 200);
    let start = tokio::time::Instant::now();
    // Idle close is silent (RFC 9112 section 9.8): no response, just the end of the stream.
    assert!(client.read_to_close().await.is_empty());
    assert!(start.elapsed() >= Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_silent_new_connection_is_closed_after_the_head_timeout() {
    let server = start(ServerConfig {
        header_read_timeout: Duration::from_secs(3),
        ..ServerConfig::default()
    })
    .await;
    let mut client = Client::connect(&server).await;
    let start = tokio::time::Instant::now();
    assert!(client.read_to_close().await.is_empty());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(60),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_gets_408() {
    let server = start(ServerConfig {
        body_read_timeout: Duration::from_secs(4),
        ..ServerConfig::default()
    })
    .await;
    let mut client = Client::connect(&server).await;
    client
        .send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 408);
    assert_eq!(response.header("connection"), Some("close"));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    // Real time here: the server must fill the socket buffers before its write stalls.
    let server = start(ServerConfig {
        write_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    let mut client = Client::connect(&server).await;
    client.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // Never read: the 64 MiB body cannot fit in the socket buffers.
    let closed = tokio::time::timeout(DEADLINE, async {
        while server.metrics.open_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closed the stalled connection");
    drop(client);
}
