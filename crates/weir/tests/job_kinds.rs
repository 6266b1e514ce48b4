//! The `http` and `crawl` job kinds, run by a real `weir worker` process against a real
//! server and real local targets.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{spawn_worker, start, DEADLINE};
use tokio_util::sync::CancellationToken;
use weir::config::ServeConfig;
use weir_demo_site::{self as demo_site, Profile, SiteConfig};
use weir_http::{handler_fn, Request, Response, Server, ServerConfig, StatusCode};
use weir_jobs::client::Client;

/// What the target saw: method, path, content type, body, arrival.
type Seen = Arc<Mutex<Vec<(String, String, String, String, Instant)>>>;

/// A target for webhooks: `/ok` echoes, `/gone` is 404, `/flaky` is 503.
async fn target() -> (String, Seen, CancellationToken) {
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    let handler = handler_fn(move |mut request: Request| {
        let record = Arc::clone(&record);
        async move {
            let body = request
                .body_mut()
                .collect(1 << 20)
                .await
                .unwrap_or_default();
            let body = String::from_utf8_lossy(&body).into_owned();
            let content_type = request
                .header("content-type")
                .unwrap_or_default()
                .to_owned();
            let path = request.path().to_owned();
            record.lock().unwrap().push((
                request.method().to_string(),
                path.clone(),
                content_type,
                body.clone(),
                Instant::now(),
            ));
            match path.as_str() {
                "/ok" => Response::text(StatusCode::OK, format!("got {body}"))
                    .with_header("x-target", "yes"),
                "/gone" => Response::text(StatusCode::NOT_FOUND, "no such hook\n"),
                _ => Response::text(StatusCode::SERVICE_UNAVAILABLE, "try later\n"),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(Server::new(handler, ServerConfig::default()).serve(listener, shutdown.clone()));
    (url, seen, shutdown)
}

async fn enqueue(api: &Client, jobs: Value) -> Vec<i64> {
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

/// Waits until job `id` is in a final state and returns it.
async fn finished(api: &Client, id: i64) -> Value {
    let give_up = Instant::now() + DEADLINE * 3;
    loop {
        let job: Value = api
            .call(&format!("/v1/jobs/{id}"), None, DEADLINE)
            .await
            .unwrap();
        if matches!(
            job["state"].as_str(),
            Some("completed" | "discarded" | "cancelled")
        ) {
            return job;
        }
        assert!(Instant::now() < give_up, "job {id} did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server on ephemeral ports and a client of its API.
async fn server() -> (support::Server, Client) {
    let server = start(ServeConfig::defaults()).await;
    let api = Client::new(vec![format!("http://{}", server.http)], None).unwrap();
    (server, api)
}

/// `weir worker` against `server`, with `args` added.
fn worker(server: &support::Server, args: &[&str]) -> support::Process {
    let url = format!("http://{}", server.http);
    let mut all = vec!["--server", url.as_str()];
    all.extend_from_slice(args);
    spawn_worker(&all)
}

/// A static demo site of `pages` pages over `hosts` hosts, served until the guard drops.
async fn static_site(pages: usize, hosts: usize) -> (demo_site::Site, tokio_util::sync::DropGuard) {
    let (site, listeners) = demo_site::bind(SiteConfig {
        pages,
        hosts,
        port: 0,
        profile: Profile::Static,
        ..SiteConfig::default()
    })
    .await
    .unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(demo_site::serve(site.clone(), listeners, stop.clone()));
    (site, stop.drop_guard())
}

fn last_error(job: &Value) -> String {
    job["errors"]
        .as_array()
        .and_then(|errors| errors.last())
        .map(|error| error["error"].to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_jobs_complete_on_2xx_discard_on_4xx_and_retry_5xx() {
    let (server, api) = server().await;
    let (url, seen, _stop) = target().await;
    // The target is on the loopback interface, which a worker refuses unless opened.
    let _worker = worker(
        &server,
        &["--concurrency", "4", "--egress-allow", "127.0.0.1"],
    );
    let ids = enqueue(
        &api,
        json!([
            {"kind": "http", "payload": {"url": format!("{url}/ok"), "body": {"event": "signup"}, "headers": {"x-hook": "1"}}},
            {"kind": "http", "payload": {"url": format!("{url}/gone"), "method": "POST", "body": "x"}, "max_attempts": 5},
            {"kind": "http", "payload": {"url": format!("{url}/flaky"), "method": "POST", "body": "y"}, "max_attempts": 2},
            {"kind": "http", "payload": {"url": "ftp://example.com/"}},
        ]),
    )
    .await;
    let ok = finished(&api, ids[0]).await;
    assert_eq!(ok["state"], "completed", "{ok}");
    let result = &ok["result"];
    assert_eq!(result["status"], 200);
    assert_eq!(result["body"], "got {\"event\":\"signup\"}");
    assert_eq!(result["headers"]["x-target"], "yes");
    assert!(result["total_ms"].as_f64().unwrap() >= 0.0);

    let gone = finished(&api, ids[1]).await;
    assert_eq!(
        (gone["state"].as_str(), gone["attempt"].as_u64()),
        (Some("discarded"), Some(1)),
        "{gone}"
    );
    assert!(last_error(&gone).contains("404"), "{gone}");
    let flaky = finished(&api, ids[2]).await;
    assert_eq!(
        (flaky["state"].as_str(), flaky["attempt"].as_u64()),
        (Some("discarded"), Some(2)),
        "{flaky}"
    );
    let bad = finished(&api, ids[3]).await;
    assert_eq!(bad["state"], "discarded");
    assert!(last_error(&bad).contains("only http and https"), "{bad}");

    let seen = seen.lock().unwrap().clone();
    let count = |path: &str| seen.iter().filter(|(_, p, ..)| p == path).count();
    // A POST is not retried inside the client: each job attempt is one request.
    assert_eq!((count("/ok"), count("/gone"), count("/flaky")), (1, 1, 2));
    let hook = seen.iter().find(|(_, path, ..)| path == "/ok").unwrap();
    assert_eq!(
        (hook.0.as_str(), hook.2.as_str()),
        ("POST", "application/json")
    );
}

/// The attack: a job submitter points `http` jobs at the worker's own loopback services, at
/// a name that resolves there, at the cloud metadata address, and through a redirect from
/// a permitted server. Every one is discarded naming the address and the setting, and the
/// services see no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_jobs_reach_no_private_address_unless_the_operator_allows_it() {
    let (server, api) = server().await;
    let (url, seen, _stop) = target().await;
    let port = url.rsplit(':').next().unwrap().to_owned();
    let _worker = worker(&server, &["--concurrency", "4"]);
    let metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/";
    let ids = enqueue(
        &api,
        json!([
            {"kind": "http", "payload": {"url": format!("{url}/ok")}},
            {"kind": "http", "payload": {"url": format!("http://localhost:{port}/ok")}},
            {"kind": "http", "payload": {"url": metadata, "headers": {"Metadata-Flavor": "Google"}}},
            {"kind": "http", "payload": {"url": format!("http://[::ffff:127.0.0.1]:{port}/ok")}},
            {"kind": "http", "payload": {"url": format!("http://{}/healthz", server.http)}},
        ]),
    )
    .await;
    for id in ids {
        let job = finished(&api, id).await;
        assert_eq!(
            (job["state"].as_str(), job["attempt"].as_u64()),
            (Some("discarded"), Some(1)),
            "{job}"
        );
        let error = last_error(&job);
        assert!(
            error.contains("--egress-allow")
                && (error.contains("loopback") || error.contains("link-local")),
            "{error}"
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused job reached the target"
    );
}

/// A permitted server redirects to one that is not: the redirect is not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_job_is_not_redirected_to_a_refused_address() {
    let (server, api) = server().await;
    let (secret_url, secret_seen, _secret_stop) = target().await;
    let secret = format!("{}/ok", secret_url.replace("127.0.0.1", "127.0.0.2"));
    // The redirecting server listens on 127.0.0.2's neighbour, which the operator opened.
    let handler = handler_fn(move |_request: Request| {
        let secret = secret.clone();
        async move { Response::text(StatusCode::FOUND, "").with_header("location", secret) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.3:0").await.unwrap();
    let redirector = format!("http://{}/", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(Server::new(handler, ServerConfig::default()).serve(listener, stop.clone()));
    let _stop = stop.drop_guard();
    let _worker = worker(&server, &["--egress-allow", "127.0.0.3"]);
    let ids = enqueue(
        &api,
        json!([{"kind": "http", "payload": {"url": redirector}}]),
    )
    .await;
    let job = finished(&api, ids[0]).await;
    assert_eq!(job["state"], "discarded", "{job}");
    assert!(last_error(&job).contains("127.0.0.2"), "{job}");
    assert!(secret_seen.lock().unwrap().is_empty());
}

/// With `--webhook-secret`, every request carries Standard Webhooks header fields that
/// check out against the secret; a job cannot bring its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_jobs_are_signed_with_the_operators_secret() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    type Headers = Arc<Mutex<Vec<(HashMap<String, String>, String)>>>;
    let received: Headers = Arc::default();
    let record = Arc::clone(&received);
    let handler = handler_fn(move |mut request: Request| {
        let record = Arc::clone(&record);
        async move {
            let headers = request
                .headers()
                .map(|(name, value)| {
                    (
                        name.to_ascii_lowercase(),
                        String::from_utf8_lossy(value).into_owned(),
                    )
                })
                .collect();
            let body = request
                .body_mut()
                .collect(1 << 20)
                .await
                .unwrap_or_default();
            record
                .lock()
                .unwrap()
                .push((headers, String::from_utf8_lossy(&body).into_owned()));
            Response::text(StatusCode::OK, "thanks")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(Server::new(handler, ServerConfig::default()).serve(listener, stop.clone()));
    let _stop = stop.drop_guard();
    let (server, api) = server().await;
    let _worker = worker(
        &server,
        &["--egress-allow", "127.0.0.1", "--webhook-secret", SECRET],
    );
    let ids = enqueue(
        &api,
        json!([
            {"kind": "http", "payload": {"url": url, "body": {"user": 42}}},
            {"kind": "http", "payload": {"url": url, "body": "x", "headers": {"webhook-signature": "v1,forged"}}},
        ]),
    )
    .await;
    let signed = finished(&api, ids[0]).await;
    assert_eq!(signed["state"], "completed", "{signed}");
    let forged = finished(&api, ids[1]).await;
    assert_eq!(forged["state"], "discarded", "{forged}");
    assert!(
        last_error(&forged).contains("webhook-signature"),
        "{forged}"
    );

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "the forged job sent nothing");
    let (headers, body) = &received[0];
    let id = &headers["webhook-id"];
    assert_eq!(id, &format!("weir_job_{}", ids[0]));
    let timestamp: u64 = headers["webhook-timestamp"].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(timestamp.abs_diff(now) < 600, "a timestamp of now");
    // Checked as a receiver checks (the signer itself is checked against the
    // specification's test vector in weir-client).
    let expected =
        weir_client::WebhookSigner::new(SECRET)
            .unwrap()
            .signature(id, timestamp, body.as_bytes());
    assert_eq!(headers["webhook-signature"], expected);
}

/// A `crawl` job runs only on a worker that names the kind, and asks no more than the
/// worker allows: reach, concurrency, robots.txt and an output file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_jobs_stay_within_the_operators_limits() {
    let (site, _site_guard) = static_site(10, 1).await;
    let (server, api) = server().await;
    let start = site.start_url();
    let ids = enqueue(
        &api,
        json!([
            {"kind": "crawl", "payload": {"urls": [start]}},
            {"kind": "crawl", "payload": {"urls": ["https://example.com/"], "concurrency": 100000}},
            {"kind": "crawl", "payload": {"urls": ["https://example.com/"], "per_host": 100000}},
            {"kind": "crawl", "payload": {"urls": ["https://example.com/"], "robots": false}},
            {"kind": "crawl", "payload": {"urls": ["https://example.com/"], "out": "/etc/cron.d/x"}},
        ]),
    )
    .await;
    // A worker with the default kinds leaves crawl jobs alone.
    let default_worker = worker(&server, &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let untouched: Value = api
        .call(&format!("/v1/jobs/{}", ids[0]), None, DEADLINE)
        .await
        .unwrap();
    assert_eq!(
        (untouched["state"].as_str(), untouched["attempt"].as_u64()),
        (Some("available"), Some(0)),
        "{untouched}"
    );
    drop(default_worker);

    let _worker = worker(&server, &["--kinds", "crawl"]);
    let expected = [
        "loopback",
        "--crawl-max-concurrency",
        "--crawl-max-per-host",
        "--crawl-allow-no-robots",
        "--crawl-out",
    ];
    for (id, expected) in ids.iter().zip(expected) {
        let job = finished(&api, *id).await;
        assert_eq!(job["state"], "discarded", "{job}");
        assert!(last_error(&job).contains(expected), "{expected}: {job}");
    }
    assert!(
        support::demo_log(&site.base(0)).await.is_empty(),
        "the refused crawl fetched nothing"
    );
}

/// A crawl job's `out` is created new in `--crawl-out`; a second job naming the same file
/// is discarded rather than overwrite it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_writes_its_out_file_only_new_in_the_operators_directory() {
    let (site, _site_guard) = static_site(10, 1).await;
    let (server, api) = server().await;
    let out_dir = support::temp_dir("crawl-out");
    let out_text = out_dir.display().to_string();
    let _worker = worker(
        &server,
        &[
            "--kinds",
            "crawl",
            "--egress-allow",
            "127.0.0.0/8",
            "--crawl-out",
            &out_text,
        ],
    );
    let crawl =
        json!({"kind": "crawl", "payload": {"urls": [site.start_url()], "out": "pages.jsonl"}});
    let first = enqueue(&api, json!([crawl])).await;
    let job = finished(&api, first[0]).await;
    assert_eq!(job["state"], "completed", "{job}");
    let written = std::fs::read_to_string(out_dir.join("pages.jsonl")).unwrap();
    assert!(written.lines().count() > 10, "{written}");
    let again = enqueue(&api, json!([crawl])).await;
    let job = finished(&api, again[0]).await;
    assert_eq!(job["state"], "discarded", "{job}");
    assert!(last_error(&job).contains("already exists"), "{job}");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("pages.jsonl")).unwrap(),
        written
    );
    std::fs::remove_dir_all(&out_dir).unwrap();
}

/// The worker's `--http-rate` holds for the target host whatever the worker's concurrency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_jobs_keep_the_per_host_rate() {
    let (server, api) = server().await;
    let (url, seen, _stop) = target().await;
    let host = url.trim_start_matches("http://").to_owned();
    let rate = format!("{host}=10/s");
    let _worker = worker(
        &server,
        &[
            "--concurrency",
            "16",
            "--http-rate",
            &rate,
            "--egress-allow",
            "127.0.0.1",
        ],
    );
    let jobs: Vec<Value> = (0..12)
        .map(|n| json!({"kind": "http", "payload": {"url": format!("{url}/ok?n={n}")}}))
        .collect();
    let ids = enqueue(&api, Value::Array(jobs)).await;
    for id in ids {
        assert_eq!(finished(&api, id).await["state"], "completed");
    }
    let mut arrivals: Vec<Instant> = seen.lock().unwrap().iter().map(|entry| entry.4).collect();
    arrivals.sort();
    // 10/s: the limiter sends one request every 100 ms. On a loaded machine a request can
    // reach the target late (a CI run saw one 67 ms late, making a 33 ms gap to the next),
    // never early: so any three arrivals span at least 100 ms (less a few ms of loopback
    // trip), which 16 unlimited requests at once would not.
    for three in arrivals.windows(3) {
        let span = three[2] - three[0];
        assert!(
            span >= Duration::from_millis(95),
            "three requests within {span:?}: {arrivals:?}"
        );
    }
    let whole = arrivals[arrivals.len() - 1] - arrivals[0];
    assert!(
        whole >= Duration::from_millis(100 * (arrivals.len() as u64 - 2) - 5),
        "{} requests within {whole:?}",
        arrivals.len()
    );
}

/// A split crawl: one job per host, each host crawled once, totals in the coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_crawl_gives_each_host_to_one_job() {
    let (site, _site_guard) = static_site(60, 3).await;
    let (server, api) = server().await;
    let _worker = worker(
        &server,
        &[
            "--concurrency",
            "4",
            "--kinds",
            "crawl",
            "--egress-allow",
            "127.0.0.0/8",
        ],
    );
    let ids = enqueue(
        &api,
        json!([{"kind": "crawl", "payload": {"urls": [site.start_url()], "split": true}}]),
    )
    .await;
    let coordinator = finished(&api, ids[0]).await;
    assert_eq!(coordinator["state"], "completed", "{coordinator}");
    let result = &coordinator["result"];
    assert_eq!(result["hosts"].as_array().unwrap().len(), 3, "{result}");
    // 60 pages and 3 home pages, each fetched once.
    assert_eq!(result["summary"]["pages"], 63, "{result}");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (url, _) in support::demo_log(&site.base(0)).await {
        *counts.entry(url).or_default() += 1;
    }
    assert!(
        counts.values().all(|count| *count == 1),
        "a URL fetched twice: {counts:?}"
    );
    // Each host's job ran with only its host.
    for host in result["hosts"].as_array().unwrap() {
        let child = finished(&api, host["job"].as_i64().unwrap()).await;
        assert_eq!(child["state"], "completed");
        assert_eq!(child["result"]["summary"]["hosts"], 1, "{child}");
    }
}
