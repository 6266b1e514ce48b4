//! Graceful shutdown: stop accepting, close idle connections, drain, then force.

use std::time::Duration;

use weir_http::ServerConfig;

use crate::support::*;

#[tokio::test]
async fn in_flight_requests_finish_and_idle_connections_close_at_once() {
    let server = start_default().await;
    let mut idle = Client::connect(&server).await;
    idle.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(idle.response().await.status, 200);

    let mut busy = Client::connect(&server).await;
    busy.send(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // Wait until the request is inside its handler.
    while server.metrics.open_connections() < 2 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    server.shutdown.cancel();
    // The idle connection closes without waiting for the busy one.
    assert!(idle.read_to_close().await.is_empty());
    // New connections are refused once the listener is gone.
    tokio::time::timeout(DEADLINE, async {
        while tokio::net::TcpStream::connect(server.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the listener closes");

    server.release.notify_one();
    let response = busy.response().await;
    assert_eq!(
        (response.status, &response.body[..]),
        (200, &b"released"[..])
    );
    assert_eq!(response.header("connection"), Some("close"));
    tokio::time::timeout(DEADLINE, server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn requests_past_the_drain_deadline_are_cut_off() {
    let server = start(ServerConfig {
        drain_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    })
    .await;
    let mut busy = Client::connect(&server).await;
    busy.send(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n").await;
    while server.metrics.open_connections() < 1 {
        tokio::task::yield_now().await;
    }
    let started = tokio::time::Instant::now();
    server.shutdown.cancel();
    // Never released: the server gives up at the drain deadline and returns.
    tokio::time::timeout(Duration::from_secs(60), server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert!(
        busy.read_to_close().await.is_empty(),
        "cut off without a response"
    );
}

#[tokio::test]
async fn streaming_responses_end_cleanly_at_shutdown() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    client.send(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // Read the head and the first event, then shut down: the chunked body must end with
    // its last chunk, which `response()` requires.
    let reader = tokio::spawn(async move { client.response().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown.cancel();
    let response = tokio::time::timeout(DEADLINE, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(String::from_utf8_lossy(&response.body).starts_with("id: 0\ndata: first\n\n"));
    tokio::time::timeout(DEADLINE, server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
