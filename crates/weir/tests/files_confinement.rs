//! The `files` job kind touches only what the worker's operator chose: a real `weir worker
//! --kinds echo,files --files-root DIR --files-out DIR` against a real server, and jobs that
//! try to read or write elsewhere.

mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{spawn_worker, start, DEADLINE};
use weir::config::ServeConfig;
use weir_jobs::client::Client;

/// A file outside the root holds this; no job may find it.
const SECRET: &str = "TOKEN=hunter2";

/// How long a cancelled job may take to end: generous, a hang fails it. Not a timing
/// threshold: the job would otherwise run to its 5-minute timeout.
const CANCEL_DEADLINE: Duration = Duration::from_secs(10);

async fn server(config: ServeConfig) -> (support::Server, Client) {
    let server = start(config).await;
    let api = Client::new(vec![format!("http://{}", server.http)], None).unwrap();
    (server, api)
}

/// `weir worker --kinds echo,files` against `server`, with `args` added.
fn worker(server: &support::Server, args: &[&str]) -> support::Process {
    let url = format!("http://{}", server.http);
    let mut all = vec!["--server", url.as_str(), "--kinds", "echo,files"];
    all.extend_from_slice(args);
    spawn_worker(&all)
}

async fn enqueue(api: &Client, payloads: &[Value]) -> Vec<i64> {
    let jobs: Vec<Value> = payloads
        .iter()
        .map(|payload| json!({"kind": "files", "payload": payload, "max_attempts": 3}))
        .collect();
    let created: Value = api
        .call(
            "/v1/jobs/batch",
            Some(json!({ "jobs": jobs }).to_string()),
            DEADLINE,
        )
        .await
        .unwrap();
    support::job_ids(&created)
}

async fn job(api: &Client, id: i64) -> Value {
    api.call(&format!("/v1/jobs/{id}"), None, DEADLINE)
        .await
        .unwrap()
}

