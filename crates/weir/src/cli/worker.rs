//! `weir worker`: runs jobs leased from a server over the HTTP API, like any other worker.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use tokio_util::sync::CancellationToken;
use weir_client::Egress;
use weir_jobs::worker::{Registry, Worker, WorkerConfig};

use super::process::shutdown_on_signal;
use super::server::{client, runtime, server_args, usage};
use crate::config::values::parse_duration;
use crate::kinds::KindSettings;
use crate::logging::{self, LogFormat};

/// `weir worker` leases ahead only the jobs its slots should start within this time: a
/// queued job waits about this long at most for a slot another worker might have had
/// free. Far longer than a lease's round trip (a millisecond or two), which is what a
/// queue hides.
const PREFETCH_WITHIN: Duration = Duration::from_millis(100);

/// The `weir worker` subcommand: the server flags every client command takes, its own
/// flags, help and examples.
pub(super) fn command() -> Command {
    server_args(Command::new("worker").about("Run jobs leased from a Weir server (built-in kinds: echo, sleep, http; crawl and files when named)"))
        .after_help(
            "Examples:\n  weir worker                                  # queue `default`, 8 at once, kinds echo, sleep, http\n  weir worker --queues email,reports --concurrency 32 --server http://10.0.0.5:7070\n  weir worker --kinds files --files-root /srv/data --files-out /srv/reports\n  weir worker --kinds http,crawl --egress-allow 10.20.0.0/16 --crawl-out /srv/crawls\n\nOnly jobs of the kinds run here are leased. `http` and `crawl` reach public addresses\nonly unless --egress-allow opens more; `files` reads only beneath --files-root.\n\nCtrl-C or SIGTERM: no new jobs; running ones get --shutdown-timeout to finish,\nthen are released so they run again at once elsewhere.",
        )
        .arg(Arg::new("queues").long("queues").value_name("QUEUE[,QUEUE...]").default_value("default").help("Queues to take jobs from"))
        .arg(Arg::new("concurrency").long("concurrency").value_name("N").default_value("8").help("Jobs run at once (1–10000)"))
        .arg(Arg::new("prefetch").long("prefetch").value_name("N").default_value("100").help("Most jobs leased ahead of the free slots (0–10000): only as many as the slots should start within 100 ms, judged from recent jobs, so short jobs queue here and long ones do not"))
        .arg(Arg::new("name").long("name").value_name("NAME").help("Name shown in leases [default: host-pid]"))
        .arg(Arg::new("shutdown-timeout").long("shutdown-timeout").value_name("DURATION").default_value("30s").help("Time running jobs get to finish at shutdown"))
        .arg(Arg::new("log-level").long("log-level").env("WEIR_LOG").value_name("FILTER").default_value("info").help("Log filter, as for weir serve"))
        .arg(Arg::new("http-rate").long("http-rate").value_name("HOST=RATE").action(ArgAction::Append).help("Rate limit of `http` jobs for one host, e.g. api.example.com=10/s or hooks.example.com:8443=600/m:20 (repeatable)"))
        .arg(Arg::new("http-default-rate").long("http-default-rate").value_name("RATE").help("Rate limit of `http` jobs for every other host [default: none]"))
        .arg(Arg::new("http-per-host").long("http-per-host").value_name("N").default_value("8").help("`http` requests in flight per host"))
        .args(KindSettings::args())
}

