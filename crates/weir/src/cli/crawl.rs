//! `weir crawl`: the crawler from the command line, with JSONL output, a progress display
//! and resumable stops.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use regex::Regex;
use tokio_util::sync::CancellationToken;
use url::Url;
use weir_crawl::{CrawlConfig, Crawler, JsonLines, Progress, SavedFrontier, StopReason, Summary};

use super::process::{stop_then_exit, EXIT_INTERRUPTED, EXIT_USAGE};
use crate::config::values::{parse_duration, parse_size};

/// The `weir crawl` subcommand: its flags, help and examples.
pub(super) fn command() -> Command {
    let value = |name: &'static str, value_name: &'static str, help: &'static str| {
        Arg::new(name).long(name).value_name(value_name).help(help)
    };
    let flag = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .action(ArgAction::SetTrue)
            .help(help)
    };
    Command::new("crawl")
        .about("Crawl web sites politely and write one JSON line per URL")
        .after_help(
            "robots.txt is honoured (rules, Crawl-delay, sitemaps) unless --no-robots.\n\
             Each output line has url, final_url, status, depth, referrer, content_type, bytes,\n\
             title, links and fetch_ms, or `skipped` (robots, budget, excluded, duplicate, error)\n\
             with a `detail`; the last line is {\"summary\": …}.\n\n\
             Ctrl-C stops taking new URLs; in-flight ones get --drain to finish. When a crawl\n\
             stops before the end (Ctrl-C, --max-time, --max-pages), what is left is saved to\n\
             --frontier (default: the --out file plus .frontier) and `--resume FILE` continues it.\n\n\
             Examples:\n  weir crawl https://example.com/ --same-site --depth 3 --out pages.jsonl\n  weir crawl http://127.0.0.2:7080/ --concurrency 64 --per-host 16 --max-time 1m\n  weir crawl --resume pages.jsonl.frontier --out pages.jsonl",
        )
        .arg(Arg::new("urls").value_name("URL").num_args(0..).help("Start URLs"))
        .arg(value("depth", "N", "Follow links up to N hops from a start URL [default: no limit]"))
        .arg(value("max-pages", "N", "Stop after fetching N pages [default: no limit]"))
        .arg(value("max-pages-per-host", "N", "Fetch at most N pages per host [default: no limit]"))
        .arg(value("max-time", "DURATION", "Stop starting fetches after this long [default: no limit]"))
        .arg(value("concurrency", "N", "Requests in flight in all").default_value("32"))
        .arg(value("per-host", "N", "Requests in flight per host").default_value("4"))
        .arg(value("delay", "DURATION", "Least time between requests to one host (a longer Crawl-delay wins)").default_value("0s"))
        .arg(value("include", "REGEX", "Only URLs matching this (repeatable)").action(ArgAction::Append))
        .arg(value("exclude", "REGEX", "No URL matching this (repeatable)").action(ArgAction::Append))
        .arg(flag("same-site", "Only the start URLs' hosts and their subdomains"))
        .arg(value("out", "FILE", "Write JSON lines here [default: standard output]"))
        .arg(value("resume", "FILE", "Continue a crawl from its saved frontier"))
        .arg(value("frontier", "FILE", "Where to save the frontier if the crawl stops early"))
        .arg(flag("no-robots", "Ignore robots.txt (only for sites you own)"))
        .arg(flag("no-sitemaps", "Do not read the sitemaps robots.txt lists"))
        .arg(value("user-agent", "TEXT", "User-Agent; its product token is matched against robots.txt"))
        .arg(value("max-body", "SIZE", "Bytes read per page; links past it are not seen").default_value("10MiB"))
        .arg(value("timeout", "DURATION", "Time one request may take").default_value("30s"))
        .arg(value("tries", "N", "Tries per URL for 408, 429, 5xx and network errors").default_value("3"))
        .arg(value("max-urls", "N", "URLs remembered for dedupe; past it new URLs are skipped").default_value("5000000"))
        .arg(value("drain", "DURATION", "Time in-flight requests get to finish after a stop").default_value("5s"))
        .arg(value("log-level", "FILTER", "Log filter, on standard error").env("WEIR_LOG").default_value("warn"))
}

