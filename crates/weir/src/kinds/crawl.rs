//! Job kind `crawl`: the crawler as a job, with progress on the job's topic.
//!
//! Payload: `{"urls": […], "depth": 3, "max_pages": 1000, "max_time": "10m",
//! "concurrency": 32, "per_host": 4, "delay": "1s", "include": […], "exclude": […],
//! "same_site": true, "robots": true, "out": "/path/pages.jsonl", "split": false}`.
//! Records go to `out`, a file the job creates in the worker's crawl output directory
//! (`--crawl-out`), when given; the result is the summary.
//!
//! What a job may ask is bounded by the worker's operator ([`CrawlLimits`]): only public
//! addresses unless `--egress-allow` opens more, concurrency and per-host concurrency up
//! to the worker's maximums, a delay no shorter than its minimum, and robots.txt ignored
//! only where `--crawl-allow-no-robots` says so. A job asking more is discarded with a
//! message naming the setting.
//!
//! With `"split": true` the job becomes a coordinator: it gives each host its own `crawl`
//! job (one job owns one host, so the host's delay and concurrency hold however many
//! workers run), waits for them, and gives the hosts they report to new jobs, until no
//! new host appears. The coordinator alone decides which hosts exist, so no host is ever
//! crawled twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use url::Url;
use weir_client::Egress;
use weir_crawl::{CrawlConfig, Crawler, JsonLines, Output, Progress, Record, Summary};
use weir_files::OutDir;
use weir_jobs::worker::{HandlerResult, JobContext, JobFailure};

use crate::config::values::parse_duration;

use super::job_io;

/// Hosts one split crawl gives out.
const MAX_SPLIT_HOSTS: usize = weir_crawl::MAX_OTHER_HOSTS;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CrawlJob {
    urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_pages: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_pages_per_host: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    concurrency: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    per_host: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delay: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    exclude: Vec<String>,
    #[serde(default)]
    same_site: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    robots: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    out: Option<String>,
    #[serde(default)]
    split: bool,
    /// Set by a coordinator on the jobs it gives out: crawl only these hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<String>,
}

const SHAPE: &str = r#"{"urls": ["https://…"], "depth": N, "max_pages": N, "split": false, …}"#;

/// What the worker's operator lets `crawl` jobs do.
#[derive(Debug)]
pub(crate) struct CrawlLimits {
    /// Where requests may go (`--egress-allow`, shared with `http` jobs).
    pub(crate) egress: Egress,
    /// Most requests in flight a job may ask for (`--crawl-max-concurrency`).
    pub(crate) max_concurrency: usize,
    /// Most requests in flight per host a job may ask for (`--crawl-max-per-host`).
    pub(crate) max_per_host: usize,
    /// Shortest delay between requests to one host a job may ask for (`--crawl-min-delay`);
    /// also the delay of a job that names none.
    pub(crate) min_delay: Duration,
    /// Whether a job may ignore robots.txt (`--crawl-allow-no-robots`).
    pub(crate) allow_no_robots: bool,
    /// Where a job's `out` file is created (`--crawl-out`, opened at start); without it
    /// `out` is refused.
    pub(crate) out_dir: Option<OutDir>,
}

impl CrawlLimits {
    /// The `weir worker` flags these come from (`--egress-allow` is the worker's own). The
    /// maximums are the crawler's own defaults (`CrawlConfig::default`, checked by a test).
    pub(crate) fn args() -> Vec<Arg> {
        vec![
            Arg::new("crawl-max-concurrency").long("crawl-max-concurrency").value_name("N").default_value("32").help("Most requests in flight a `crawl` job may ask for"),
            Arg::new("crawl-max-per-host").long("crawl-max-per-host").value_name("N").default_value("4").help("Most requests in flight per host a `crawl` job may ask for"),
            Arg::new("crawl-min-delay").long("crawl-min-delay").value_name("DURATION").default_value("0s").help("Shortest delay between requests to one host a `crawl` job may ask for (also the delay of a job that names none)"),
            Arg::new("crawl-allow-no-robots").long("crawl-allow-no-robots").action(ArgAction::SetTrue).help("Let `crawl` jobs ignore robots.txt (\"robots\": false)"),
            Arg::new("crawl-out").long("crawl-out").value_name("DIR").help("Directory where `crawl` jobs create their `out` files [default: none; `out` is refused]"),
        ]
    }

