//! The example worker in Python (examples/python/worker.py, standard library only) runs
//! jobs against a real server: the protocol is usable from another language as documented.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{start, DEADLINE};
use weir::config::ServeConfig;
use weir_jobs::client::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_worker_runs_jobs() {
    let server = start(ServeConfig::defaults()).await;
    let api = Client::new(vec![format!("http://{}", server.http)], None).unwrap();
    let call = Duration::from_secs(10);
    let jobs = json!({"jobs": [
        {"kind": "upper", "payload": {"text": "hello from python"}},
        {"kind": "echo", "payload": [1, 2, 3]},
        {"kind": "fail", "payload": {"retryable": false}},
        {"kind": "sleep", "payload": {"ms": 300}},
    ]});
    let enqueued: Value = api
        .call("/v1/jobs/batch", Some(jobs.to_string()), call)
        .await
        .unwrap();
    let ids = support::job_ids(&enqueued);

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/python/worker.py"
    );
    let server_url = format!("http://{}", server.http);
    let mut worker = tokio::process::Command::new("python3")
        .args([
            script,
            "--server",
            &server_url,
            "--concurrency",
            "2",
            "--exit-when-idle",
        ])
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let status = tokio::time::timeout(DEADLINE * 2, worker.wait())
        .await
        .expect("the worker exits once idle")
        .unwrap();
    assert!(status.success(), "{status}");

    let job = |id: i64| {
        let api = &api;
        async move {
            api.call::<Value>(&format!("/v1/jobs/{id}"), None, call)
                .await
                .unwrap()
        }
    };
    let upper = job(ids[0]).await;
    assert_eq!(upper["state"], "completed");
    assert_eq!(upper["result"], json!({"text": "HELLO FROM PYTHON"}));
    assert_eq!(job(ids[1]).await["result"], json!([1, 2, 3]));
    let failed = job(ids[2]).await;
    assert_eq!(failed["state"], "discarded", "not retryable: {failed}");
    let slept = job(ids[3]).await;
    assert_eq!(slept["state"], "completed");
}