/// Waits until job `id` is in one of `states`, within `deadline`.
async fn wait_for(api: &Client, id: i64, states: &[&str], deadline: Duration) -> Value {
    let give_up = Instant::now() + deadline;
    loop {
        let job = job(api, id).await;
        if states.contains(&job["state"].as_str().unwrap_or_default()) {
            return job;
        }
        assert!(Instant::now() < give_up, "job {id} not {states:?}: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn finished(api: &Client, id: i64) -> Value {
    wait_for(
        api,
        id,
        &["completed", "discarded", "cancelled"],
        DEADLINE * 3,
    )
    .await
}

fn last_error(job: &Value) -> String {
    job["errors"]
        .as_array()
        .and_then(|errors| errors.last())
        .and_then(|error| error["error"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A discarded job, failed once (fatal: not retried), whose error holds every one of `words`.
fn assert_refused(job: &Value, words: &[&str]) {
    assert_eq!(
        (job["state"].as_str(), job["attempt"].as_u64()),
        (Some("discarded"), Some(1)),
        "{job}"
    );
    let error = last_error(job);
    for word in words {
        assert!(error.contains(word), "{word:?} not in {error:?}");
    }
}

/// `base/root` (the worker's root), `base/out` (its output directory) and
/// `base/outside/secret.txt`, holding [`SECRET`].
fn layout(label: &str) -> (PathBuf, PathBuf, PathBuf) {
    let base = std::fs::canonicalize(support::temp_dir(label)).unwrap();
    let (root, out) = (base.join("root"), base.join("out"));
    for dir in [&root, &out, &base.join("outside")] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(base.join("outside/secret.txt"), format!("{SECRET}\n")).unwrap();
    (base, root, out)
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The kind at work within its root: totals in the result, every file in `out`, an
/// unreadable entry reported without failing the job, a name that is not UTF-8 counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_files_job_beneath_its_root_reports_totals_and_writes_out() {
    let (base, root, out) = layout("files-ok");
    for n in 0..25 {
        std::fs::write(root.join(format!("f{n}.txt")), "one two\nthree\n".repeat(n)).unwrap();
    }
    symlink(root.join("missing"), root.join("dangling")).unwrap();
    let odd = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"odd-\xff");
    std::fs::write(root.join(odd), "four\n").unwrap();
    let (server, api) = server(ServeConfig::defaults()).await;
    let _worker = worker(
        &server,
        &["--files-root", text(&root), "--files-out", text(&out)],
    );
    let payload = json!({"paths": [root], "count": true, "hash": "sha256", "out": "report.jsonl"});
    let ids = enqueue(&api, &[payload]).await;
    let job = finished(&api, ids[0]).await;
    assert_eq!(job["state"], "completed", "{job}");
    let totals = &job["result"]["totals"];
    // Files n hold 2n lines and 3n words (sums over 0..25), and odd-\xff one of each.
    assert_eq!(
        (
            totals["files"].as_u64(),
            totals["lines"].as_u64(),
            totals["words"].as_u64()
        ),
        (Some(26), Some(601), Some(901))
    );
    assert_eq!(totals["errors"], 1);
    assert_eq!(job["result"]["errors"][0]["error"], "broken symbolic link");
    let report = out.join("report.jsonl");
    assert_eq!(job["result"]["out"], text(&report));
    let written = std::fs::read_to_string(&report).unwrap();
    assert_eq!(written.lines().count(), 27);
    assert!(
        written.contains(r#""path":"#) && written.contains(r"odd-\\xff"),
        "{written}"
    );
    std::fs::remove_dir_all(&base).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_the_roots_fail_the_job_naming_the_setting() {
    let (base, root, out) = layout("files-paths");
    std::fs::write(root.join("a.txt"), "a\n").unwrap();
    symlink("../outside", root.join("out-link")).unwrap();
    let (server, api) = server(ServeConfig::defaults()).await;
    let _worker = worker(
        &server,
        &["--files-root", text(&root), "--files-out", text(&out)],
    );
    let escapes = [
        PathBuf::from("/etc/passwd"),
        root.join("../outside/secret.txt"),
        PathBuf::from("../outside"),
        root.join("out-link"),
    ];
    let payloads: Vec<Value> = escapes
        .iter()
        .map(|path| json!({"paths": [root.join("a.txt"), path], "grep": "hunter2"}))
        .collect();
    let ids = enqueue(&api, &payloads).await;
    for (id, path) in ids.into_iter().zip(&escapes) {
        let job = finished(&api, id).await;
        assert_refused(
            &job,
            &[text(path), "--files-root", "outside the files roots"],
        );
        assert!(job["result"].is_null(), "{job}");
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// Links in the tree leading out (to a file, to a directory, to /etc/passwd, to the
/// worker's environment) are reported, never read: a search for the secret behind them
/// finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_leading_out_of_the_root_are_never_read() {
    let (base, root, out) = layout("files-links");
    std::fs::write(root.join("a.txt"), "nothing here\n").unwrap();
    symlink("../outside/secret.txt", root.join("leak")).unwrap();
    symlink(base.join("outside/secret.txt"), root.join("abs-leak")).unwrap();
    symlink("../outside", root.join("dir-leak")).unwrap();
    symlink("/etc/passwd", root.join("passwd")).unwrap();
    symlink("/proc/self/environ", root.join("environ")).unwrap();
    let (server, api) = server(ServeConfig::defaults()).await;
    let _worker = worker(
        &server,
        &["--files-root", text(&root), "--files-out", text(&out)],
    );
    let payload = json!({"paths": [root], "grep": "hunter2|^root:|PATH=", "out": "links.jsonl"});
    let ids = enqueue(&api, &[payload]).await;
    let job = finished(&api, ids[0]).await;
    assert_eq!(job["state"], "completed", "{job}");
    let result = &job["result"];
    assert_eq!(result["totals"]["matches"], 0, "{result}");
    assert_eq!(
        (
            result["totals"]["files"].as_u64(),
            result["totals"]["errors"].as_u64()
        ),
        (Some(1), Some(5)),
        "{result}"
    );
    for error in result["errors"].as_array().unwrap() {
        let message = error["error"].as_str().unwrap();
        assert!(message.starts_with("outside the files roots"), "{error}");
    }
    let written = std::fs::read_to_string(out.join("links.jsonl")).unwrap();
    assert!(!written.contains("hunter2"), "{written}");
    std::fs::remove_dir_all(&base).unwrap();
}

/// `out` is a new file named in the output directory: never a path, never an existing
/// file, never through a link; refused (fatal) before anything is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_names_only_a_new_file_in_the_output_directory() {
    let (base, root, out) = layout("files-out");
    std::fs::write(root.join("a.txt"), "a\n").unwrap();
    std::fs::write(out.join("existing"), "keep").unwrap();
    std::fs::write(base.join("victim"), "keep").unwrap();
    symlink(base.join("victim"), out.join("link")).unwrap();
    symlink(base.join("created-through-link"), out.join("dangling")).unwrap();
    let (server, api) = server(ServeConfig::defaults()).await;
    let _worker = worker(
        &server,
        &["--files-root", text(&root), "--files-out", text(&out)],
    );
    let absolute = base.join("absolute.jsonl");
    let names = [
        ("../x.jsonl", "is not a file name"),
        (text(&absolute), "is not a file name"),
        ("existing", "already exists"),
        ("link", "already exists"),
        ("dangling", "already exists"),
    ];
    let payloads: Vec<Value> = names
        .iter()
        .map(|(name, _)| json!({"paths": [root], "out": name}))
        .collect();
    let ids = enqueue(&api, &payloads).await;
    for (id, (name, why)) in ids.into_iter().zip(names) {
        let job = finished(&api, id).await;
        assert_refused(&job, &["out:", why]);
        assert!(last_error(&job).contains(name), "{job}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("existing")).unwrap(),
        "keep"
    );
    assert_eq!(
        std::fs::read_to_string(base.join("victim")).unwrap(),
        "keep"
    );
    assert!(!base.join("x.jsonl").exists() && !absolute.exists());
    assert!(!base.join("created-through-link").exists());
    std::fs::remove_dir_all(&base).unwrap();
}

/// Without --files-out, a job with `out` is refused, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_output_directory_out_is_refused() {
    let (base, root, _) = layout("files-no-out");
    std::fs::write(root.join("a.txt"), "a\n").unwrap();
    let (server, api) = server(ServeConfig::defaults()).await;
    let _worker = worker(&server, &["--files-root", text(&root)]);
    let ids = enqueue(
        &api,
        &[
            json!({"paths": [root], "out": "report.jsonl"}),
            json!({"paths": [root]}),
        ],
    )
    .await;
    assert_refused(&finished(&api, ids[0]).await, &["out:", "--files-out"]);
    assert_eq!(finished(&api, ids[1]).await["state"], "completed");
    std::fs::remove_dir_all(&base).unwrap();
}

/// A job that would pass a limit stops and fails (fatal), naming the limit and its setting;
/// its `out` file is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stops_at_the_limits_naming_the_setting() {
    let (base, root, out) = layout("files-limits");
    std::fs::create_dir_all(root.join("many")).unwrap();
    for n in 0..50 {
        std::fs::write(root.join(format!("many/f{n}")), "word\n").unwrap();
    }
    std::fs::create_dir_all(root.join("big")).unwrap();
    std::fs::write(root.join("big/file"), "x".repeat(5000)).unwrap();
    let (server, api) = server(ServeConfig::defaults()).await;
    let _worker = worker(
        &server,
        &[
            "--files-root",
            text(&root),
            "--files-out",
            text(&out),
            "--files-max-files",
            "10",
            "--files-max-bytes",
            "1KiB",
        ],
    );
    let ids = enqueue(
        &api,
        &[
            json!({"paths": [root.join("many")], "out": "many.jsonl"}),
            json!({"paths": [root.join("big")]}),
        ],
    )
    .await;
    assert_refused(
        &finished(&api, ids[0]).await,
        &["limit of 10 files", "--files-max-files", "partial totals"],
    );
    assert!(
        !out.join("many.jsonl").exists(),
        "a failed job's out is removed"
    );
    assert_refused(
        &finished(&api, ids[1]).await,
        &["limit of 1024 bytes", "--files-max-bytes"],
    );
    std::fs::remove_dir_all(&base).unwrap();
}

/// A cancel reaches the job (heartbeats every 400 ms here) while both workers read 64 GiB
/// sparse files and the walk waits on a full queue (40,000 more files than it holds): the
/// job ends cancelled within the deadline, not at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_ends_within_the_deadline() {
    let (base, root, out) = layout("files-cancel");
    // Named to come first in the walk's name order: the readers are busy with them while
    // the walk goes on.
    for name in ["0-huge-1", "0-huge-2"] {
        std::fs::File::create(root.join(name))
            .unwrap()
            .set_len(64 << 30)
            .unwrap();
    }
    for dir in 0..40 {
        let dir = root.join(format!("d{dir:02}"));
        std::fs::create_dir(&dir).unwrap();
        for n in 0..1000 {
            std::fs::File::create(dir.join(n.to_string())).unwrap();
        }
    }
    let mut config = ServeConfig::defaults();
    config.jobs.lease_ttl = Duration::from_millis(1200);
    let (server, api) = server(config).await;
    let _worker = worker(
        &server,
        &["--files-root", text(&root), "--files-out", text(&out)],
    );
    let payload = json!({"paths": [root], "hash": "sha256", "out": "cancelled.jsonl"});
    let id = enqueue(&api, &[payload]).await[0];
    wait_for(&api, id, &["running"], DEADLINE).await;
    // The walk fills its queue while the workers read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _: Value = api
        .call(
            &format!("/v1/jobs/{id}/cancel"),
            Some("{}".into()),
            DEADLINE,
        )
        .await
        .unwrap();
    let job = wait_for(
        &api,
        id,
        &["cancelled", "completed", "discarded"],
        CANCEL_DEADLINE,
    )
    .await;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(last_error(&job), "stopped before every file was processed");
    std::fs::remove_dir_all(&base).unwrap();
}
