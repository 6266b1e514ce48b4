//! `weir serve`: its flags (one per setting), the layered configuration, the runtime.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};
use tokio_util::sync::CancellationToken;

use super::process::{shutdown_on_signal, EXIT_USAGE};
use crate::config::{ConfigError, ConfigFile, Layers, ServeConfig, SETTINGS};

/// Tasks a worker runs between two looks at the sockets (tokio's default is 61). A
/// publish to a thousand subscribers wakes a thousand connection tasks, and every write
/// they make comes back as a socket event; looking at the sockets every 61 tasks made the
/// worker spend its time collecting those events, one `epoll_wait` per 61 writes. With 512,
/// 2,000 messages/s to 1,000 subscribers on one core went from a p99 of 42–57 ms to 17–25
/// ms (Redis: 18–26 ms), HTTP requests/s and p99 did not move, and a burst's deliveries/s
/// fell from 10.1 M to 8.5 M (writes blocked on full sockets are woken a little later).
/// A worker with nothing else to run looks at once whatever this is. docs/benchmarks.md.
const EVENT_INTERVAL: u32 = 512;

const SERVE_HELP: &str = "\
Every setting can also come from a WEIR_* environment variable or from weir.toml
(in the working directory, or the file given with --config). A flag wins over the
environment, which wins over the file, which wins over the default.

Examples:
  weir serve                                   # http://127.0.0.1:7070, data in ./weir-data
  weir serve --http-addr 0.0.0.0:8080 --log-format json
  WEIR_DATA_DIR=/var/lib/weir weir serve

Stop with Ctrl-C or SIGTERM: in-flight requests finish (up to --drain-timeout), then
weir exits with code 0. A second Ctrl-C exits at once.";

/// The `serve` subcommand, with a flag for every setting.
pub(super) fn command() -> Command {
    SETTINGS.iter().fold(
        Command::new("serve")
            .about("Run the Weir server (HTTP API and dashboard) on the embedded store")
            .after_help(SERVE_HELP)
            .arg(
                Arg::new("config")
                    .long("config")
                    .env("WEIR_CONFIG")
                    .value_name("FILE")
                    .help("Configuration file (default: ./weir.toml when it exists)"),
            ),
        |cmd, setting| {
            let default = if setting.default.is_empty() {
                "none"
            } else {
                setting.default
            };
            cmd.arg(
                Arg::new(setting.key)
                    .long(setting.flag)
                    .env(setting.env)
                    // Help would otherwise print the environment's value: never a token.
                    .hide_env_values(setting.secret())
                    .value_name(value_name(setting.default))
                    .help(format!("{} [default: {default}]", setting.help))
                    .action(ArgAction::Set),
            )
        },
    )
}

fn value_name(default: &str) -> &'static str {
    if default.ends_with("iB") {
        "SIZE"
    } else if default.ends_with('s')
        && default
            .trim_end_matches('s')
            .chars()
            .all(|c| c.is_ascii_digit())
    {
        "DURATION"
    } else {
        "VALUE"
    }
}

/// Reads the layered configuration of `weir serve`.
pub fn serve_config(matches: &ArgMatches) -> Result<ServeConfig, Vec<ConfigError>> {
    let file = match matches.get_one::<String>("config") {
        Some(path) => Some(ConfigFile::load(&PathBuf::from(path)).map_err(|e| vec![e])?),
        None => {
            let default = PathBuf::from(ConfigFile::DEFAULT_PATH);
            if default.exists() {
                Some(ConfigFile::load(&default).map_err(|e| vec![e])?)
            } else {
                None
            }
        }
    };
    Layers::new(matches, file).resolve()
}

/// Runs `weir serve`.
pub(super) fn run(matches: &ArgMatches) -> ExitCode {
    let config = match serve_config(matches) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors {
                eprintln!("weir: {error}");
            }
            eprintln!("weir: see `weir serve --help` for every setting");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    crate::logging::init(config.log_format, &config.log_filter);

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().thread_name("weir-serve");
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(threads.get());
    }
    runtime.event_interval(EVENT_INTERVAL);
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("weir: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listeners = crate::serve::bind(&config).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(shutdown_on_signal(shutdown.clone()));
        // Spawned, not polled by `block_on` on this thread: the accept loops then run on the
        // runtime's workers, and a new connection's task goes on the accepting worker's own
        // queue instead of waking this thread and then a worker for every connection. (With
        // one worker thread, wrk opening a connection per request showed no difference
        // beyond this VM's noise; `weir worker` and `weir crawl` measured the same shape.)
        match tokio::spawn(crate::serve::run(config, listeners, shutdown)).await {
            Ok(result) => result,
            Err(failure) => std::panic::resume_unwind(failure.into_panic()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "weir stopped");
            eprintln!("weir: {error}");
            ExitCode::FAILURE
        }
    }
}
