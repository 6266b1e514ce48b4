//! The command line: `weir serve` and its settings, exit codes, signals.
//!
//! Exit codes: 0 after a clean shutdown; 64 (EX_USAGE) for a bad command line or an invalid
//! configuration, before anything is bound; 1 for a failure while starting or running.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, ConfigFile, Layers, ServeConfig, SETTINGS};

/// Exit code for a usage or configuration error (sysexits.h EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// Exit code after Ctrl-C (128 + SIGINT): a stopped crawl or file run, once it has written
/// its summary, and any command on a second signal.
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

const ABOUT: &str =
    "Real-time pub/sub and chat, distributed background jobs and a live dashboard, in one binary.";

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

/// The command-line definition.
pub fn command() -> Command {
    let serve = SETTINGS.iter().fold(
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
    );
    Command::new("weir")
        .about(ABOUT)
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .after_help("Start here: `weir serve`, then open http://127.0.0.1:7070/healthz.")
        .subcommand(serve)
        .subcommand(crate::client_cli::worker_command())
        .subcommand(crate::client_cli::jobs_command())
        .subcommand(crate::crawl_cli::command())
        .subcommand(crate::files_cli::command())
        .subcommand(crate::demo_site::command())
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

/// Runs the command line of this process.
pub fn main() -> ExitCode {
    let matches = match command().try_get_matches() {
        Ok(matches) => matches,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match matches.subcommand() {
        Some(("serve", serve)) => serve_command(serve),
        Some(("worker", worker)) => crate::client_cli::run_worker(worker),
        Some(("jobs", jobs)) => crate::client_cli::run_jobs(jobs),
        Some(("crawl", crawl)) => crate::crawl_cli::run(crawl),
        Some(("files", files)) => crate::files_cli::run(files),
        Some(("demo-site", demo)) => crate::demo_site::run(demo),
        _ => ExitCode::from(EXIT_USAGE),
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

fn serve_command(matches: &ArgMatches) -> ExitCode {
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

/// Cancels `shutdown` on the first Ctrl-C or SIGTERM; exits at once on a second one.
pub(crate) async fn shutdown_on_signal(shutdown: CancellationToken) {
    stop_then_exit(shutdown, || {
        tracing::info!("shutting down: no new connections; in-flight requests are finishing");
    })
    .await;
}

/// On the first Ctrl-C or SIGTERM runs `on_first` and cancels `stop`; on a second one exits
/// at once with 130 (128 + SIGINT), for every command that stops gracefully.
pub(crate) async fn stop_then_exit(stop: CancellationToken, on_first: impl FnOnce()) {
    wait_for_signal().await;
    on_first();
    stop.cancel();
    wait_for_signal().await;
    tracing::warn!("second signal: exiting now");
    std::process::exit(i32::from(EXIT_INTERRUPTED));
}

#[cfg(unix)]
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
pub(crate) async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