/// Runs `weir crawl`.
pub(super) fn run(matches: &ArgMatches) -> ExitCode {
    let (config, settings) = match crawl_config(matches) {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("weir crawl: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let log_level = matches
        .get_one::<String>("log-level")
        .map_or("warn", String::as_str);
    crate::logging::init(crate::logging::LogFormat::Human, log_level);
    let resume = match &settings.resume {
        Some(path) => match SavedFrontier::load(path) {
            Ok(saved) => Some(saved),
            Err(error) => {
                eprintln!("weir crawl: cannot resume from {}: {error}", path.display());
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts");
    runtime.block_on(crawl(config, settings, resume))
}

/// Settings of the command that are not the crawler's.
struct Settings {
    out: Option<PathBuf>,
    resume: Option<PathBuf>,
    frontier: PathBuf,
}

async fn crawl(config: CrawlConfig, settings: Settings, resume: Option<SavedFrontier>) -> ExitCode {
    let crawler = match Crawler::new(config) {
        Ok(crawler) => crawler,
        Err(error) => {
            eprintln!("weir crawl: {error}");
            return ExitCode::FAILURE;
        }
    };
    let sink: Box<dyn Write + Send> = match &settings.out {
        Some(path) => {
            // A resumed crawl adds to the output of the run it continues.
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(settings.resume.is_some())
                .truncate(settings.resume.is_none())
                .open(path);
            match file {
                Ok(file) => Box::new(std::io::BufWriter::with_capacity(64 * 1024, file)),
                Err(error) => {
                    eprintln!("weir crawl: cannot write {}: {error}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut output = JsonLines(sink);
    let stop = CancellationToken::new();
    tokio::spawn(stop_then_exit(stop.clone(), || {
        eprintln!(
            "\nstopping: no new URLs; in-flight requests are finishing (Ctrl-C again to quit now)"
        );
    }));
    let display = tokio::spawn(show_progress(crawler.progress(), stop.clone()));
    // The crawl loop runs as a task on the runtime, next to its fetch tasks: a finished
    // fetch wakes it without a hop to the main thread.
    let crawl = tokio::spawn({
        let stop = stop.clone();
        async move {
            let result = crawler.run(&mut output, stop, resume).await;
            (result, output)
        }
    });
    let (result, _output) = crawl.await.expect("the crawl task does not panic");
    display.abort();
    let _ = display.await;
    let finished = match result {
        Ok(finished) => finished,
        Err(error) => {
            eprintln!("\nweir crawl: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("\n{}", describe(&finished.summary));
    if let Some(frontier) = &finished.frontier {
        match frontier.save(&settings.frontier) {
            Ok(()) => eprintln!(
                "saved {} pending URLs to {}; continue with: weir crawl --resume {}{}",
                frontier.pending(),
                settings.frontier.display(),
                settings.frontier.display(),
                settings
                    .out
                    .as_ref()
                    .map(|out| format!(" --out {}", out.display()))
                    .unwrap_or_default(),
            ),
            Err(error) => {
                eprintln!(
                    "weir crawl: cannot save the frontier to {}: {error}",
                    settings.frontier.display()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    match finished.summary.stopped {
        Some(StopReason::Interrupted) => ExitCode::from(EXIT_INTERRUPTED),
        _ => ExitCode::SUCCESS,
    }
}

/// A progress bar redrawn in place on a terminal; a plain line every 10 s otherwise.
async fn show_progress(progress: Arc<Progress>, stop: CancellationToken) {
    let terminal = std::io::stderr().is_terminal();
    let every = if terminal {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(10)
    };
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let pages = Progress::get(&progress.pages);
        let waiting = Progress::get(&progress.queued) + Progress::get(&progress.in_flight);
        let rate = pages as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let counts = format!(
            "{pages} pages, {waiting} waiting, {} skipped, {} errors, {:.0} pages/s, {} MiB{}",
            Progress::get(&progress.skipped),
            Progress::get(&progress.errors),
            rate,
            Progress::get(&progress.bytes) >> 20,
            if stop.is_cancelled() {
                ", stopping"
            } else {
                ""
            },
        );
        let mut stderr = std::io::stderr().lock();
        if terminal {
            // The share of known URLs done: the total grows as pages reveal links.
            let width = 30;
            let filled = (pages * width).checked_div(pages + waiting).unwrap_or(0) as usize;
            let bar = format!(
                "{}{}",
                "#".repeat(filled),
                "-".repeat(width as usize - filled)
            );
            let _ = write!(stderr, "\r\x1b[2K[{bar}] {counts}");
        } else {
            let _ = writeln!(stderr, "crawl: {counts}");
        }
        let _ = stderr.flush();
    }
}

fn describe(summary: &Summary) -> String {
    let stopped = match summary.stopped {
        Some(StopReason::Done) => "done",
        Some(StopReason::Interrupted) => "interrupted",
        Some(StopReason::MaxTime) => "stopped at --max-time",
        Some(StopReason::MaxPages) => "stopped at --max-pages",
        None => "running",
    };
    format!(
        "crawl {stopped}: {} pages ({} ok, {} redirects) from {} hosts in {:.1} s ({:.0} pages/s), {} MiB; \
         skipped: {} robots, {} budget, {} excluded, {} errors; {} duplicate links; {} pending",
        summary.pages,
        summary.ok,
        summary.redirects,
        summary.hosts,
        summary.elapsed_s,
        summary.pages_per_s,
        summary.bytes >> 20,
        summary.robots_skipped,
        summary.budget_skipped,
        summary.excluded,
        summary.errors,
        summary.duplicates,
        summary.pending,
    )
}

fn crawl_config(matches: &ArgMatches) -> Result<(CrawlConfig, Settings), String> {
    fn number<T>(matches: &ArgMatches, name: &str, least: T) -> Result<Option<T>, String>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let Some(text) = matches.get_one::<String>(name) else {
            return Ok(None);
        };
        match text.parse::<T>() {
            Ok(value) if value >= least => Ok(Some(value)),
            _ => Err(format!(
                "--{name} `{text}`: expected a whole number ≥ {least}"
            )),
        }
    }
    let duration = |name: &str| -> Result<Option<Duration>, String> {
        matches
            .get_one::<String>(name)
            .map(|text| {
                parse_duration(text)
                    .map_err(|allowed| format!("--{name} `{text}`: expected {allowed}"))
            })
            .transpose()
    };
    let regexes = |name: &str| -> Result<Vec<Regex>, String> {
        matches
            .get_many::<String>(name)
            .into_iter()
            .flatten()
            .map(|text| Regex::new(text).map_err(|error| format!("--{name} `{text}`: {error}")))
            .collect()
    };
    let mut seeds = Vec::new();
    for text in matches.get_many::<String>("urls").into_iter().flatten() {
        let url = Url::parse(text).map_err(|error| format!("`{text}` is not a URL: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{text}`: only http and https URLs can be crawled"));
        }
        seeds.push(url);
    }
    let resume = matches.get_one::<String>("resume").map(PathBuf::from);
    if seeds.is_empty() && resume.is_none() {
        return Err("give at least one URL to start from, or --resume FILE".into());
    }
    let max_body = matches
        .get_one::<String>("max-body")
        .expect("has a default");
    let max_body = parse_size(max_body)
        .ok()
        .filter(|size| *size >= 1)
        .ok_or_else(|| {
            format!("--max-body `{max_body}`: expected a size such as 64KiB or 10MiB")
        })?;
    let out = matches.get_one::<String>("out").map(PathBuf::from);
    let frontier = matches
        .get_one::<String>("frontier")
        .map(PathBuf::from)
        .unwrap_or_else(|| match &out {
            Some(out) => PathBuf::from(format!("{}.frontier", out.display())),
            None => PathBuf::from("weir-crawl.frontier"),
        });
    let defaults = CrawlConfig::default();
    let config = CrawlConfig {
        seeds,
        max_depth: number(matches, "depth", 0)?,
        max_pages: number(matches, "max-pages", 1)?,
        max_pages_per_host: number(matches, "max-pages-per-host", 1)?,
        max_time: duration("max-time")?,
        concurrency: number(matches, "concurrency", 1)?.expect("has a default"),
        per_host: number(matches, "per-host", 1)?.expect("has a default"),
        delay: duration("delay")?.expect("has a default"),
        include: regexes("include")?,
        exclude: regexes("exclude")?,
        same_site: matches.get_flag("same-site"),
        hosts: Vec::new(),
        robots: !matches.get_flag("no-robots"),
        sitemaps: !matches.get_flag("no-sitemaps"),
        user_agent: matches
            .get_one::<String>("user-agent")
            .cloned()
            .unwrap_or(defaults.user_agent),
        max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
        max_redirects: defaults.max_redirects,
        timeout: duration("timeout")?.expect("has a default"),
        max_tries: number(matches, "tries", 1)?.expect("has a default"),
        max_urls: number(matches, "max-urls", 1)?.expect("has a default"),
        drain: duration("drain")?.expect("has a default"),
        // The operator's own command on seeds they chose, like wget or curl: every address.
        // A `crawl` job, whose seeds come from a job submitter, reaches only public ones.
        egress: weir_client::Egress::any(),
    };
    Ok((
        config,
        Settings {
            out,
            resume,
            frontier,
        },
    ))
}
