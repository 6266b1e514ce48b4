//! The framing rules of RFC 9112, each answered with its status and, where the position of
//! the next request is unknown, a close.

use crate::support::*;

#[tokio::test]
async fn content_length_with_transfer_encoding_is_rejected() {
    let server = start_default().await;
    let raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    expect_status_and_close(&server, raw, 400).await;
}

#[tokio::test]
async fn transfer_encoding_must_end_in_chunked() {
    let server = start_default().await;
    let raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc";
    expect_status_and_close(&server, raw, 400).await;
    let raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n";
    expect_status_and_close(&server, raw, 400).await;
    let raw =
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    expect_status_and_close(&server, raw, 501).await;
}

#[tokio::test]
async fn transfer_encoding_on_http10_is_rejected() {
    let server = start_default().await;
    let raw = b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    expect_status_and_close(&server, raw, 400).await;
}

#[tokio::test]
async fn bad_content_lengths_are_rejected() {
    let server = start_default().await;
    for value in [
        "5\r\nContent-Length: 6",
        "5, 6",
        "+5",
        "-5",
        "five",
        "0x5",
        "5 5",
        "",
    ] {
        let raw =
            format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\nhello!");
        expect_status_and_close(&server, raw.as_bytes(), 400).await;
    }
}

#[tokio::test]
async fn repeated_identical_content_lengths_are_accepted() {
    let server = start_default().await;
    let raw =
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
    let (response, _) = exchange(&server, raw).await;
    assert_eq!((response.status, &response.body[..]), (200, &b"hello"[..]));
}

#[tokio::test]
async fn malformed_header_lines_are_rejected() {
    let server = start_default().await;
    let cases: [&[u8]; 6] = [
        b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Ctl: a\x01b\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: x\r\nBad{Name}: v\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Bare-CR: a\rb\r\n\r\n",
    ];
    for raw in cases {
        expect_status_and_close(&server, raw, 400).await;
    }
}

#[tokio::test]
async fn host_is_required_once_on_http11() {
    let server = start_default().await;
    expect_status_and_close(&server, b"GET /hello HTTP/1.1\r\n\r\n", 400).await;
    expect_status_and_close(
        &server,
        b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
    )
    .await;
    // HTTP/1.0 has no Host requirement.
    let (response, _) = exchange(&server, b"GET /hello HTTP/1.0\r\n\r\n").await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn malformed_chunks_are_rejected() {
    let server = start_default().await;
    let head = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "10000000000000000\r\nx\r\n0\r\n\r\n", // overflows 64 bits
        "\r\nabc\r\n0\r\n\r\n",                // no hex digits
        "zz\r\nabc\r\n0\r\n\r\n",              // no hex digits
        "3\nabc\r\n0\r\n\r\n",                 // bare LF
        "3\r\nabcde\r\n0\r\n\r\n",             // data longer than its size
    ] {
        let raw = format!("{head}{body}");
        expect_status_and_close(&server, raw.as_bytes(), 400).await;
    }
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let server = start_default().await;
    let (response, mut client) =
        exchange(&server, b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(response.status, 404);
    client
        .send(b"DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let response = client.response().await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn unsupported_version_and_expectation() {
    let server = start_default().await;
    expect_status_and_close(&server, b"GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", 505).await;
    expect_status_and_close(
        &server,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: coffee\r\nContent-Length: 1\r\n\r\nx",
        417,
    )
    .await;
}
