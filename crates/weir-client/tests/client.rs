//! weir-client against a real local HTTP server over loopback sockets (so with every
//! address permitted: `tests/egress.rs` tests the default).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use weir_client::{Client, Egress, Error, Quota, RequestOptions, RetryPolicy};

/// What the server answers to the n-th request (0-based): status and extra header lines.
type Script = dyn Fn(usize) -> (u16, &'static str) + Send + Sync;

/// A keep-alive HTTP/1.1 server that records when each request arrived.
struct Server {
    url: String,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

async fn serve(script: Arc<Script>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let recorded = Arc::clone(&arrivals);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let (script, recorded, count) = (
                Arc::clone(&script),
                Arc::clone(&recorded),
                Arc::clone(&count),
            );
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
                    let body_length: usize = head
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .map_or(0, |n| n.trim().parse().unwrap());
                    while buffer.len() < end + 4 + body_length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buffer.drain(..end + 4 + body_length);
                    recorded.lock().unwrap().push(Instant::now());
                    let (status, headers) = script(count.fetch_add(1, Ordering::SeqCst));
                    let response =
                        format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n{headers}\r\nok");
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Server { url, arrivals }
}

impl Server {
    fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }
}

fn get(client: &Client, url: &str) -> reqwest::Request {
    client.http().get(url).build().unwrap()
}

/// The accuracy test: a quota of R per second for 10 s, measured at the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_the_server_sees_is_within_one_percent_of_the_quota() {
    const RATE: u32 = 200;
    let server = serve(Arc::new(|_| (200, ""))).await;
    let client = Client::builder()
        .egress(Egress::any())
        .rate(Quota::per_second(RATE))
        .build()
        .unwrap();
    let stop = Instant::now() + Duration::from_secs(10);
    let mut senders = Vec::new();
    // More senders than the rate needs, so the limiter, not the senders, sets the pace.
    for _ in 0..16 {
        let (client, url) = (client.clone(), server.url.clone());
        senders.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let response = client
                    .execute(get(&client, &url), RequestOptions::default())
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let arrivals = server.arrivals();
    let span = (*arrivals.last().unwrap() - arrivals[0]).as_secs_f64();
    let observed = (arrivals.len() - 1) as f64 / span;
    let error = (observed - f64::from(RATE)).abs() / f64::from(RATE);
    assert!(
        error <= 0.01,
        "observed {observed:.2}/s over {span:.2} s against {RATE}/s ({:.2}% off)",
        error * 100.0
    );
}

#[tokio::test]
async fn a_503_with_retry_after_is_retried_after_the_wait_and_pauses_the_host() {
    let server = serve(Arc::new(|n| {
        if n == 0 {
            (503, "retry-after: 1\r\n")
        } else {
            (200, "")
        }
    }))
    .await;
    let client = Client::builder().egress(Egress::any()).build().unwrap();
    let response = client
        .execute(get(&client, &server.url), RequestOptions::default())
        .await
        .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (200, 2));
    let arrivals = server.arrivals();
    assert!(
        arrivals[1] - arrivals[0] >= Duration::from_secs(1),
        "{:?}",
        arrivals[1] - arrivals[0]
    );
}

#[tokio::test]
async fn a_retry_after_past_the_cap_returns_the_response() {
    let server = serve(Arc::new(|_| (429, "retry-after: 3600\r\n"))).await;
    let client = Client::builder().egress(Egress::any()).build().unwrap();
    let response = client
        .execute(get(&client, &server.url), RequestOptions::default())
        .await
        .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (429, 1));
}

#[tokio::test]
async fn server_errors_are_retried_up_to_the_limit_with_backoff() {
    let server = serve(Arc::new(|_| (500, ""))).await;
    let policy = RetryPolicy {
        max_retries: 2,
        base: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    let client = Client::builder()
        .egress(Egress::any())
        .retry(policy)
        .build()
        .unwrap();
    let response = client
        .execute(get(&client, &server.url), RequestOptions::default())
        .await
        .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (500, 3));
    assert_eq!(server.arrivals().len(), 3);
}

