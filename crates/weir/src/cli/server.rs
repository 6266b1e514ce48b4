//! What the client commands (`weir worker`, `weir jobs`) share: how they name the server
//! and its token, how they report a usage error, their runtime.

use std::process::ExitCode;

use clap::{Arg, ArgMatches, Command};
use weir_jobs::client::Client;

use super::process::EXIT_USAGE;

/// Adds `--server` and `--token` to a client command.
pub(super) fn server_args(command: Command) -> Command {
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

pub(super) fn client(matches: &ArgMatches) -> Result<Client, String> {
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

pub(super) fn usage(message: &str) -> ExitCode {
    eprintln!("weir: {message}");
    ExitCode::from(EXIT_USAGE)
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts")
}
