//! Keep-alive, pipelining and connection handling.

use crate::support::*;

#[tokio::test]
async fn three_pipelined_requests_are_answered_in_order_in_one_write() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    // Warm up the connection so the write count below covers the batch only.
    client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(client.response().await.status, 200);
    let writes_before = server.metrics.socket_writes();
    client
        .send(
            b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond\
              GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
    let first = client.response().await;
    let second = client.response().await;
    let third = client.response().await;
    assert_eq!((first.status, &first.body[..]), (200, &b"hello"[..]));
    assert_eq!((second.status, &second.body[..]), (200, &b"second"[..]));
    assert_eq!(third.status, 404);
    assert_eq!(
        server.metrics.socket_writes() - writes_before,
        1,
        "one write for the batch"
    );
}

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    for _ in 0..5 {
        client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let response = client.response().await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), None);
        assert!(response.header("date").is_some_and(|d| d.ends_with(" GMT")));
    }
    let mut text = String::new();
    server.metrics.render_prometheus(&mut text);
    assert!(text.contains("weir_http_connections_total 1\n"), "{text}");
    assert!(
        text.contains("weir_http_responses_total{class=\"2xx\"} 5\n"),
        "{text}"
    );
}

#[tokio::test]
async fn connection_close_is_honoured_both_ways() {
    let server = start_default().await;
    let (response, mut client) = exchange(
        &server,
        b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.read_to_close().await.is_empty());
}

#[tokio::test]
async fn http10_keeps_alive_only_when_asked() {
    let server = start_default().await;
    let (response, mut client) = exchange(&server, b"GET /hello HTTP/1.0\r\n\r\n").await;
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.read_to_close().await.is_empty());

    let (response, mut client) = exchange(
        &server,
        b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    assert_eq!(response.header("connection"), Some("keep-alive"));
    client
        .send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    assert_eq!(client.response().await.status, 200);
}

#[tokio::test]
async fn head_sends_headers_without_a_body() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    client
        .send(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let head = client.response_to(true).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("5"));
    // If the HEAD response had carried a body, this would read "hello" as a status line.
    let get = client.response().await;
    assert_eq!((get.status, &get.body[..]), (200, &b"hello"[..]));
}

#[tokio::test]
async fn no_content_has_no_body_or_length() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    client
        .send(b"GET /no-content HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 204);
    assert_eq!(response.header("content-length"), None);
    assert_eq!(client.response().await.status, 200);
}

#[tokio::test]
async fn a_panicking_handler_gets_500_and_the_server_goes_on() {
    let server = start_default().await;
    let response =
        expect_status_and_close(&server, b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n", 500).await;
    assert_eq!(response.body, b"internal server error\n");
    let (response, _) = exchange(&server, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn a_handler_panicking_before_its_future_gets_500_after_the_answers_before_it() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    client
        .send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /panic-early HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert_eq!(
        client.response().await.status,
        200,
        "the earlier answer is sent"
    );
    let response = client.response().await;
    assert_eq!(response.status, 500);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.is_closed().await);
    let (response, _) = exchange(&server, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(response.status, 200, "the server goes on");
}

#[tokio::test]
async fn invalid_response_headers_never_reach_the_wire() {
    let server = start_default().await;
    let (response, _) = exchange(
        &server,
        b"GET /header-injection HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 500);
    assert!(!response.head.to_ascii_lowercase().contains("set-cookie"));
}

#[tokio::test]
async fn metrics_count_responses_by_class() {
    let server = start_default().await;
    let mut client = Client::connect(&server).await;
    client
        .send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    client.response().await;
    client.response().await;
    assert_eq!(server.metrics.responses_in_class(2), 1);
    assert_eq!(server.metrics.responses_in_class(4), 1);
    assert_eq!(server.metrics.open_connections(), 1);
}
