//! The client commands: `weir worker` runs jobs, `weir jobs …` submits and inspects them.
//! Both talk to a server over the HTTP API, like any other client.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use weir_jobs::client::{Client, ClientError};
use weir_jobs::worker::{Registry, Worker, WorkerConfig};

use crate::cli::EXIT_USAGE;
use crate::config::values::parse_duration;
use crate::config::LogFormat;

/// `weir worker` leases ahead only the jobs its slots should start within this time: a
/// queued job waits about this long at most for a slot another worker might have had
/// free. Far longer than a lease's round trip (a millisecond or two), which is what a
/// queue hides.
const PREFETCH_WITHIN: Duration = Duration::from_millis(100);

fn server_args(command: Command) -> Command {
    command
        .arg(
            Arg::new("server")
                .long("server")
                .env("WEIR_SERVER")
                .value_name("URL[,URL...]")
                .default_value("http://127.0.0.1:7070")
                .help("Weir server(s); several nodes of one cluster are tried in turn")
                .global(true),
        )
        .arg(
            Arg::new("token")
                .long("token")
                .env("WEIR_TOKEN")
                .hide_env_values(true)
                .value_name("TOKEN")
                .help("Access token (scope `work` for a worker, `enqueue` for `weir jobs`)")
                .global(true),
        )
}