/// The client `http` jobs send through, with the worker's per-host limits, reaching only
/// where `egress` permits.
fn http_client(matches: &ArgMatches, egress: Egress) -> Result<weir_client::Client, String> {
    let mut builder = weir_client::Client::builder().egress(egress);
    if let Some(rate) = matches.get_one::<String>("http-default-rate") {
        builder = builder.rate(
            rate.parse()
                .map_err(|error| format!("--http-default-rate `{rate}`: {error}"))?,
        );
    }
    for text in matches
        .get_many::<String>("http-rate")
        .into_iter()
        .flatten()
    {
        let (host, rate) = text.split_once('=').ok_or_else(|| {
            format!("--http-rate `{text}`: expected HOST=RATE, e.g. api.example.com=10/s")
        })?;
        let quota = rate
            .parse()
            .map_err(|error| format!("--http-rate `{text}`: {error}"))?;
        builder = builder.key_rate(host.trim().to_ascii_lowercase(), quota);
    }
    let per_host = matches
        .get_one::<String>("http-per-host")
        .expect("has a default");
    match per_host.parse::<usize>() {
        Ok(n @ 1..) => builder = builder.per_key_concurrency(n),
        _ => {
            return Err(format!(
                "--http-per-host `{per_host}`: expected a whole number ≥ 1"
            ))
        }
    }
    builder.build().map_err(|error| error.to_string())
}

/// Runs `weir worker`.
pub(super) fn run(matches: &ArgMatches) -> ExitCode {
    let (client, jobs_client) = match (client(matches), client(matches)) {
        (Ok(client), Ok(jobs_client)) => (client, jobs_client),
        (Err(error), _) | (_, Err(error)) => return usage(&error),
    };
    let kinds = match KindSettings::from_matches(matches) {
        Ok(kinds) => kinds,
        Err(error) => return usage(&error),
    };
    let http = match http_client(matches, kinds.egress.clone()) {
        Ok(http) => http,
        Err(error) => return usage(&error),
    };
    let concurrency = match matches
        .get_one::<String>("concurrency")
        .map(|n| n.parse::<usize>())
    {
        Some(Ok(n @ 1..=10_000)) => n,
        _ => return usage("--concurrency: a number from 1 to 10000"),
    };
    let prefetch = match matches
        .get_one::<String>("prefetch")
        .map(|n| n.parse::<usize>())
    {
        Some(Ok(n @ 0..=10_000)) => n,
        _ => return usage("--prefetch: a number from 0 to 10000"),
    };
    let shutdown_deadline = match parse_duration(
        matches
            .get_one::<String>("shutdown-timeout")
            .map_or("30s", String::as_str),
    ) {
        Ok(d) => d,
        Err(allowed) => return usage(&format!("--shutdown-timeout: {allowed}")),
    };
    let filter = matches
        .get_one::<String>("log-level")
        .map_or("info", String::as_str);
    if let Err(error) = logging::parse_filter(filter) {
        return usage(&format!("--log-level: {error}"));
    }
    logging::init(LogFormat::Human, filter);
    let queues: Vec<String> = matches
        .get_one::<String>("queues")
        .map(|q| {
            q.split(',')
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let name = matches
        .get_one::<String>("name")
        .cloned()
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
    let config = WorkerConfig {
        name,
        queues,
        concurrency,
        prefetch,
        prefetch_within: Some(PREFETCH_WITHIN),
        shutdown_deadline,
        // Sidekiq's fetch wait: an idle worker stops within 2 s of the signal (it waits
        // for the answer to its lease in flight), for one empty lease every 2 s.
        lease_wait: Duration::from_secs(2),
    };
    runtime().block_on(async move {
        let stop = CancellationToken::new();
        tokio::spawn(shutdown_on_signal(stop.clone()));
        let mut registry = Registry::with_builtins();
        crate::kinds::register(&mut registry, &kinds, http, jobs_client);
        tracing::info!(worker = %config.name, queues = ?config.queues, concurrency, kinds = ?registry.kinds(), egress = %kinds.egress, "worker started");
        // Spawned onto the runtime, not polled by `block_on` on this thread: every job
        // finishing on a runtime thread would otherwise wake this one, and the threads
        // would take turns (the crawler measured that ping-pong: 0.84 s against 0.29 s).
        let worker = Worker::new(client, registry, config);
        let run = tokio::spawn(async move { worker.run(stop).await });
        if let Err(error) = run.await {
            tracing::error!(%error, "the worker loop panicked");
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    })
}
