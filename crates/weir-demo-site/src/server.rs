//! Serving the demo site: one listener per host address, all on one port, and a log of
//! every request with its arrival time.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weir_http::{handler_fn, Request, Response, Server, ServerConfig, StatusCode};

use crate::model::{Answer, Site, SiteConfig, MAX_HOSTS};

/// The most pages a demo site serves: sitemaps are rendered whole, one per host.
pub const MAX_PAGES: usize = 1_000_000;

/// `GET` this path on any host for the request log, as JSON lines.
pub const LOG_PATH: &str = "/__demo/log";

/// Entries kept; later requests are counted but not logged (the count is in the log's
/// last line), so a long benchmark cannot grow the server without bound.
const LOG_LIMIT: usize = 1_000_000;

/// Every request the site answered: host, path and arrival time.
#[derive(Debug)]
pub struct RequestLog {
    start: Instant,
    entries: Mutex<Vec<(u8, String, u64)>>,
    dropped: AtomicU64,
}

impl RequestLog {
    fn new() -> RequestLog {
        RequestLog {
            start: Instant::now(),
            entries: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
        }
    }

    fn record(&self, host: usize, path: &str) {
        let micros = self.start.elapsed().as_micros() as u64;
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() < LOG_LIMIT {
            entries.push((host as u8, path.to_owned(), micros));
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn render(&self, site: &Site) -> String {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::with_capacity(entries.len() * 64);
        for (host, path, micros) in entries.iter() {
            let line = serde_json::json!({
                "url": format!("{}{path}", site.base(usize::from(*host))),
                "at_ms": *micros as f64 / 1000.0,
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out.push_str(
            &serde_json::json!({ "not_logged": self.dropped.load(Ordering::Relaxed) }).to_string(),
        );
        out.push('\n');
        out
    }
}

/// Binds every host's address on one port (`config.port`, or a free one when 0) and
/// returns the site with its real port.
pub async fn bind(mut config: SiteConfig) -> std::io::Result<(Site, Vec<TcpListener>)> {
    let hosts = config.hosts.clamp(1, MAX_HOSTS);
    // A free port on 127.0.0.2 may be taken on another address: try a few.
    let mut last_error = None;
    for _ in 0..20 {
        let first = TcpListener::bind(("127.0.0.2", config.port)).await?;
        let port = first.local_addr()?.port();
        let mut listeners = vec![first];
        for host in 1..hosts {
            match TcpListener::bind((format!("127.0.0.{}", host + 2), port)).await {
                Ok(listener) => listeners.push(listener),
                Err(error) => {
                    last_error = Some(error);
                    break;
                }
            }
        }
        if listeners.len() == hosts {
            config.port = port;
            return Ok((Site::new(config), listeners));
        }
        if config.port != 0 {
            break;
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no port free on every host address")))
}

/// Serves `site` on `listeners` (one per host, in order) until `shutdown`.
pub async fn serve(
    site: Site,
    listeners: Vec<TcpListener>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let site = Arc::new(site);
    let log = Arc::new(RequestLog::new());
    let busy_seen = Arc::new(Mutex::new(HashSet::new()));
    let mut servers = tokio::task::JoinSet::new();
    for (host, listener) in listeners.into_iter().enumerate() {
        let (site, log, busy_seen) = (Arc::clone(&site), Arc::clone(&log), Arc::clone(&busy_seen));
        let handler = handler_fn(move |request: Request| {
            let (site, log, busy_seen) =
                (Arc::clone(&site), Arc::clone(&log), Arc::clone(&busy_seen));
            async move { answer(&site, &log, &busy_seen, host, &request).await }
        });
        let config = ServerConfig {
            idle_timeout: Duration::from_secs(30),
            ..ServerConfig::default()
        };
        servers.spawn(Server::new(handler, config).serve(listener, shutdown.clone()));
    }
    while let Some(result) = servers.join_next().await {
        result.map_err(std::io::Error::other)??;
    }
    Ok(())
}

async fn answer(
    site: &Site,
    log: &RequestLog,
    busy_seen: &Mutex<HashSet<String>>,
    host: usize,
    request: &Request,
) -> Response {
    let path = request.path();
    if path == LOG_PATH {
        return Response::text(StatusCode::OK, log.render(site))
            .with_content_type("application/x-ndjson");
    }
    log.record(host, path);
    match site.answer(host, path) {
        Answer::Html(page) => Response::new(StatusCode::OK)
            .with_content_type("text/html; charset=utf-8")
            .with_body(page),
        Answer::Other(content_type, body) => Response::new(StatusCode::OK)
            .with_content_type(content_type)
            .with_body(body),
        Answer::Redirect(location) => {
            Response::new(StatusCode::MOVED_PERMANENTLY).with_header("location", location)
        }
        Answer::Slow(wait, page) => {
            tokio::time::sleep(wait).await;
            Response::new(StatusCode::OK)
                .with_content_type("text/html; charset=utf-8")
                .with_body(page)
        }
        Answer::Busy(retry_after, page) => {
            let first_time = busy_seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(format!("{host}{path}"));
            if first_time {
                Response::text(StatusCode::TOO_MANY_REQUESTS, "slow down\n")
                    .with_header("retry-after", retry_after.to_string())
            } else {
                Response::new(StatusCode::OK)
                    .with_content_type("text/html; charset=utf-8")
                    .with_body(page)
            }
        }
        Answer::NotFound => Response::text(StatusCode::NOT_FOUND, "not found\n"),
    }
}
