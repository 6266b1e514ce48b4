//! Serving the demo site: one listener per host address, all on one port, and a log of
//! every request with its arrival time.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Arg, ArgMatches, Command};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weir_http::{handler_fn, Request, Response, Server, ServerConfig, StatusCode};

use super::model::{Answer, Profile, Site, SiteConfig, MAX_HOSTS};
use crate::config::values::parse_duration;

/// The most pages a demo site serves: sitemaps are rendered whole, one per host.
const MAX_PAGES: usize = 1_000_000;

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

/// `weir demo-site`.
pub(crate) fn command() -> Command {
    Command::new("demo-site")
        .about("Serve a synthetic multi-host site on loopback, for crawler tests, demos and benchmarks")
        .after_help(
            "Hosts are 127.0.0.2, 127.0.0.3, … on one port. The site is the same for the same seed.\n\
             Prints each host's base URL, one per line, then serves until Ctrl-C.\n\
             Every request is logged: GET /__demo/log on any host returns the log as JSON lines.\n\n\
             Examples:\n  weir demo-site                                   # 1,000 pages on 5 hosts, port 7080\n  weir demo-site --pages 5000 --profile static --port 0\n  weir crawl http://127.0.0.2:7080/ --out pages.jsonl",
        )
        .arg(Arg::new("pages").long("pages").value_name("N").default_value("1000").help("Pages across all hosts (at most 1,000,000)"))
        .arg(Arg::new("hosts").long("hosts").value_name("N").default_value("5").help("Host addresses, 1–8"))
        .arg(Arg::new("port").long("port").value_name("PORT").default_value("7080").help("Port on every host (0: any free one)"))
        .arg(Arg::new("seed").long("seed").value_name("N").default_value("1").help("Seed of the link graph"))
        .arg(Arg::new("extra-links").long("extra-links").value_name("N").default_value("4").help("Links per page beyond the tree"))
        .arg(Arg::new("crawl-delay").long("crawl-delay").value_name("DURATION").default_value("0s").help("Crawl-delay announced in robots.txt"))
        .arg(
            Arg::new("profile")
                .long("profile")
                .value_name("PROFILE")
                .value_parser(["full", "static"])
                .default_value("full")
                .help("full: redirects, slow pages, 404s, 429s, a file and a calendar trap; static: pages only"),
        )
}

/// Runs `weir demo-site`.
pub fn run(matches: &ArgMatches) -> ExitCode {
    let config = match site_config(matches) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("weir demo-site: {error}");
            return ExitCode::from(crate::cli::EXIT_USAGE);
        }
    };
    crate::logging::init(crate::config::LogFormat::Human, "warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    runtime.block_on(async move {
        let (site, listeners) = match bind(config).await {
            Ok(bound) => bound,
            Err(error) => {
                eprintln!("weir demo-site: cannot listen on 127.0.0.2…: {error}");
                return ExitCode::FAILURE;
            }
        };
        for host in 0..site.config().hosts {
            println!("{}/", site.base(host));
        }
        let shutdown = CancellationToken::new();
        tokio::spawn(crate::cli::shutdown_on_signal(shutdown.clone()));
        match serve(site, listeners, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("weir demo-site: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

fn site_config(matches: &ArgMatches) -> Result<SiteConfig, String> {
    fn number<T: std::str::FromStr>(
        matches: &ArgMatches,
        name: &str,
        allowed: &str,
    ) -> Result<T, String> {
        let text = matches.get_one::<String>(name).expect("has a default");
        text.parse()
            .map_err(|_| format!("--{name} `{text}`: expected {allowed}"))
    }
    let hosts: usize = number(matches, "hosts", "a number from 1 to 8")?;
    if !(1..=MAX_HOSTS).contains(&hosts) {
        return Err(format!("--hosts `{hosts}`: expected a number from 1 to 8"));
    }
    let pages: usize = number(matches, "pages", "a whole number")?;
    if pages > MAX_PAGES {
        return Err(format!(
            "--pages `{pages}`: at most {MAX_PAGES} (each host's sitemap lists all its pages in one file)"
        ));
    }
    if pages < hosts {
        return Err(format!(
            "--pages `{pages}`: expected at least one page per host ({hosts})"
        ));
    }
    let delay = matches
        .get_one::<String>("crawl-delay")
        .expect("has a default");
    Ok(SiteConfig {
        pages,
        hosts,
        port: number(matches, "port", "a port number (0 for any)")?,
        seed: number(matches, "seed", "a whole number")?,
        extra_links: number(matches, "extra-links", "a whole number")?,
        crawl_delay: parse_duration(delay)
            .map_err(|error| format!("--crawl-delay `{delay}`: expected {error}"))?,
        profile: match matches.get_one::<String>("profile").map(String::as_str) {
            Some("static") => Profile::Static,
            _ => Profile::Full,
        },
    })
}