#[tokio::test]
async fn client_errors_other_than_408_and_429_are_not_retried() {
    let server = serve(Arc::new(|_| (404, ""))).await;
    let client = Client::builder().egress(Egress::any()).build().unwrap();
    let response = client
        .execute(get(&client, &server.url), RequestOptions::default())
        .await
        .unwrap();
    assert_eq!((response.status().as_u16(), response.attempts()), (404, 1));
}

#[tokio::test]
async fn a_post_is_retried_only_when_the_caller_says_so() {
    let server = serve(Arc::new(|_| (503, "retry-after: 0\r\n"))).await;
    let client = Client::builder().egress(Egress::any()).build().unwrap();
    let post = || client.http().post(&server.url).body("x").build().unwrap();
    let once = client
        .execute(post(), RequestOptions::default())
        .await
        .unwrap();
    assert_eq!(once.attempts(), 1);
    let options = RequestOptions {
        idempotent: Some(true),
        ..RequestOptions::default()
    };
    let retried = client.execute(post(), options).await.unwrap();
    assert_eq!(retried.attempts(), 4);
}

#[tokio::test]
async fn the_retry_budget_stops_retries_once_spent() {
    let server = serve(Arc::new(|_| (503, "retry-after: 0\r\n"))).await;
    // No share of requests, a reserve of 2 retries: the first request uses both.
    let client = Client::builder()
        .egress(Egress::any())
        .retry_budget(0.0, 2)
        .build()
        .unwrap();
    let first = client
        .execute(get(&client, &server.url), RequestOptions::default())
        .await
        .unwrap();
    assert_eq!(first.attempts(), 3);
    let second = client
        .execute(get(&client, &server.url), RequestOptions::default())
        .await
        .unwrap();
    assert_eq!(second.attempts(), 1);
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", unused.local_addr().unwrap());
    drop(unused);
    let policy = RetryPolicy {
        max_retries: 1,
        base: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    let client = Client::builder()
        .egress(Egress::any())
        .retry(policy)
        .build()
        .unwrap();
    match client
        .execute(get(&client, &url), RequestOptions::default())
        .await
    {
        Err(Error::Transport { attempts, source }) => {
            assert_eq!(attempts, 2);
            assert!(source.is_connect(), "{source}");
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_deadline_covers_the_rate_limit_wait() {
    let server = serve(Arc::new(|_| (200, ""))).await;
    let client = Client::builder()
        .egress(Egress::any())
        .rate(Quota::every(Duration::from_secs(60)))
        .build()
        .unwrap();
    client
        .execute(get(&client, &server.url), RequestOptions::default())
        .await
        .unwrap();
    let options = RequestOptions {
        deadline: Some(Instant::now() + Duration::from_millis(100)),
        ..RequestOptions::default()
    };
    let started = Instant::now();
    let result = client.execute(get(&client, &server.url), options).await;
    assert!(
        matches!(result, Err(Error::Deadline { attempts: 1 })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // The abandoned request handed its slot back: the next one waits one interval, not two.
    let next = client
        .rate_limiter()
        .reserve(&Client::key_of(&server.url.parse().unwrap()).unwrap());
    assert!(next.at() <= Instant::now() + Duration::from_secs(60));
}

#[tokio::test]
async fn dropping_a_request_releases_its_concurrency_permits() {
    // A server that never answers holds the only permit until the request is dropped.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/", silent.local_addr().unwrap());
    let server = serve(Arc::new(|_| (200, ""))).await;
    let client = Client::builder()
        .egress(Egress::any())
        .global_concurrency(1)
        .build()
        .unwrap();
    let stuck = tokio::time::timeout(
        Duration::from_millis(200),
        client.execute(get(&client, &silent_url), RequestOptions::default()),
    )
    .await;
    assert!(stuck.is_err());
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        client.execute(get(&client, &server.url), RequestOptions::default()),
    )
    .await;
    assert_eq!(answered.unwrap().unwrap().status(), 200);
    drop(silent);
}

#[tokio::test]
async fn the_per_attempt_timeout_ends_a_silent_server_attempt() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let client = Client::builder()
        .egress(Egress::any())
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let options = RequestOptions {
        timeout: Some(Duration::from_millis(100)),
        ..RequestOptions::default()
    };
    match client.execute(get(&client, &url), options).await {
        Err(Error::Transport {
            source,
            attempts: 1,
        }) => assert!(source.is_timeout(), "{source}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}
