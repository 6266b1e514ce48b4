//! `weir jobs …`: submits, inspects, cancels and retries jobs over the HTTP API.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use serde_json::value::RawValue;
use weir_jobs::client::{Client, ClientError};

use super::server::{client, runtime, server_args, usage};
use crate::config::values::parse_duration;

/// The `weir jobs` subcommand: `submit`, `get`, `list`, `cancel` and `retry`, with the
/// server flags every client command takes.
pub(super) fn command() -> Command {
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

/// Runs `weir jobs …`.
pub(super) fn run(matches: &ArgMatches) -> ExitCode {
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