/// `weir worker`.
pub(crate) fn worker_command() -> Command {
    server_args(Command::new("worker").about("Run jobs leased from a Weir server (built-in kinds: echo, sleep, http, crawl, files)"))
        .after_help(
            "Examples:\n  weir worker                                  # queue `default`, 8 at once\n  weir worker --queues email,reports --concurrency 32 --server http://10.0.0.5:7070\n\nCtrl-C or SIGTERM: no new jobs; running ones get --shutdown-timeout to finish,\nthen are released so they run again at once elsewhere.",
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
}

/// The client `http` jobs send through, with the worker's per-host limits.
fn http_client(matches: &ArgMatches) -> Result<weir_client::Client, String> {
    let mut builder = weir_client::Client::builder();
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

/// `weir jobs`.
pub(crate) fn jobs_command() -> Command {
    let id = || {
        Arg::new("id")
            .required(true)
            .value_name("ID")
            .help("Job id")
    };
    server_args(
        Command::new("jobs").about("Submit, inspect, cancel and retry jobs on a Weir server"),
    )
    .subcommand_required(true)
    .subcommand(
        Command::new("submit")
            .about("Enqueue a job and print it")
            .arg(Arg::new("kind").required(true).value_name("KIND"))
            .arg(Arg::new("payload").value_name("JSON").default_value("{}"))
            .arg(
                Arg::new("queue")
                    .long("queue")
                    .value_name("QUEUE")
                    .default_value("default"),
            )
            .arg(
                Arg::new("priority")
                    .long("priority")
                    .value_name("N")
                    .allow_negative_numbers(true)
                    .help("Smaller runs first [default: 0]"),
            )
            .arg(
                Arg::new("delay")
                    .long("delay")
                    .value_name("DURATION")
                    .help("Run no sooner than this from now"),
            )
            .arg(
                Arg::new("max-attempts")
                    .long("max-attempts")
                    .value_name("N"),
            )
            .arg(
                Arg::new("timeout")
                    .long("timeout")
                    .value_name("DURATION")
                    .help("Time one attempt may take"),
            )
            .arg(
                Arg::new("unique-key")
                    .long("unique-key")
                    .value_name("KEY")
                    .help("Return the unfinished job with this key instead of adding one"),
            )
            .arg(
                Arg::new("wait")
                    .long("wait")
                    .action(ArgAction::SetTrue)
                    .help("Wait until the job ends; exit 0 only if it completed"),
            ),
    )
    .subcommand(Command::new("get").about("Print a job").arg(id()))
    .subcommand(
        Command::new("list")
            .about("List jobs, newest first")
            .arg(Arg::new("queue").long("queue").value_name("QUEUE"))
            .arg(Arg::new("kind").long("kind").value_name("KIND"))
            .arg(Arg::new("state").long("state").value_name("STATE"))
            .arg(
                Arg::new("limit")
                    .long("limit")
                    .value_name("N")
                    .default_value("20"),
            )
            .arg(
                Arg::new("json")
                    .long("json")
                    .action(ArgAction::SetTrue)
                    .help("Print JSON instead of a table"),
            ),
    )
    .subcommand(Command::new("cancel").about("Cancel a job").arg(id()))
    .subcommand(
        Command::new("retry")
            .about("Run a finished or waiting job again now")
            .arg(id()),
    )
}

fn client(matches: &ArgMatches) -> Result<Client, String> {
    let servers: Vec<String> = matches
        .get_one::<String>("server")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Client::new(servers, matches.get_one::<String>("token").cloned()).map_err(|e| e.to_string())
}

fn usage(message: &str) -> ExitCode {
    eprintln!("weir: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts")
}

/// Runs `weir worker`.
pub(crate) fn run_worker(matches: &ArgMatches) -> ExitCode {
    let (client, jobs_client) = match (client(matches), client(matches)) {
        (Ok(client), Ok(jobs_client)) => (client, jobs_client),
        (Err(error), _) | (_, Err(error)) => return usage(&error),
    };
    let http = match http_client(matches) {
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
    if let Err(error) = crate::logging::parse_filter(filter) {
        return usage(&format!("--log-level: {error}"));
    }
    crate::logging::init(LogFormat::Human, filter);
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
        tokio::spawn(crate::cli::shutdown_on_signal(stop.clone()));
        let mut registry = Registry::with_builtins();
        crate::kinds::register(&mut registry, http, jobs_client);
        tracing::info!(worker = %config.name, queues = ?config.queues, concurrency, kinds = ?registry.kinds(), "worker started");
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

/// Runs `weir jobs …`.
pub(crate) fn run_jobs(matches: &ArgMatches) -> ExitCode {
    let client = match client(matches) {
        Ok(client) => client,
        Err(error) => return usage(&error),
    };
    let outcome = runtime().block_on(async move {
        match matches.subcommand() {
            Some(("submit", args)) => submit(&client, args).await,
            Some(("get", args)) => {
                print_call(&client, &format!("/v1/jobs/{}", id(args)?), None).await
            }
            Some(("cancel", args)) => {
                print_call(
                    &client,
                    &format!("/v1/jobs/{}/cancel", id(args)?),
                    Some("{}".into()),
                )
                .await
            }
            Some(("retry", args)) => {
                print_call(
                    &client,
                    &format!("/v1/jobs/{}/retry", id(args)?),
                    Some("{}".into()),
                )
                .await
            }
            Some(("list", args)) => list(&client, args).await,
            _ => Err(Failure::Usage(
                "a subcommand: submit, get, list, cancel, retry".into(),
            )),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(Failure::Usage(message)) => usage(&message),
        Err(Failure::Client(error)) => {
            eprintln!("weir: {error}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        Failure::Client(error)
    }
}

fn id(args: &ArgMatches) -> Result<i64, Failure> {
    let text = args.get_one::<String>("id").map_or("", String::as_str);
    text.parse()
        .map_err(|_| Failure::Usage(format!("ID: `{text}` is not a job id (a number)")))
}

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

async fn print_call(
    client: &Client,
    path: &str,
    body: Option<String>,
) -> Result<ExitCode, Failure> {
    let job: serde_json::Value = client.call(path, body, CALL_TIMEOUT).await?;
    println!("{}", serde_json::to_string_pretty(&job).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

async fn submit(client: &Client, args: &ArgMatches) -> Result<ExitCode, Failure> {
    let text = |name: &str| args.get_one::<String>(name).cloned();
    let payload = text("payload").unwrap_or_else(|| "{}".into());
    let payload = RawValue::from_string(payload)
        .map_err(|e| Failure::Usage(format!("JSON: the payload is not JSON: {e}")))?;
    let mut body = serde_json::json!({
        "kind": text("kind"),
        "queue": text("queue"),
        "payload": payload,
    });
    let number = |name: &str| -> Result<Option<i64>, Failure> {
        text(name)
            .map(|n| {
                n.parse::<i64>()
                    .map_err(|_| Failure::Usage(format!("--{name}: a whole number")))
            })
            .transpose()
    };
    let millis = |name: &str| -> Result<Option<u64>, Failure> {
        text(name)
            .map(|d| {
                parse_duration(&d)
                    .map(|d| d.as_millis() as u64)
                    .map_err(|a| Failure::Usage(format!("--{name}: {a}")))
            })
            .transpose()
    };
    if let Some(priority) = number("priority")? {
        body["priority"] = priority.into();
    }
    if let Some(attempts) = number("max-attempts")? {
        body["max_attempts"] = attempts.into();
    }
    if let Some(delay) = millis("delay")? {
        body["delay_ms"] = delay.into();
    }
    if let Some(timeout) = millis("timeout")? {
        body["timeout_ms"] = timeout.into();
    }
    if let Some(key) = text("unique-key") {
        body["unique_key"] = key.into();
    }
    let job: serde_json::Value = client
        .call("/v1/jobs", Some(body.to_string()), CALL_TIMEOUT)
        .await?;
    if !args.get_flag("wait") {
        println!("{}", serde_json::to_string_pretty(&job).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let path = format!("/v1/jobs/{}", job["id"]);
    let mut pause = Duration::from_millis(50);
    loop {
        let job: serde_json::Value = client.call(&path, None, CALL_TIMEOUT).await?;
        let state = job["state"].as_str().unwrap_or_default();
        if matches!(state, "completed" | "cancelled" | "discarded") {
            println!("{}", serde_json::to_string_pretty(&job).unwrap_or_default());
            return Ok(if state == "completed" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

async fn list(client: &Client, args: &ArgMatches) -> Result<ExitCode, Failure> {
    let mut query = Vec::new();
    for name in ["queue", "kind", "state", "limit"] {
        if let Some(value) = args.get_one::<String>(name) {
            query.push(format!("{name}={}", percent_encode(value)));
        }
    }
    let page: serde_json::Value = client
        .call(&format!("/v1/jobs?{}", query.join("&")), None, CALL_TIMEOUT)
        .await?;
    if args.get_flag("json") {
        println!(
            "{}",
            serde_json::to_string_pretty(&page).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>8}  {:<12} {:<12} {:<10} {:>7}  UPDATED",
        "ID", "QUEUE", "KIND", "STATE", "ATTEMPT"
    );
    for job in page["jobs"].as_array().into_iter().flatten() {
        println!(
            "{:>8}  {:<12} {:<12} {:<10} {:>3}/{:<3}  {}",
            job["id"].as_i64().unwrap_or_default(),
            job["queue"].as_str().unwrap_or_default(),
            job["kind"].as_str().unwrap_or_default(),
            job["state"].as_str().unwrap_or_default(),
            job["attempt"],
            job["max_attempts"],
            job["updated_at"].as_str().unwrap_or_default(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Query values are names and states; anything else is escaped.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
