//! `weir demo-site`: serves the synthetic site of `weir-demo-site` until Ctrl-C.

use std::process::ExitCode;

use clap::{Arg, ArgMatches, Command};
use tokio_util::sync::CancellationToken;
use weir_demo_site::{bind, serve, Profile, SiteConfig, MAX_HOSTS, MAX_PAGES};

use super::process::{shutdown_on_signal, EXIT_USAGE};
use crate::config::values::parse_duration;
use crate::logging::{self, LogFormat};

/// The `weir demo-site` subcommand: its flags, help and examples.
pub(super) fn command() -> Command {
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
pub(super) fn run(matches: &ArgMatches) -> ExitCode {
    let config = match site_config(matches) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("weir demo-site: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    logging::init(LogFormat::Human, "warn");
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
        tokio::spawn(shutdown_on_signal(shutdown.clone()));
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
