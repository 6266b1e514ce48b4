//! The edge of the HTTP API against web pages the operator's browser visits: each test
//! sends what such a page can make a browser send, over a real socket, to a server with
//! the default (open, loopback) settings, and checks that nothing happens.

#![allow(missing_docs)]

mod support;

use support::{http, start, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::config::ServeConfig;

/// The status code of a raw answer.
fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// How many jobs the server holds (through the API, as a client of this machine).
async fn job_count(addr: &str) -> usize {
    let answer = http(
        addr,
        "GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let page: serde_json::Value = serde_json::from_str(body).unwrap();
    page["jobs"].as_array().unwrap().len()
}

fn post(path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A form or `fetch` with `mode: "no-cors"` from any site: a "simple" request, which the
/// browser sends without asking, with the page's origin and a text body.
#[tokio::test]
async fn a_cross_site_simple_request_changes_nothing() {
    let server = start(ServeConfig::defaults()).await;
    let job = r#"{"kind":"echo","payload":{}}"#;
    let forged = http(
        &server.http,
        &post(
            "/v1/jobs",
            "Host: 127.0.0.1:7070\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\n",
            job,
        ),
    )
    .await;
    assert_eq!(status(&forged), 403, "{forged}");
    assert!(
        forged.contains("http.cors_origins"),
        "names the setting: {forged}"
    );
    let published = http(
        &server.http,
        &post(
            "/v1/topics/news",
            "Host: 127.0.0.1:7070\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\n",
            "forged",
        ),
    )
    .await;
    assert_eq!(status(&published), 403, "{published}");
    // Without an Origin (not a browser), a body that says it is not JSON is refused too.
    let text = http(
        &server.http,
        &post(
            "/v1/jobs",
            "Host: 127.0.0.1\r\nContent-Type: text/plain\r\n",
            job,
        ),
    )
    .await;
    assert_eq!(status(&text), 415, "{text}");
    assert_eq!(job_count(&server.http).await, 0, "no job was created");
    // The same request from Weir's own page, or with JSON from a client, goes through.
    let own = http(
        &server.http,
        &post(
            "/v1/jobs",
            "Host: 127.0.0.1:7070\r\nOrigin: http://127.0.0.1:7070\r\nContent-Type: application/json\r\n",
            job,
        ),
    )
    .await;
    assert_eq!(status(&own), 201, "{own}");
    assert_eq!(job_count(&server.http).await, 1);
}

/// DNS rebinding: a page at `rebind.attacker.example` whose name now resolves to 127.0.0.1
/// reads Weir's answers as its own origin's, unless Weir refuses names it does not serve.
#[tokio::test]
async fn a_rebound_host_name_is_not_served() {
    let server = start(ServeConfig::defaults()).await;
    let answer = http(
        &server.http,
        "GET /v1/topics HTTP/1.1\r\nHost: rebind.attacker.example:7070\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 421, "{answer}");
    assert!(answer.contains("http.allowed_hosts"), "{answer}");
    for host in ["127.0.0.1:7070", "localhost:7070", "[::1]:7070"] {
        let answer = http(
            &server.http,
            &format!("GET /v1/topics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status(&answer), 200, "{host}: {answer}");
    }
    // The operator names the hosts it is reached by.
    let mut config = ServeConfig::defaults();
    config.edge.allowed_hosts = vec!["weir.internal".into()];
    let named = start(config).await;
    let answer = http(
        &named.http,
        "GET /v1/topics HTTP/1.1\r\nHost: weir.internal\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
}

async fn upgrade(addr: &str, origin: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 1024];
    let read = tokio::time::timeout(DEADLINE, stream.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&head[..read]).into_owned()
}

/// Browsers do not apply the same-origin policy to WebSockets: any page could open one to
/// Weir and publish, unless the upgrade checks where the page is from.
#[tokio::test]
async fn a_websocket_from_another_site_is_refused() {
    let server = start(ServeConfig::defaults()).await;
    let foreign = upgrade(&server.http, "http://evil.example").await;
    assert_eq!(status(&foreign), 403, "{foreign}");
    let own = upgrade(&server.http, &format!("http://{}", server.http)).await;
    assert_eq!(status(&own), 101, "{own}");
}

/// A browser app on another origin, allowed by the operator, can use the API: preflights
/// are answered, answers carry `Access-Control-Allow-Origin`; others get neither.
#[tokio::test]
async fn cors_opens_exactly_the_listed_origins() {
    let mut config = ServeConfig::defaults();
    config.edge.cors_origins = vec!["https://app.example.com".into()];
    let server = start(config).await;
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n"
        )
    };
    let allowed = http(&server.http, &preflight("https://app.example.com")).await;
    assert_eq!(status(&allowed), 204, "{allowed}");
    let lower = allowed.to_ascii_lowercase();
    assert!(
        lower.contains("access-control-allow-origin: https://app.example.com"),
        "{allowed}"
    );
    assert!(
        lower.contains("access-control-allow-methods: "),
        "{allowed}"
    );
    assert!(
        lower.contains("access-control-allow-headers: authorization, content-type"),
        "{allowed}"
    );
    assert!(lower.contains("vary: origin"), "{allowed}");
    assert_eq!(
        lower.matches("access-control-allow-origin").count(),
        1,
        "one Allow-Origin, or browsers refuse the answer: {allowed}"
    );
    assert!(
        !lower.contains("access-control-allow-credentials"),
        "{allowed}"
    );
    let other = http(&server.http, &preflight("http://evil.example")).await;
    assert!(
        !other
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{other}"
    );
    let read = http(
        &server.http,
        "GET /v1/topics HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://app.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&read), 200, "{read}");
    assert!(
        read.to_ascii_lowercase()
            .contains("access-control-allow-origin: https://app.example.com"),
        "{read}"
    );
    let write = http(
        &server.http,
        &post(
            "/v1/jobs",
            "Host: 127.0.0.1\r\nOrigin: https://app.example.com\r\nContent-Type: application/json\r\n",
            r#"{"kind":"echo"}"#,
        ),
    )
    .await;
    assert_eq!(status(&write), 201, "{write}");
}

/// `Last-Event-ID: 18446744073709551615` (the largest offset) once wrapped around to 0 and
/// replayed the topic from the start.
#[tokio::test]
async fn the_largest_last_event_id_does_not_replay_from_zero() {
    let server = start(ServeConfig::defaults()).await;
    let answer = http(
        &server.http,
        "GET /v1/topics/news/events HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: 18446744073709551615\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 400, "{answer}");
}

/// A payload nested deeper than serde_json parses into values cannot be read by a worker
/// (and costs the server a deep scan on every read): refused, naming the limit.
#[tokio::test]
async fn a_payload_nested_too_deep_is_refused() {
    let server = start(ServeConfig::defaults()).await;
    let depth = 10_000;
    let job = format!(
        r#"{{"kind":"echo","payload":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let answer = http(
        &server.http,
        &post(
            "/v1/jobs",
            "Host: 127.0.0.1\r\nContent-Type: application/json\r\n",
            &job,
        ),
    )
    .await;
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(answer.contains("nested deeper than 128 levels"), "{answer}");
    let fine = format!(
        r#"{{"kind":"echo","payload":{}{}}}"#,
        "[".repeat(128),
        "]".repeat(128)
    );
    let answer = http(
        &server.http,
        &post(
            "/v1/jobs",
            "Host: 127.0.0.1\r\nContent-Type: application/json\r\n",
            &fine,
        ),
    )
    .await;
    assert_eq!(status(&answer), 201, "{answer}");
}

/// Queue names come from producers; each one was a time series in `/metrics`.
#[tokio::test]
async fn metrics_name_at_most_a_hundred_queues() {
    let server = start(ServeConfig::defaults()).await;
    let jobs: Vec<String> = (0..150)
        .map(|i| format!(r#"{{"kind":"echo","queue":"q{i:03}"}}"#))
        .collect();
    let batch = format!(r#"{{"jobs":[{}]}}"#, jobs.join(","));
    let answer = http(
        &server.http,
        &post(
            "/v1/jobs/batch",
            "Host: 127.0.0.1\r\nContent-Type: application/json\r\n",
            &batch,
        ),
    )
    .await;
    assert_eq!(status(&answer), 201, "{answer}");
    let metrics = http(
        &server.http,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    let queues: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("weir_jobs{"))
        .filter_map(|line| line.split("queue=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(queues.len(), 101, "100 queues and the rest: {queues:?}");
    assert!(queues.contains("(other)"), "{queues:?}");
    let other: u64 = metrics
        .lines()
        .find(|line| line.starts_with("weir_jobs{queue=\"(other)\""))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert_eq!(other, 50, "the other 50 jobs are counted, not dropped");
}