    /// The limits the operator gave, with `egress` for where requests may go.
    pub(crate) fn from_matches(
        matches: &ArgMatches,
        egress: Egress,
    ) -> Result<CrawlLimits, String> {
        let at_least_one = |name: &str| {
            let text = matches.get_one::<String>(name).expect("has a default");
            match text.parse::<usize>() {
                Ok(n @ 1..) => Ok(n),
                _ => Err(format!("--{name} `{text}`: expected a whole number ≥ 1")),
            }
        };
        let delay = matches
            .get_one::<String>("crawl-min-delay")
            .expect("has a default");
        Ok(CrawlLimits {
            egress,
            max_concurrency: at_least_one("crawl-max-concurrency")?,
            max_per_host: at_least_one("crawl-max-per-host")?,
            min_delay: parse_duration(delay)
                .map_err(|allowed| format!("--crawl-min-delay `{delay}`: expected {allowed}"))?,
            allow_no_robots: matches.get_flag("crawl-allow-no-robots"),
            out_dir: matches
                .get_one::<String>("crawl-out")
                .map(|dir| OutDir::open(Path::new(dir)))
                .transpose()
                .map_err(|error| format!("--crawl-out {error}"))?,
        })
    }
}

pub(crate) async fn run(
    jobs: Arc<weir_jobs::client::Client>,
    limits: Arc<CrawlLimits>,
    ctx: JobContext,
) -> HandlerResult {
    let job: CrawlJob = job_io::payload(&ctx, SHAPE)?;
    if job.split {
        coordinate(&jobs, &limits, &ctx, job).await
    } else {
        crawl(&limits, &ctx, job).await
    }
}

