//! The jobs API and worker protocol over real sockets, against an in-process server on the
//! embedded SQLite store; and the Rust worker runtime against it.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::{job_ids, read_until, start, DEADLINE};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use weir::config::ServeConfig;
use weir_jobs::client::{Client, ClientError};
use weir_jobs::completions::Completions;
use weir_jobs::protocol::Completion;

/// The kinds this file's hand-made leases run: every kind its jobs have.
const KINDS: [&str; 6] = ["send", "k", "echo", "sleep", "held", "boom"];

fn kinds() -> Vec<String> {
    KINDS.map(String::from).to_vec()
}
use weir_jobs::worker::{JobFailure, Registry, Worker, WorkerConfig};

const CALL: Duration = Duration::from_secs(10);

fn client(http: &str) -> Client {
    Client::new(vec![format!("http://{http}")], None).unwrap()
}

async fn post(client: &Client, path: &str, body: Value) -> Result<Value, ClientError> {
    client.call(path, Some(body.to_string()), CALL).await
}

async fn get(client: &Client, path: &str) -> Value {
    client.call(path, None, CALL).await.unwrap()
}

fn refused(outcome: Result<Value, ClientError>) -> (u16, String) {
    match outcome {
        Err(ClientError::Refused {
            status, message, ..
        }) => (status, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Polls the job until `done` holds for it (within the deadline).
async fn wait_for(client: &Client, id: i64, done: impl Fn(&Value) -> bool) -> Value {
    let started = tokio::time::Instant::now();
    loop {
        let job = get(client, &format!("/v1/jobs/{id}")).await;
        if done(&job) {
            return job;
        }
        assert!(started.elapsed() < DEADLINE, "job never got there: {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_read_list_cancel_and_retry() {
    let server = start(ServeConfig::defaults()).await;
    let api = client(&server.http);

    let job = post(
        &api,
        "/v1/jobs",
        json!({"queue": "mail", "kind": "send", "payload": {"to": "a@b"}, "priority": 2}),
    )
    .await
    .unwrap();
    let id = job["id"].as_i64().unwrap();
    assert_eq!(job["state"], "available");
    assert_eq!(job["payload"], json!({"to": "a@b"}));
    assert_eq!(job["existing"], false);
    let read = get(&api, &format!("/v1/jobs/{id}")).await;
    assert_eq!(read["queue"], "mail");
    assert_eq!(read["priority"], 2);

    let later = post(
        &api,
        "/v1/jobs",
        json!({"queue": "mail", "kind": "send", "delay_ms": 60_000}),
    )
    .await
    .unwrap();
    assert_eq!(later["state"], "scheduled");

    let batch = post(
        &api,
        "/v1/jobs/batch",
        json!({"jobs": [{"kind": "a"}, {"kind": "b", "unique_key": "only-one"}, {"kind": "b", "unique_key": "only-one"}]}),
    )
    .await
    .unwrap();
    let jobs = batch["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    assert_eq!(
        jobs[1]["id"], jobs[2]["id"],
        "the unique key returned the same job"
    );
    assert_eq!(jobs[2]["existing"], true);

    let page = get(&api, "/v1/jobs?queue=mail&limit=1").await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["jobs"][0]["id"], later["id"], "newest first");
    let next = page["next_before"].as_i64().unwrap();
    let rest = get(&api, &format!("/v1/jobs?queue=mail&before={next}")).await;
    assert_eq!(rest["jobs"][0]["id"], id);
    let scheduled = get(&api, "/v1/jobs?state=scheduled").await;
    assert_eq!(scheduled["jobs"].as_array().unwrap().len(), 1);
    // A scheduled job whose time has come reads as available, though not yet leased.
    let soon = post(
        &api,
        "/v1/jobs",
        json!({"queue": "later", "kind": "send", "delay_ms": 50}),
    )
    .await
    .unwrap();
    assert_eq!(soon["state"], "scheduled");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let due = get(&api, &format!("/v1/jobs/{}", soon["id"])).await;
    assert_eq!(due["state"], "available", "{due}");
    let listed = get(&api, "/v1/jobs?queue=later&state=available").await;
    assert_eq!(listed["jobs"][0]["state"], "available", "{listed}");
    assert_eq!(listed["next_before"], Value::Null);
    let still_scheduled = get(&api, "/v1/jobs?queue=later&state=scheduled").await;
    assert_eq!(still_scheduled["jobs"], json!([]), "filtered as shown");

    let cancelled = post(&api, &format!("/v1/jobs/{id}/cancel"), json!({}))
        .await
        .unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    let leased = post(
        &api,
        "/v1/lease",
        json!({"worker": "w", "kinds": KINDS, "queues": ["mail"], "max": 10}),
    )
    .await
    .unwrap();
    assert!(
        leased["jobs"].as_array().unwrap().is_empty(),
        "cancelled and scheduled jobs do not run"
    );
    let retried = post(&api, &format!("/v1/jobs/{id}/retry"), json!({}))
        .await
        .unwrap();
    assert_eq!(retried["state"], "available");

    let queues = get(&api, "/v1/queues").await;
    assert_eq!(queues["queues"]["mail"]["available"], 1);
    assert_eq!(queues["queues"]["mail"]["scheduled"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field() {
    let mut config = ServeConfig::defaults();
    config.jobs.max_payload = 100;
    config
        .jobs
        .queue_kinds
        .insert("email".into(), ["send_welcome".to_string()].into());
    let server = start(config).await;
    let api = client(&server.http);

    let big = "x".repeat(200);
    let (status, message) = refused(
        post(
            &api,
            "/v1/jobs",
            json!({"kind": "k", "payload": {"big": big}}),
        )
        .await,
    );
    assert_eq!(status, 413);
    assert!(message.starts_with("payload:"), "{message}");

    let raw = api
        .call::<Value>("/v1/jobs", Some("{\"kind\": ".into()), CALL)
        .await;
    let (status, message) = refused(raw);
    assert_eq!(status, 400);
    assert!(message.contains("invalid JSON"), "{message}");

    let (status, message) =
        refused(post(&api, "/v1/jobs", json!({"kind": "k", "prority": 1})).await);
    assert_eq!(status, 400);
    assert!(message.contains("unknown field `prority`"), "{message}");

    let (status, message) =
        refused(post(&api, "/v1/jobs", json!({"queue": "no spaces", "kind": "k"})).await);
    assert_eq!(status, 400);
    assert!(message.starts_with("queue:"), "{message}");

    let (status, message) = refused(
        post(
            &api,
            "/v1/jobs/batch",
            json!({"jobs": [{"kind": "ok"}, {"kind": "k", "max_attempts": 0}]}),
        )
        .await,
    );
    assert_eq!(status, 400);
    assert!(message.starts_with("jobs[1].max_attempts:"), "{message}");
    let nothing = get(&api, "/v1/jobs").await;
    assert!(
        nothing["jobs"].as_array().unwrap().is_empty(),
        "a refused batch enqueues nothing"
    );

    let (status, _) = refused(api.call::<Value>("/v1/jobs/424242", None, CALL).await);
    assert_eq!(status, 404);
    let (status, message) = refused(api.call::<Value>("/v1/jobs/abc", None, CALL).await);
    assert_eq!(status, 404);
    assert!(message.starts_with("id:"), "{message}");
    let (status, message) = refused(
        api.call::<Value>("/v1/jobs?state=sleeping", None, CALL)
            .await,
    );
    assert_eq!(status, 400);
    assert!(message.starts_with("state:"), "{message}");
    let (status, message) = refused(
        post(
            &api,
            "/v1/jobs",
            json!({"queue": "email", "kind": "send_welcom"}),
        )
        .await,
    );
    assert_eq!(status, 400);
    assert!(
        message.starts_with("kind: queue `email` does not take kind `send_welcom`"),
        "{message}"
    );
    post(
        &api,
        "/v1/jobs",
        json!({"queue": "email", "kind": "send_welcome"}),
    )
    .await
    .unwrap();
    let (status, message) = refused(
        post(
            &api,
            "/v1/lease",
            json!({"worker": "w", "kinds": KINDS, "queues": ["no spaces"]}),
        )
        .await,
    );
    assert_eq!(status, 400);
    assert!(message.starts_with("queues[0]:"), "{message}");
    let (status, message) = refused(
        post(
            &api,
            "/v1/lease",
            json!({"worker": "w", "kinds": KINDS, "max": 0}),
        )
        .await,
    );
    assert_eq!(status, 400);
    assert!(message.starts_with("max:"), "{message}");
    let (status, message) = refused(post(&api, "/v1/lease", json!({"worker": "w"})).await);
    assert_eq!(status, 400, "a lease names the kinds its worker runs");
    assert!(message.contains("kinds"), "{message}");
    let many: Vec<String> = (0..257).map(|n| format!("k{n}")).collect();
    let (status, message) =
        refused(post(&api, "/v1/lease", json!({"worker": "w", "kinds": many})).await);
    assert_eq!(status, 400, "queues times kinds is bounded");
    assert!(message.contains("at most 256"), "{message}");

    // A worker that runs `echo` does not take the `upper` job ahead of it (the Python
    // example's kind): it stays available, no attempt used, for a worker that runs it.
    let upper = post(&api, "/v1/jobs", json!({"kind": "upper", "priority": -1}))
        .await
        .unwrap();
    let echo = post(&api, "/v1/jobs", json!({"kind": "echo"}))
        .await
        .unwrap();
    let leased = post(
        &api,
        "/v1/lease",
        json!({"worker": "rust", "kinds": ["echo", "sleep"], "max": 10}),
    )
    .await
    .unwrap();
    let ids: Vec<&Value> = leased["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| &job["id"])
        .collect();
    assert_eq!(ids, [&echo["id"]]);
    let untouched = get(&api, &format!("/v1/jobs/{}", upper["id"])).await;
    assert_eq!(untouched["state"], "available");
    assert_eq!(untouched["attempt"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_protocol_fences_stale_leases_and_delivers_cancels() {
    let mut config = ServeConfig::defaults();
    config.jobs.lease_ttl = Duration::from_secs(1);
    let server = start(config).await;
    let api = client(&server.http);

    // A long-poll lease is answered when a job arrives during its wait.
    let waiting = {
        let api = client(&server.http);
        tokio::spawn(async move {
            post(
                &api,
                "/v1/lease",
                json!({"worker": "w1", "kinds": KINDS, "wait_ms": 15_000}),
            )
            .await
            .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = post(&api, "/v1/jobs", json!({"kind": "k"})).await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let leased = waiting.await.unwrap();
    assert_eq!(leased["jobs"][0]["id"], id);
    assert_eq!(leased["lease_ttl_ms"], 1000);
    let first_token = leased["jobs"][0]["fencing_token"].as_i64().unwrap();

    let beat = post(
        &api,
        &format!("/v1/jobs/{id}/heartbeat"),
        json!({"token": first_token, "progress": {"percent": 30, "message": "a third"}}),
    )
    .await
    .unwrap();
    assert_eq!(beat["cancel"], false);
    let running = get(&api, &format!("/v1/jobs/{id}")).await;
    assert_eq!(running["progress"]["message"], "a third");
    let (status, message) = refused(
        post(
            &api,
            &format!("/v1/jobs/{id}/heartbeat"),
            json!({"token": first_token, "progress": {"percent": 130}}),
        )
        .await,
    );
    assert_eq!(status, 400);
    assert!(message.starts_with("progress.percent:"), "{message}");

    // The worker falls silent: the lease expires and the job is handed on.
    let rescued = wait_for(&api, id, |job| job["state"] == "available").await;
    assert!(rescued["errors"][0]["error"]
        .as_str()
        .unwrap()
        .contains("lease expired"));
    let second = post(&api, "/v1/lease", json!({"worker": "w2", "kinds": KINDS}))
        .await
        .unwrap();
    let second_token = second["jobs"][0]["fencing_token"].as_i64().unwrap();
    assert!(second_token > first_token);
    match post(
        &api,
        &format!("/v1/jobs/{id}/complete"),
        json!({"token": first_token, "result": 1}),
    )
    .await
    {
        Err(ClientError::Refused {
            status: 409,
            lease_lost: true,
            ..
        }) => {}
        other => panic!("a stale token must be refused: {other:?}"),
    }

    // A cancel reaches the worker in its next heartbeat reply; its failure ends the job.
    post(&api, &format!("/v1/jobs/{id}/cancel"), json!({}))
        .await
        .unwrap();
    let beat = post(
        &api,
        &format!("/v1/jobs/{id}/heartbeat"),
        json!({"token": second_token}),
    )
    .await
    .unwrap();
    assert_eq!(beat["cancel"], true);
    let ended = post(
        &api,
        &format!("/v1/jobs/{id}/fail"),
        json!({"token": second_token, "error": "stopped"}),
    )
    .await
    .unwrap();
    assert_eq!(ended["state"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_are_published_on_the_job_and_queue_topics() {
    let server = start(ServeConfig::defaults()).await;
    let api = client(&server.http);
    let mut events = TcpStream::connect(&server.http).await.unwrap();
    events
        .write_all(b"GET /v1/topics/$queues.events/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut events, "\r\n\r\n").await;

    let id = post(&api, "/v1/jobs", json!({"queue": "events", "kind": "k"}))
        .await
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let leased = post(
        &api,
        "/v1/lease",
        json!({"worker": "w", "kinds": KINDS, "queues": ["events"]}),
    )
    .await
    .unwrap();
    let token = leased["jobs"][0]["fencing_token"].as_i64().unwrap();
    post(
        &api,
        &format!("/v1/jobs/{id}/heartbeat"),
        json!({"token": token, "progress": {"percent": 50}}),
    )
    .await
    .unwrap();
    post(
        &api,
        &format!("/v1/jobs/{id}/complete"),
        json!({"token": token, "result": {"done": true}}),
    )
    .await
    .unwrap();

    let seen = read_until(&mut events, "\"event\":\"completed\"").await;
    let order: Vec<&str> = ["enqueued", "started", "progress", "completed"]
        .into_iter()
        .filter(|name| seen.contains(&format!("\"event\":\"{name}\"")))
        .collect();
    assert_eq!(
        order,
        ["enqueued", "started", "progress", "completed"],
        "{seen}"
    );
    assert!(seen.find("\"event\":\"enqueued\"") < seen.find("\"event\":\"started\""));
    assert!(seen.contains(&format!("\"id\":{id}")));
}

fn worker_config(queues: &[&str], concurrency: usize) -> WorkerConfig {
    WorkerConfig {
        name: "test-worker".into(),
        queues: queues.iter().map(|q| q.to_string()).collect(),
        concurrency,
        prefetch: 0,
        prefetch_within: None,
        shutdown_deadline: Duration::from_millis(300),
        lease_wait: Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_worker_runs_handlers_times_out_and_releases_at_shutdown() {
    let mut config = ServeConfig::defaults();
    config.job_store.retry.base = Duration::from_secs(60);
    let server = start(config).await;
    let api = client(&server.http);

    let mut registry = Registry::with_builtins();
    registry.register("boom", |_ctx| async { Err(JobFailure::fatal("bad input")) });
    let stop = CancellationToken::new();
    let worker = Worker::new(
        client(&server.http),
        registry,
        worker_config(&["default"], 4),
    );
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });

    let echo = post(
        &api,
        "/v1/jobs",
        json!({"kind": "echo", "payload": {"n": 7}}),
    )
    .await
    .unwrap()["id"]
        .as_i64()
        .unwrap();
    let boom = post(&api, "/v1/jobs", json!({"kind": "boom"}))
        .await
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let slow = post(
        &api,
        "/v1/jobs",
        json!({"kind": "sleep", "payload": {"ms": 60_000}, "timeout_ms": 200}),
    )
    .await
    .unwrap()["id"]
        .as_i64()
        .unwrap();
    let unknown = post(
        &api,
        "/v1/jobs",
        json!({"kind": "nobody-runs-this", "max_attempts": 1}),
    )
    .await
    .unwrap()["id"]
        .as_i64()
        .unwrap();

    let done = wait_for(&api, echo, |job| job["state"] == "completed").await;
    assert_eq!(done["result"], json!({"n": 7}));
    let discarded = wait_for(&api, boom, |job| job["state"] == "discarded").await;
    assert_eq!(discarded["errors"][0]["error"], "bad input");
    assert_eq!(discarded["attempt"], 1, "a fatal failure is not retried");
    let timed_out = wait_for(&api, slow, |job| job["state"] == "retrying").await;
    assert_eq!(timed_out["errors"][0]["error"], "timed out after 200 ms");
    // A kind the worker has no handler for is never leased by it: the job waits, its
    // attempts untouched, for a worker that runs it (once, it was failed here).
    let unknown = get(&api, &format!("/v1/jobs/{unknown}")).await;
    assert_eq!(
        (unknown["state"].as_str(), unknown["attempt"].as_u64()),
        (Some("available"), Some(0)),
        "{unknown}"
    );

    // Shutdown with a job still running: after the deadline its lease is released and it
    // is available again at once, its attempt not counted.
    let long = post(
        &api,
        "/v1/jobs",
        json!({"kind": "sleep", "payload": {"ms": 60_000}}),
    )
    .await
    .unwrap()["id"]
        .as_i64()
        .unwrap();
    wait_for(&api, long, |job| job["state"] == "running").await;
    stop.cancel();
    tokio::time::timeout(DEADLINE, running)
        .await
        .expect("the worker stops")
        .unwrap();
    let released = get(&api, &format!("/v1/jobs/{long}")).await;
    assert_eq!(released["state"], "available");
    assert_eq!(released["attempt"], 0);
}

/// A TCP relay between a worker and the server that can hold the server's answers: what
/// the server sends waits in the relay while the gate is shut. A hang-up on either side is
/// passed on, as a real network would. It keeps every byte the worker sent.
struct HeldRelay {
    addr: String,
    gate: tokio::sync::watch::Sender<bool>,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl HeldRelay {
    /// How many requests the worker sent whose request line starts with `start` (the
    /// bytes of every connection together: the tests' bodies never hold such text).
    fn requests(&self, start: &str) -> usize {
        self.sent
            .lock()
            .unwrap()
            .windows(start.len())
            .filter(|window| *window == start.as_bytes())
            .count()
    }
}

async fn held_relay(upstream: String) -> HeldRelay {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (gate, open) = tokio::sync::watch::channel(true);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&sent);
    tokio::spawn(async move {
        while let Ok((worker_side, _)) = listener.accept().await {
            let server_side = TcpStream::connect(&upstream).await.unwrap();
            let (mut from_worker, mut to_worker) = worker_side.into_split();
            let (mut from_server, mut to_server) = server_side.into_split();
            // Dropping a write half when its copy ends shuts the socket's sending side.
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(read @ 1..) = from_worker.read(&mut buf).await {
                    record.lock().unwrap().extend_from_slice(&buf[..read]);
                    if to_server.write_all(&buf[..read]).await.is_err() {
                        return;
                    }
                }
            });
            let mut open = open.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(read @ 1..) = from_server.read(&mut buf).await {
                    if open.wait_for(|open| *open).await.is_err()
                        || to_worker.write_all(&buf[..read]).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    HeldRelay { addr, gate, sent }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_answered_after_the_stop_is_released_not_left_to_expire() {
    let server = start(ServeConfig::defaults()).await;
    let api = client(&server.http);
    let relay = held_relay(server.http.clone()).await;
    let config = WorkerConfig {
        // A long-poll: the lease is waiting on the server when the job arrives.
        lease_wait: Duration::from_secs(30),
        shutdown_deadline: DEADLINE,
        ..worker_config(&["default"], 1)
    };
    let worker = Worker::new(client(&relay.addr), Registry::with_builtins(), config);
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });
    relay.gate.send_replace(false);

    // The server leases the job and answers; the answer is held on its way to the worker.
    let id = post(&api, "/v1/jobs", json!({"kind": "echo"}))
        .await
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    wait_for(&api, id, |job| job["state"] == "running").await;
    stop.cancel();
    // Not needed for the outcome: it lets the worker see the stop before the answer, the
    // case where hanging up on the lease would leave the job leased to nobody.
    tokio::time::sleep(Duration::from_millis(100)).await;
    relay.gate.send_replace(true);

    tokio::time::timeout(DEADLINE, running)
        .await
        .expect("the worker stops")
        .unwrap();
    let released = get(&api, &format!("/v1/jobs/{id}")).await;
    assert_eq!(released["state"], "available", "{released}");
    assert_eq!(released["attempt"], 0, "released unrun: {released}");
}

/// Polls `done` until it holds (within the deadline).
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let started = tokio::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < DEADLINE, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_that_finish_together_are_reported_together() {
    const JOBS: usize = 20;
    const BATCH_REPORT: &str = "POST /v1/jobs/complete ";
    let server = start(ServeConfig::defaults()).await;
    let api = client(&server.http);
    let relay = held_relay(server.http.clone()).await;
    // `held` jobs finish one per permit added, and count their returns.
    let finish = Arc::new(tokio::sync::Semaphore::new(0));
    let returned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut registry = Registry::new();
    registry.register("held", {
        let (finish, returned) = (Arc::clone(&finish), Arc::clone(&returned));
        move |_ctx| {
            let (finish, returned) = (Arc::clone(&finish), Arc::clone(&returned));
            async move {
                finish.acquire().await.expect("never closed").forget();
                returned.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(serde_json::value::RawValue::from_string("null".into()).unwrap())
            }
        }
    });
    let enqueued = post(
        &api,
        "/v1/jobs/batch",
        json!({ "jobs": vec![json!({"kind": "held"}); JOBS] }),
    )
    .await
    .unwrap();
    let ids = job_ids(&enqueued);
    let stop = CancellationToken::new();
    let worker = Worker::new(
        client(&relay.addr),
        registry,
        worker_config(&["default"], JOBS),
    );
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });
    for &id in &ids {
        wait_for(&api, id, |job| job["state"] == "running").await;
    }

    // The first job's report goes out alone, and its answer is held: the other jobs finish
    // meanwhile and gather behind it.
    relay.gate.send_replace(false);
    finish.add_permits(1);
    eventually("the first report is sent", || {
        relay.requests(BATCH_REPORT) == 1
    })
    .await;
    finish.add_permits(JOBS - 1);
    eventually("every handler returns", || {
        returned.load(std::sync::atomic::Ordering::SeqCst) == JOBS
    })
    .await;
    // A job queues its completion right after its handler returns; the answer stays held.
    tokio::time::sleep(Duration::from_millis(100)).await;
    relay.gate.send_replace(true);
    for &id in &ids {
        let done = wait_for(&api, id, |job| job["state"] != "running").await;
        assert_eq!(done["state"], "completed", "{done}");
    }
    let reports = relay.requests(BATCH_REPORT);
    // Two when every job queued its completion within the pause above (as it does); a
    // straggler on a loaded machine makes another.
    assert!(
        (2..=4).contains(&reports),
        "{JOBS} completions in {reports} requests"
    );
    assert_eq!(
        relay.requests("/complete HTTP/1.1"),
        reports,
        "no single-job reports"
    );
    stop.cancel();
    tokio::time::timeout(DEADLINE, running)
        .await
        .expect("the worker stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_jobs_wait_for_a_slot_with_their_leases_kept() {
    // Heartbeats every 400 ms: a lease survives a stall of 800 ms on a loaded machine.
    const TTL: Duration = Duration::from_millis(1200);
    let mut config = ServeConfig::defaults();
    config.jobs.lease_ttl = TTL;
    let server = start(config).await;
    let api = client(&server.http);
    // `held` jobs record that they started, then finish one per permit added.
    let finish = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(Mutex::new(Vec::new()));
    let mut registry = Registry::new();
    registry.register("held", {
        let (finish, started) = (Arc::clone(&finish), Arc::clone(&started));
        move |ctx| {
            let (finish, started) = (Arc::clone(&finish), Arc::clone(&started));
            async move {
                started.lock().unwrap().push(ctx.job.id.0);
                finish.acquire().await.expect("never closed").forget();
                Ok(serde_json::value::RawValue::from_string("null".into()).unwrap())
            }
        }
    });
    let enqueue = |timeout_ms: u64| {
        let api = &api;
        async move {
            post(
                api,
                "/v1/jobs",
                json!({"kind": "held", "timeout_ms": timeout_ms}),
            )
            .await
            .unwrap()["id"]
                .as_i64()
                .unwrap()
        }
    };
    // One slot, two more leased ahead.
    let config = WorkerConfig {
        prefetch: 2,
        prefetch_within: None,
        ..worker_config(&["default"], 1)
    };
    let stop = CancellationToken::new();
    let worker = Worker::new(client(&server.http), registry, config);
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });
    let a = enqueue(300_000).await;
    eventually("the first job starts", || *started.lock().unwrap() == [a]).await;
    // Leased ahead while `a` holds the slot; each may run 1 s once it starts.
    let (b, c) = (enqueue(1_000).await, enqueue(1_000).await);
    let mut first_expiry = Vec::new();
    for id in [b, c] {
        let job = wait_for(&api, id, |job| job["state"] == "running").await;
        first_expiry.push(job["lease"]["expires_at"].as_str().unwrap().to_string());
    }

    // Two lease lengths later, and past their 1 s timeout: heartbeats kept the queued
    // jobs' leases, and their timeouts have not begun.
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(*started.lock().unwrap(), [a], "one slot, one job running");
    for (id, first) in [b, c].into_iter().zip(&first_expiry) {
        let job = get(&api, &format!("/v1/jobs/{id}")).await;
        assert_eq!(job["state"], "running", "{job}");
        assert!(
            job["lease"]["expires_at"].as_str().unwrap() > first.as_str(),
            "the lease was extended: {job}"
        );
    }

    // A cancel reaches a queued job through its heartbeat: given back without running,
    // no attempt used, no error recorded.
    post(&api, &format!("/v1/jobs/{c}/cancel"), json!({}))
        .await
        .unwrap();
    let job = wait_for(&api, c, |job| job["state"] != "running").await;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(job["attempt"], 0, "{job}");
    assert_eq!(job["errors"], json!([]), "{job}");

    // `a` finishes; `b` gets the slot and its full second.
    finish.add_permits(1);
    eventually("the queued job starts", || {
        *started.lock().unwrap() == [a, b]
    })
    .await;
    finish.add_permits(1);
    for id in [a, b] {
        let job = wait_for(&api, id, |job| job["state"] != "running").await;
        assert_eq!(job["state"], "completed", "{job}");
    }

    // At the stop, a job still queued goes back unrun (and the running one at the deadline).
    let (d, e) = (enqueue(300_000).await, enqueue(300_000).await);
    for id in [d, e] {
        wait_for(&api, id, |job| job["state"] == "running").await;
    }
    eventually("one of them starts", || started.lock().unwrap().len() == 3).await;
    stop.cancel();
    tokio::time::timeout(DEADLINE, running)
        .await
        .expect("the worker stops")
        .unwrap();
    assert_eq!(started.lock().unwrap().len(), 3, "the queued one never ran");
    for id in [d, e] {
        let job = get(&api, &format!("/v1/jobs/{id}")).await;
        assert_eq!(job["state"], "available", "{job}");
        assert_eq!(job["attempt"], 0, "{job}");
    }
}

/// Completes `jobs` with `result` through a reporter of its own on `api`, every completion
/// queued before the reporter first runs (on a one-thread runtime), and waits for it to end.
async fn complete_through(api: Client, jobs: &[weir_jobs::protocol::LeasedJob], result: &str) {
    let (completions, reporter) = Completions::start(Arc::new(api));
    let outcomes = futures_util::future::join_all(jobs.iter().map(|job| {
        let result = serde_json::value::RawValue::from_string(result.to_string()).unwrap();
        completions.complete(job.id, job.fencing_token, result)
    }))
    .await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    drop(completions);
    reporter.await.unwrap();
}

/// On one thread the reporter runs only once every completion below is queued: they make
/// one batch, which the server's small body limit refuses.
#[tokio::test]
async fn a_batch_the_server_refuses_whole_is_sent_a_job_at_a_time() {
    const JOBS: usize = 5;
    let mut config = ServeConfig::defaults();
    // One completion of 1,200 bytes fits; two do not.
    config.http.max_body_bytes = 2048;
    let server = start(config).await;
    let api = client(&server.http);
    let relay = held_relay(server.http.clone()).await;
    for _ in 0..JOBS {
        post(&api, "/v1/jobs", json!({"kind": "echo"}))
            .await
            .unwrap();
    }
    let leased = api
        .lease(
            "batcher",
            &["default".to_string()],
            &kinds(),
            JOBS as u32,
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(leased.jobs.len(), JOBS);
    let result = format!("\"{}\"", "x".repeat(1_200));
    complete_through(client(&relay.addr), &leased.jobs, &result).await;
    for job in &leased.jobs {
        let done = get(&api, &format!("/v1/jobs/{}", job.id.0)).await;
        assert_eq!(done["state"], "completed", "{done}");
    }
    assert_eq!(
        relay.requests("POST /v1/jobs/complete "),
        1,
        "one batch, refused"
    );
    assert_eq!(
        relay.requests("/complete HTTP/1.1"),
        1 + JOBS,
        "then a request per job"
    );
}

/// On one thread every completion below is queued before the reporter runs, so the batches
/// are cut by the limits alone.
#[tokio::test]
async fn batches_keep_to_their_count_and_byte_limits() {
    use weir_jobs::completions::{MAX_BATCH_BYTES, MAX_COMPLETIONS};
    const BATCH_REPORT: &str = "POST /v1/jobs/complete ";
    let server = start(ServeConfig::defaults()).await;
    let api = client(&server.http);
    let relay = held_relay(server.http.clone()).await;
    // Results of 100 KiB: two fit under the byte limit, three do not.
    let large = MAX_BATCH_BYTES * 2 / 5;
    let small = MAX_COMPLETIONS + MAX_COMPLETIONS / 2;
    post(
        &api,
        "/v1/jobs/batch",
        json!({ "jobs": vec![json!({"kind": "echo"}); small + 5] }),
    )
    .await
    .unwrap();
    let mut leased = Vec::new();
    while leased.len() < small + 5 {
        let reply = api
            .lease(
                "batcher",
                &["default".to_string()],
                &kinds(),
                100,
                Duration::ZERO,
            )
            .await
            .unwrap();
        leased.extend(reply.jobs);
    }

    complete_through(client(&relay.addr), &leased[..small], "null").await;
    assert_eq!(
        relay.requests(BATCH_REPORT),
        2,
        "{MAX_COMPLETIONS} a request at most"
    );
    let result = format!("\"{}\"", "x".repeat(large));
    complete_through(client(&relay.addr), &leased[small..], &result).await;
    assert_eq!(
        relay.requests(BATCH_REPORT),
        2 + 3,
        "five large results go two, two and one"
    );
    for job in &leased {
        let done = get(&api, &format!("/v1/jobs/{}", job.id.0)).await;
        assert_eq!(done["state"], "completed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_completions_answers_each_on_its_own() {
    let server = start(ServeConfig::defaults()).await;
    let api = client(&server.http);
    for _ in 0..2 {
        post(&api, "/v1/jobs", json!({"kind": "echo"}))
            .await
            .unwrap();
    }
    let leased = api
        .lease(
            "batcher",
            &["default".to_string()],
            &kinds(),
            2,
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(leased.jobs.len(), 2);
    let result = || serde_json::value::RawValue::from_string(r#"{"ok":1}"#.into()).unwrap();
    let (good, stale) = (&leased.jobs[0], &leased.jobs[1]);
    let answers = api
        .complete_many(&[
            Completion {
                id: good.id,
                token: good.fencing_token,
                result: result(),
            },
            Completion {
                id: stale.id,
                token: stale.fencing_token + 1,
                result: result(),
            },
        ])
        .await
        .unwrap();
    assert!(answers[0].is_ok(), "{answers:?}");
    match &answers[1] {
        Err(ClientError::Refused {
            status: 409,
            lease_lost: true,
            ..
        }) => {}
        other => panic!("a stale token is a lost lease: {other:?}"),
    }
    let completed = get(&api, &format!("/v1/jobs/{}", good.id.0)).await;
    assert_eq!(completed["state"], "completed");
    assert_eq!(completed["result"], json!({"ok": 1}));
    let still = get(&api, &format!("/v1/jobs/{}", stale.id.0)).await;
    assert_eq!(still["state"], "running", "the refused one is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_the_running_handler() {
    let mut config = ServeConfig::defaults();
    // Heartbeats every 400 ms: the cancel arrives quickly.
    config.jobs.lease_ttl = Duration::from_millis(1200);
    let server = start(config).await;
    let api = client(&server.http);
    let stop = CancellationToken::new();
    let worker = Worker::new(
        client(&server.http),
        Registry::with_builtins(),
        worker_config(&["default"], 2),
    );
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });
    let id = post(
        &api,
        "/v1/jobs",
        json!({"kind": "sleep", "payload": {"ms": 60_000}}),
    )
    .await
    .unwrap()["id"]
        .as_i64()
        .unwrap();
    wait_for(&api, id, |job| job["state"] == "running").await;
    post(&api, &format!("/v1/jobs/{id}/cancel"), json!({}))
        .await
        .unwrap();
    let cancelled = wait_for(&api, id, |job| job["state"] == "cancelled").await;
    assert_eq!(cancelled["errors"][0]["error"], "cancelled while sleeping");
    stop.cancel();
    tokio::time::timeout(DEADLINE, running)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_batches_and_waits() {
    let server = start(ServeConfig::defaults()).await;
    let api = client(&server.http);
    // A batch over jobs.max_batch (1,000) is refused whole.
    let jobs: Vec<Value> = (0..1_001).map(|_| json!({"kind": "k"})).collect();
    let (status, message) = refused(post(&api, "/v1/jobs/batch", json!({ "jobs": jobs })).await);
    assert_eq!(status, 400);
    assert!(
        message.starts_with("jobs: 1001 jobs exceeds the batch limit of 1000"),
        "{message}"
    );
    let (status, message) = refused(
        post(
            &api,
            "/v1/lease",
            json!({"worker": "w", "kinds": KINDS, "max": 101}),
        )
        .await,
    );
    assert_eq!(status, 400);
    assert!(message.starts_with("max: must be 1–100"), "{message}");

    // A waiting lease ends, empty, when the server shuts down: draining does not wait out
    // the long-poll.
    let waiting = {
        let api = client(&server.http);
        tokio::spawn(async move {
            post(
                &api,
                "/v1/lease",
                json!({"worker": "w", "kinds": KINDS, "wait_ms": 60_000}),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(server);
    let answer = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("the lease returns at shutdown, not after its minute")
        .unwrap()
        .unwrap();
    assert!(answer["jobs"].as_array().unwrap().is_empty());
}

/// Two findings of the jobs' attack review: a retry that would give a unique key to two
/// unfinished jobs answered 503 with the database's text, and `delay_ms` had no bound (a
/// year 292278994 went in, which Weir's own parser then refused).
#[tokio::test]
async fn a_taken_unique_key_is_a_conflict_and_schedules_are_bounded() {
    let server = start(ServeConfig::defaults()).await;
    let api = client(&server.http);
    let first = post(
        &api,
        "/v1/jobs",
        json!({"kind": "k", "unique_key": "nightly"}),
    )
    .await
    .unwrap();
    let id = first["id"].as_i64().unwrap();
    post(&api, &format!("/v1/jobs/{id}/cancel"), json!({}))
        .await
        .unwrap();
    post(
        &api,
        "/v1/jobs",
        json!({"kind": "k", "unique_key": "nightly"}),
    )
    .await
    .unwrap();
    let (status, message) = refused(post(&api, &format!("/v1/jobs/{id}/retry"), json!({})).await);
    assert_eq!(status, 409, "{message}");
    assert!(message.contains("unique key `nightly`"), "{message}");

    let (status, message) = refused(
        post(
            &api,
            "/v1/jobs",
            json!({"kind": "k", "delay_ms": 9_223_372_036_854_775_807u64}),
        )
        .await,
    );
    assert_eq!(status, 400, "{message}");
    assert!(message.starts_with("delay_ms:"), "{message}");
    let (status, message) = refused(
        post(
            &api,
            "/v1/jobs",
            json!({"kind": "k", "run_at": "9999-12-31T00:00:00Z"}),
        )
        .await,
    );
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("ten years"), "{message}");
    let soon = post(&api, "/v1/jobs", json!({"kind": "k", "delay_ms": 60_000}))
        .await
        .unwrap();
    assert_eq!(soon["state"], "scheduled");
}
