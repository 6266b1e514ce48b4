//! The command line: every `weir` command, its exit codes and its signals.
//!
//! Exit codes: 0 after a clean shutdown; 64 (EX_USAGE) for a bad command line or an invalid
//! configuration, before anything is bound; 1 for a failure while starting or running;
//! 130 after Ctrl-C for a command that stops with a summary ([`process`]).
//!
//! - [`serve`]: `weir serve`, with the layered configuration.
//! - `worker`, `jobs`: the client commands, over the HTTP API (`server` holds what they share).
//! - `crawl`, `files`, `demo`: the crawler, file processing and the demo site.

mod crawl;
mod demo;
mod files;
mod jobs;
pub mod process;
pub mod serve;
mod server;
mod worker;

use std::process::ExitCode;

use clap::Command;

pub use process::EXIT_USAGE;
pub use serve::serve_config;

const ABOUT: &str =
    "Real-time pub/sub and chat, distributed background jobs and a live dashboard, in one binary.";

/// The command-line definition.
pub fn command() -> Command {
    Command::new("weir")
        .about(ABOUT)
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .after_help("Start here: `weir serve`, then open http://127.0.0.1:7070/healthz.")
        .subcommand(serve::command())
        .subcommand(worker::command())
        .subcommand(jobs::command())
        .subcommand(crawl::command())
        .subcommand(files::command())
        .subcommand(demo::command())
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
        Some(("serve", serve)) => serve::run(serve),
        Some(("worker", worker)) => worker::run(worker),
        Some(("jobs", jobs)) => jobs::run(jobs),
        Some(("crawl", crawl)) => crawl::run(crawl),
        Some(("files", files)) => files::run(files),
        Some(("demo-site", demo)) => demo::run(demo),
        _ => ExitCode::from(EXIT_USAGE),
    }
}
