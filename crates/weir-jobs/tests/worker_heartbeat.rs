//! A heartbeat that hangs must not stall the job it reports on: the worker runtime keeps
//! polling the handler (and watching its deadline) while the heartbeat waits on a server
//! that does not answer.
//!
//! The server here is a few lines over a real socket, because the behaviour under test is
//! what a real Weir server never does: it leases one job, then holds every heartbeat
//! unanswered.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use weir_jobs::client::Client;
use weir_jobs::worker::{JobContext, Registry, Worker, WorkerConfig};

/// Long enough for any step on a loaded machine; far shorter than the 10 s a heartbeat may
/// take before the client gives up, which is how long the old runtime stalled the handler.
const STEP_DEADLINE: Duration = Duration::from_secs(5);

/// What the fake server saw.
#[derive(Debug, PartialEq)]
enum Seen {
    Heartbeat,
    Complete(String),
    /// A request this test does not expect (a panic in the server task would be silent).
    Unexpected(String),
}

/// Reads one request (head and Content-Length body); `None` at end of stream.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<(String, String)> {
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let mut chunk = [0u8; 4096];
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).into_owned();
            let path = head.split_whitespace().nth(1)?.to_owned();
            buffer.drain(..end + 4 + length);
            return Some((path, body));
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

async fn answer(stream: &mut TcpStream, body: &str) {
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

/// Leases job 1 once (a lease of 300 ms, so a heartbeat every 100 ms), then no more; holds
/// every heartbeat unanswered; records completions (which come in batches).
async fn serve(listener: TcpListener, seen: mpsc::UnboundedSender<Seen>) {
    let leased = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let (seen, leased) = (seen.clone(), Arc::clone(&leased));
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            while let Some((path, body)) = read_request(&mut stream, &mut buffer).await {
                match path.as_str() {
                    "/v1/lease" if !leased.swap(true, std::sync::atomic::Ordering::SeqCst) => {
                        let job = r#"{"id": 1, "queue": "default", "kind": "wait", "payload": {},
                            "attempt": 1, "max_attempts": 3, "timeout_ms": 60000, "fencing_token": 7}"#;
                        answer(
                            &mut stream,
                            &format!(r#"{{"jobs": [{job}], "lease_ttl_ms": 300}}"#),
                        )
                        .await;
                    }
                    "/v1/lease" => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        answer(&mut stream, r#"{"jobs": [], "lease_ttl_ms": 300}"#).await;
                    }
                    "/v1/jobs/1/heartbeat" => {
                        let _ = seen.send(Seen::Heartbeat);
                        // Never answered: the connection stays open and silent.
                        std::future::pending::<()>().await;
                    }
                    "/v1/jobs/complete" => {
                        let _ = seen.send(Seen::Complete(body));
                        answer(&mut stream, r#"{"jobs": [{"id": 1, "ok": true}]}"#).await;
                    }
                    other => {
                        let _ = seen.send(Seen::Unexpected(other.to_owned()));
                        return;
                    }
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_heartbeat_does_not_stall_the_job() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (seen_sender, mut seen) = mpsc::unbounded_channel();
    let server = tokio::spawn(serve(listener, seen_sender));

    // The job finishes only when the test says so, after a heartbeat is in flight.
    let go = Arc::new(Notify::new());
    let mut registry = Registry::new();
    registry.register("wait", {
        let go = Arc::clone(&go);
        move |_ctx: JobContext| {
            let go = Arc::clone(&go);
            async move {
                go.notified().await;
                Ok(serde_json::value::RawValue::from_string(r#""done""#.into()).unwrap())
            }
        }
    });
    let client = Client::new(vec![format!("http://{address}")], None).unwrap();
    let config = WorkerConfig {
        name: "test".into(),
        queues: vec!["default".into()],
        concurrency: 1,
        prefetch: 0,
        prefetch_within: None,
        shutdown_deadline: Duration::from_secs(1),
        lease_wait: Duration::from_secs(1),
    };
    let stop = CancellationToken::new();
    let worker = tokio::spawn({
        let stop = stop.clone();
        async move { Worker::new(client, registry, config).run(stop).await }
    });

    let first = tokio::time::timeout(STEP_DEADLINE, seen.recv()).await;
    assert_eq!(
        first.expect("a heartbeat within the deadline"),
        Some(Seen::Heartbeat)
    );
    // The heartbeat hangs now. The handler must still be polled to see this.
    go.notify_one();
    let completed = tokio::time::timeout(STEP_DEADLINE, seen.recv())
        .await
        .expect("the job completes while its heartbeat hangs");
    let Some(Seen::Complete(body)) = completed else {
        panic!("expected a batch of completions, saw {completed:?}");
    };
    // Compared as JSON: the order of the fields is the serializer's business.
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({ "jobs": [{ "id": 1, "result": "done", "token": 7 }] })
    );

    stop.cancel();
    tokio::time::timeout(STEP_DEADLINE, worker)
        .await
        .expect("the worker stops")
        .unwrap();
    server.abort();
}