fn config(job: &CrawlJob, limits: &CrawlLimits) -> Result<CrawlConfig, JobFailure> {
    let fatal = JobFailure::fatal;
    let mut config = CrawlConfig {
        egress: limits.egress.clone(),
        ..CrawlConfig::default()
    };
    for text in &job.urls {
        let url = Url::parse(text).map_err(|error| fatal(format!("url `{text}`: {error}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fatal(format!("url `{text}`: only http and https")));
        }
        config.seeds.push(url);
    }
    if config.seeds.is_empty() {
        return Err(fatal("urls: give at least one URL".into()));
    }
    let duration = |name: &str, text: &Option<String>| {
        text.as_deref()
            .map(|text| {
                parse_duration(text)
                    .map_err(|allowed| fatal(format!("{name} `{text}`: expected {allowed}")))
            })
            .transpose()
    };
    let regexes = |name: &str, texts: &[String]| {
        texts
            .iter()
            .map(|text| {
                regex::Regex::new(text).map_err(|error| fatal(format!("{name} `{text}`: {error}")))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let at_least_one = |name: &str, value: Option<usize>, default: usize| match value {
        Some(0) => Err(fatal(format!("{name}: must be at least 1"))),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    config.max_depth = job.depth;
    config.max_pages = job.max_pages;
    config.max_pages_per_host = job.max_pages_per_host;
    config.max_time = duration("max_time", &job.max_time)?;
    let at_most = |name: &str, value: usize, limit: usize, setting: &str| {
        if value > limit {
            Err(fatal(format!(
                "{name} {value}: this worker allows at most {limit} (weir worker --{setting})"
            )))
        } else {
            Ok(value)
        }
    };
    config.concurrency = at_least_one("concurrency", job.concurrency, config.concurrency)?;
    config.concurrency = at_most(
        "concurrency",
        config.concurrency,
        limits.max_concurrency,
        "crawl-max-concurrency",
    )?;
    config.per_host = at_least_one("per_host", job.per_host, config.per_host)?;
    config.per_host = at_most(
        "per_host",
        config.per_host,
        limits.max_per_host,
        "crawl-max-per-host",
    )?;
    config.delay = duration("delay", &job.delay)?.unwrap_or(limits.min_delay);
    if config.delay < limits.min_delay {
        return Err(fatal(format!(
            "delay {:?}: this worker waits at least {:?} between requests to a host (weir worker --crawl-min-delay)",
            config.delay, limits.min_delay
        )));
    }
    if job.robots == Some(false) && !limits.allow_no_robots {
        return Err(fatal(
            "robots: false: this worker honours robots.txt (weir worker --crawl-allow-no-robots)"
                .into(),
        ));
    }
    if job.out.is_some() && limits.out_dir.is_none() {
        return Err(fatal(
            "out: this worker writes no crawl files (weir worker --crawl-out DIR)".into(),
        ));
    }
    config.include = regexes("include", &job.include)?;
    config.exclude = regexes("exclude", &job.exclude)?;
    config.same_site = job.same_site;
    config.robots = job.robots.unwrap_or(true);
    config.hosts = job.hosts.clone();
    Ok(config)
}

/// Counts records when the job writes no file.
struct Discard;

impl Output for Discard {
    fn record(&mut self, _: &Record) -> std::io::Result<()> {
        Ok(())
    }
    fn summary(&mut self, _: &Summary) -> std::io::Result<()> {
        Ok(())
    }
}

async fn crawl(limits: &CrawlLimits, ctx: &JobContext, job: CrawlJob) -> HandlerResult {
    let config = config(&job, limits)?;
    // A seed whose every address is refused is the job's mistake, not a page's: discard it
    // with the reason rather than report a crawl of nothing.
    for seed in &config.seeds {
        if let Err(refused) = limits.egress.check_seed(seed).await {
            return Err(JobFailure::fatal(format!(
                "url `{seed}`: {refused} (weir worker --egress-allow)"
            )));
        }
    }
    let crawler = Crawler::new(config).map_err(|error| JobFailure::fatal(error.to_string()))?;
    // The out file is created new (never replacing one, never through a link) by the
    // directory weir-files' `files` jobs use, and removed again if this attempt fails, so
    // that the retry can create it.
    let mut created = None;
    let mut output: Box<dyn Output> = match (&job.out, &limits.out_dir) {
        (Some(name), Some(dir)) => {
            let out = dir
                .create(name)
                .map_err(|error| JobFailure::fatal(format!("out: {error}")))?;
            let file = out
                .file
                .try_clone()
                .map_err(|error| JobFailure::retry(format!("out: {error}")))?;
            created = Some(out);
            Box::new(JsonLines(std::io::BufWriter::new(file)))
        }
        _ => Box::new(Discard),
    };
    let reporter = tokio::spawn(report_progress(crawler.progress(), ctx.clone()));
    let finished = crawler.run(output.as_mut(), ctx.cancel.clone(), None).await;
    reporter.abort();
    drop(output);
    let outcome = match finished {
        Err(error) => Err(JobFailure::retry(error.to_string())),
        Ok(_) if ctx.cancel.is_cancelled() => {
            Err(JobFailure::retry("stopped before the crawl ended"))
        }
        Ok(finished) => job_io::result(&json!({
            "summary": finished.summary,
            "out": created.as_ref().map(|out| out.path.display().to_string()),
            "other_hosts": finished.other_hosts.iter().map(Url::as_str).collect::<Vec<_>>(),
        })),
    };
    if let (Err(_), Some(out), Some(dir)) = (&outcome, created, &limits.out_dir) {
        if let Err(error) = dir.remove(out) {
            tracing::warn!(%error, "could not remove the failed crawl's out file");
        }
    }
    outcome
}

/// Progress on the job's topic once a second: the share of known URLs done.
async fn report_progress(progress: Arc<Progress>, ctx: JobContext) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let pages = Progress::get(&progress.pages);
        let waiting = Progress::get(&progress.queued) + Progress::get(&progress.in_flight);
        let percent = if pages + waiting == 0 {
            0.0
        } else {
            pages as f64 * 100.0 / (pages + waiting) as f64
        };
        ctx.progress(
            percent,
            format!(
                "{pages} pages, {waiting} waiting, {} errors",
                Progress::get(&progress.errors)
            ),
        );
    }
}

/// The key a host is owned by, as the crawler spells it.
fn host_of(url: &Url) -> String {
    weir_crawl::normalize::host_key(url)
}

/// A split crawl: one job per host, until no new host turns up.
async fn coordinate(
    jobs: &weir_jobs::client::Client,
    limits: &CrawlLimits,
    ctx: &JobContext,
    job: CrawlJob,
) -> HandlerResult {
    config(&job, limits)?; // the same checks as a plain crawl, before any job is given out
    let timeout = Duration::from_secs(10);
    // host → its job id (None until enqueued)
    let mut owners: BTreeMap<String, Option<i64>> = BTreeMap::new();
    let mut pending: Vec<(String, String)> = Vec::new();
    for text in &job.urls {
        let url = Url::parse(text).map_err(|error| JobFailure::fatal(error.to_string()))?;
        let host = host_of(&url);
        if owners.insert(host.clone(), None).is_none() {
            pending.push((host, text.clone()));
        }
    }
    let mut totals = Summary::default();
    let mut running: Vec<(String, i64)> = Vec::new();
    let mut failed = Vec::new();
    loop {
        for (host, url) in pending.drain(..) {
            let child = CrawlJob {
                urls: vec![url],
                split: false,
                hosts: vec![host.clone()],
                out: job
                    .out
                    .as_ref()
                    .map(|out| format!("{out}.{}", host.replace(':', "_"))),
                ..job.clone()
            };
            let body = json!({
                "queue": ctx.job.queue,
                "kind": "crawl",
                "payload": child,
                "timeout_ms": ctx.job.timeout_ms,
                "unique_key": format!("crawl:{}:{host}", ctx.job.id),
            });
            let created: Value = jobs
                .call("/v1/jobs", Some(body.to_string()), timeout)
                .await
                .map_err(|error| {
                    JobFailure::retry(format!("enqueueing the crawl of {host}: {error}"))
                })?;
            let id = created["id"]
                .as_i64()
                .ok_or_else(|| JobFailure::retry("the server gave no job id"))?;
            owners.insert(host.clone(), Some(id));
            running.push((host, id));
        }
        if running.is_empty() {
            break;
        }
        ctx.progress(
            (owners.len() - running.len()) as f64 * 100.0 / owners.len() as f64,
            format!(
                "{} hosts, {} crawling, {} pages so far",
                owners.len(),
                running.len(),
                totals.pages
            ),
        );
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = ctx.cancel.cancelled() => return Err(JobFailure::retry("stopped while host crawls were running")),
        }
        let mut still = Vec::new();
        for (host, id) in running.drain(..) {
            let child: Value = jobs
                .call(&format!("/v1/jobs/{id}"), None, timeout)
                .await
                .map_err(|error| JobFailure::retry(format!("reading job {id}: {error}")))?;
            match child["state"].as_str() {
                Some("completed") => {
                    add(&mut totals, &child["result"]["summary"]);
                    for other in child["result"]["other_hosts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let Some(url) = other.as_str().and_then(|text| Url::parse(text).ok())
                        else {
                            continue;
                        };
                        let other_host = host_of(&url);
                        if owners.len() < MAX_SPLIT_HOSTS && !owners.contains_key(&other_host) {
                            owners.insert(other_host.clone(), None);
                            pending.push((other_host, url.to_string()));
                        }
                    }
                }
                Some("cancelled" | "discarded") => {
                    failed.push(json!({ "host": host, "job": id, "state": child["state"] }))
                }
                _ => still.push((host, id)),
            }
        }
        running = still;
    }
    job_io::result(&json!({
        "summary": totals,
        "hosts": owners.into_iter().map(|(host, id)| json!({ "host": host, "job": id })).collect::<Vec<_>>(),
        "failed": failed,
    }))
}

/// Adds a child's summary (as JSON) to the totals.
fn add(totals: &mut Summary, child: &Value) {
    if let Ok(child) = serde_json::from_value::<Summary>(child.clone()) {
        totals.add(&child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_maximums_are_the_crawlers_defaults() {
        let defaults = CrawlConfig::default();
        let args = CrawlLimits::args();
        let default_of = |name: &str| {
            let arg = args.iter().find(|arg| arg.get_id() == name).unwrap();
            arg.get_default_values()[0]
                .to_str()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        };
        assert_eq!(default_of("crawl-max-concurrency"), defaults.concurrency);
        assert_eq!(default_of("crawl-max-per-host"), defaults.per_host);
    }
}
