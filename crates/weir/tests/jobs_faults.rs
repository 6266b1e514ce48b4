//! Jobs under `kill -9`: of a single SQLite node during enqueues, and of workers and a node
//! of a two-node PostgreSQL cluster while jobs run. Real processes, real signals.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{fresh_database, spawn_serve, spawn_worker, temp_dir, DEADLINE};
use weir_jobs::client::Client;

const CALL: Duration = Duration::from_secs(10);

fn client(addrs: &[&str]) -> Client {
    Client::new(addrs.iter().map(|a| format!("http://{a}")).collect(), None).unwrap()
}

/// Every job, by id, read page by page.
async fn all_jobs(api: &Client) -> BTreeMap<i64, Value> {
    let mut jobs = BTreeMap::new();
    let mut path = "/v1/jobs?limit=500".to_string();
    loop {
        let page: Value = api.call(&path, None, CALL).await.unwrap();
        for job in page["jobs"].as_array().unwrap() {
            jobs.insert(job["id"].as_i64().unwrap(), job.clone());
        }
        match page["next_before"].as_i64() {
            Some(before) => path = format!("/v1/jobs?limit=500&before={before}"),
            None => return jobs,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_enqueue_survives_kill_9() {
    let dir = temp_dir("jobs-kill");
    let data = dir.to_str().unwrap().to_string();
    let mut node = spawn_serve(&["--data-dir", &data]);
    let addr = node.addr.clone();
    // Eight producers enqueue as fast as they can, each recording what was answered.
    let mut producers = Vec::new();
    for producer in 0..8 {
        let addr = addr.clone();
        producers.push(tokio::spawn(async move {
            let api = client(&[&addr]);
            let mut answered = Vec::new();
            for n in 0.. {
                let body = json!({"queue": "burst", "kind": "echo", "payload": {"producer": producer, "n": n}});
                match api.call::<Value>("/v1/jobs", Some(body.to_string()), CALL).await {
                    Ok(job) => answered.push((job["id"].as_i64().unwrap(), json!({"producer": producer, "n": n}))),
                    Err(_) => return answered,
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill_9();
    let mut answered = Vec::new();
    for producer in producers {
        answered.extend(producer.await.unwrap());
    }
    assert!(
        answered.len() > 50,
        "the burst got going: {}",
        answered.len()
    );

    let restarted = spawn_serve(&["--data-dir", &data]);
    let stored = all_jobs(&client(&[&restarted.addr])).await;
    for (id, payload) in &answered {
        let job = stored
            .get(id)
            .unwrap_or_else(|| panic!("answered job {id} was lost"));
        assert_eq!(&job["payload"], payload);
        assert_eq!(job["state"], "available");
    }
    // An enqueue in flight at the kill may have been committed unanswered: allowed.
    assert!(stored.len() >= answered.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_finishes_every_job_while_workers_and_a_node_are_killed() {
    let Some(database) = fresh_database() else {
        return;
    };
    let node_args = |dir: &str| {
        vec![
            "--database".to_string(),
            database.clone(),
            "--data-dir".to_string(),
            dir.to_string(),
            // Short leases and retries, so the test sees many rescues quickly.
            "--lease-ttl".to_string(),
            "2s".to_string(),
            "--retry-base".to_string(),
            "100ms".to_string(),
        ]
    };
    let (dir_a, dir_b) = (temp_dir("node-a"), temp_dir("node-b"));
    let args_a = node_args(dir_a.to_str().unwrap());
    let args_b = node_args(dir_b.to_str().unwrap());
    let node_a = spawn_serve(&args_a.iter().map(String::as_str).collect::<Vec<_>>());
    let mut node_b = spawn_serve(&args_b.iter().map(String::as_str).collect::<Vec<_>>());
    let (a, b) = (node_a.addr.clone(), node_b.addr.clone());

    // Watch every lifecycle event on both nodes.
    let mut watchers = Vec::new();
    for addr in [&a, &b] {
        watchers.push(support_events(addr).await);
    }

    // 300 jobs of 200 ms each, enqueued on both nodes.
    let total = 300;
    for (i, addr) in [&a, &b].into_iter().enumerate() {
        let jobs: Vec<Value> = (0..total / 2)
            .map(|n| json!({"queue": "cluster", "kind": "sleep", "payload": {"ms": 200}, "unique_key": format!("job-{i}-{n}")}))
            .collect();
        let body = json!({"jobs": jobs}).to_string();
        client(&[addr])
            .call::<Value>("/v1/jobs/batch", Some(body), CALL)
            .await
            .unwrap();
    }

    // Four workers, two per node, each able to fail over to the other node.
    let worker_args = |first: &str, second: &str| {
        let servers = format!("http://{first},http://{second}");
        vec![
            "--server".to_string(),
            servers,
            "--queues".into(),
            "cluster".into(),
            "--concurrency".into(),
            "6".into(),
            "--shutdown-timeout".into(),
            "1s".into(),
        ]
    };
    let worker_sets = [
        worker_args(&a, &b),
        worker_args(&a, &b),
        worker_args(&b, &a),
        worker_args(&b, &a),
    ];
    let start_worker = |i: usize| {
        spawn_worker(
            &worker_sets[i]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
    };
    let mut workers: Vec<_> = (0..4).map(start_worker).collect();

    // Kill at random moments: workers (restarted at once) and, once, node B for good.
    let started = Instant::now();
    let mut node_b_killed = false;
    let api = client(&[&a]);
    loop {
        tokio::time::sleep(Duration::from_millis(300 + fastrand::u64(..700))).await;
        let victim = fastrand::usize(..workers.len());
        workers[victim].kill_9();
        workers[victim] = start_worker(victim);
        if !node_b_killed && started.elapsed() > Duration::from_secs(2) {
            node_b.kill_9();
            node_b_killed = true;
        }
        let queues: Value = api.call("/v1/queues", None, CALL).await.unwrap();
        let completed = queues["queues"]["cluster"]["completed"]
            .as_u64()
            .unwrap_or(0);
        if completed == total as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "jobs still unfinished: {queues}"
        );
    }
    assert!(node_b_killed);
    drop(workers);

    let jobs = all_jobs(&api).await;
    assert_eq!(jobs.len(), total, "no job lost, none duplicated");
    assert!(jobs.values().all(|job| job["state"] == "completed"));
    assert!(jobs
        .values()
        .all(|job| job["result"] == json!({"slept_ms": 200})));
    // Completion is recorded once across both nodes. Each node's stream also carries the
    // other's events (the pub/sub relay), byte for byte; two real completions of one job
    // would differ (their times and lease), so distinct `completed` events are counted.
    let mut completions: HashMap<i64, HashSet<String>> = HashMap::new();
    for watcher in watchers {
        let mut in_this_stream: HashSet<String> = HashSet::new();
        for (id, event, data) in watcher.finish().await {
            if event == "completed" {
                // Within one stream, no event twice (a relayed copy delivered again).
                assert!(
                    in_this_stream.insert(data.clone()),
                    "job {id}: {data} twice"
                );
                completions.entry(id).or_default().insert(data);
            }
        }
    }
    if let Some((id, events)) = completions.iter().find(|(_, events)| events.len() > 1) {
        panic!("job {id} completed {} times: {events:?}", events.len());
    }
    let rescued = jobs
        .values()
        .filter(|job| !job["errors"].as_array().unwrap().is_empty())
        .count();
    eprintln!("{total} jobs completed; {rescued} of them after a lost attempt");
    drop(node_a);
    let _ = (
        std::fs::remove_dir_all(dir_a),
        std::fs::remove_dir_all(dir_b),
    );
}

/// Collects (job id, event, the event's JSON) from a node's `$queues.cluster` stream until
/// finished.
struct EventWatcher {
    task: tokio::task::JoinHandle<Vec<(i64, String, String)>>,
    stop: tokio_util::sync::CancellationToken,
}

impl EventWatcher {
    async fn finish(self) -> Vec<(i64, String, String)> {
        self.stop.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .unwrap()
            .unwrap()
    }
}

async fn support_events(addr: &str) -> EventWatcher {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /v1/topics/$queues.cluster/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let until = stop.clone();
    let task = tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        let mut seen = Vec::new();
        loop {
            let line = tokio::select! {
                line = lines.next_line() => line,
                () = until.cancelled() => return seen,
            };
            // A killed node ends its stream: what arrived before stands.
            let Ok(Some(line)) = line else { return seen };
            if let Some(data) = line.strip_prefix("data: ") {
                if let Ok(event) = serde_json::from_str::<Value>(data) {
                    seen.push((
                        event["job"]["id"].as_i64().unwrap_or(-1),
                        event["event"].as_str().unwrap_or("").to_string(),
                        data.to_string(),
                    ));
                }
            }
        }
    });
    EventWatcher { task, stop }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_jobs_and_weir_worker_from_the_command_line() {
    let dir = temp_dir("jobs-cli");
    let node = spawn_serve(&["--data-dir", dir.to_str().unwrap()]);
    let server = format!("http://{}", node.addr);
    let _worker = spawn_worker(&["--server", &server, "--concurrency", "2"]);
    let weir = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("jobs")
            .args(args)
            .args(["--server", &server])
            .output()
            .unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (status, out) = weir(&[
        "submit",
        "echo",
        r#"{"from": "the cli"}"#,
        "--priority",
        "-1",
        "--wait",
    ]);
    assert!(status.success(), "{out}");
    let job: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["state"], "completed");
    assert_eq!(job["result"], json!({"from": "the cli"}));
    assert_eq!(job["priority"], -1);

    let (status, out) = weir(&["submit", "sleep", r#"{"ms": 60000}"#, "--delay", "1h"]);
    assert!(status.success());
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, out) = weir(&["list", "--state", "scheduled"]);
    assert!(status.success());
    assert!(
        out.lines()
            .any(|line| line.contains("sleep") && line.contains("scheduled")),
        "{out}"
    );
    let (status, out) = weir(&["cancel", &id.to_string()]);
    assert!(status.success());
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["state"],
        "cancelled"
    );
    let (status, out) = weir(&["get", &id.to_string()]);
    assert!(status.success());
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["state"],
        "cancelled"
    );
    let (status, _) = weir(&["get", "424242"]);
    assert!(!status.success(), "an unknown id fails");
    let _ = std::fs::remove_dir_all(&dir);
}
