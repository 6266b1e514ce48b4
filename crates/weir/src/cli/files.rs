//! `weir files`: counts, hashes and search over a tree, async by default, the original
//! synchronous program with `--sync`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use tokio_util::sync::CancellationToken;
use weir_files::{FileReport, HashKind, Limit, Limits, Options, Totals, Tree};

use super::process::{stop_then_exit, EXIT_INTERRUPTED, EXIT_USAGE};
use crate::config::values::{parse_count, parse_size};

/// The `weir files` subcommand: its flags, help and examples.
pub(super) fn command() -> Command {
    let flag = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .action(ArgAction::SetTrue)
            .help(help)
    };
    Command::new("files")
        .about("Count lines, words and bytes, hash, or search every file of a tree")
        .after_help(
            "With none of --count, --hash and --grep, counts (as `LC_ALL=C wc` counts). Symbolic\n\
             links are followed wherever they lead; a link loop is reported, never walked twice. A\n\
             file that cannot be read (permission denied, vanished, a broken link) is reported and\n\
             the run goes on; the exit code is then 1. Ctrl-C stops within a buffer and prints the\n\
             partial totals, marked partial (exit 130); --max-files and --max-bytes stop it the\n\
             same way (exit 1).\n\n\
             Examples:\n  weir files src --count\n  weir files . --gitignore --hash blake3 --json > hashes.jsonl\n  weir files /var/log --grep 'error|timeout'",
        )
        .arg(Arg::new("paths").value_name("PATH").num_args(1..).required(true).help("Files and directories"))
        .arg(flag("count", "Lines, words and bytes, as wc counts them"))
        .arg(
            Arg::new("hash")
                .long("hash")
                .value_name("ALGORITHM")
                .value_parser(["blake3", "sha256"])
                .help("Hash each file (blake3 or sha256)"),
        )
        .arg(Arg::new("grep").long("grep").value_name("REGEX").help("Print the lines matching REGEX, with their numbers"))
        .arg(Arg::new("jobs").long("jobs").value_name("N").help("Files processed at once [default: the number of CPUs]"))
        .arg(flag("json", "One JSON line per file, then {\"total\": …}"))
        .arg(flag("sync", "Run the original single-threaded synchronous program"))
        .arg(flag("gitignore", "Skip what .gitignore, .ignore and .git/info/exclude exclude"))
        .arg(flag("no-hidden", "Skip hidden files and directories"))
        .arg(Arg::new("max-files").long("max-files").value_name("N").help("Stop after N files (and unreadable entries) [default: no limit]"))
        .arg(Arg::new("max-bytes").long("max-bytes").value_name("SIZE").help("Stop after reading SIZE bytes, e.g. 500MiB [default: no limit]"))
}

/// Runs `weir files`.
pub(super) fn run(matches: &ArgMatches) -> ExitCode {
    let options = match options(matches) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("weir files: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // The operator's own command: paths and links are followed wherever they lead.
    let tree = Tree::anywhere(
        matches
            .get_many::<String>("paths")
            .into_iter()
            .flatten()
            .map(PathBuf::from)
            .collect(),
    );
    let json = matches.get_flag("json");
    let sync = matches.get_flag("sync");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(options.jobs.max(1) + 2)
        .enable_all()
        .build()
        .expect("the async runtime starts");
    let totals = runtime.block_on(async move {
        let stop = CancellationToken::new();
        tokio::spawn(stop_then_exit(stop.clone(), || {}));
        let mut printer = Printer::new(json, &options);
        let done = Arc::new(AtomicU64::new(0));
        let display = tokio::spawn(show_progress(Arc::clone(&done), stop.clone()));
        let totals = if sync {
            // The synchronous program checks a flag between files.
            let stopped = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stopped);
            let watcher = tokio::spawn({
                let stop = stop.clone();
                async move {
                    stop.cancelled().await;
                    flag.store(true, Ordering::Relaxed);
                }
            });
            let totals = tokio::task::spawn_blocking(move || {
                let totals = weir_files::run_sync(&tree, &options, stopped, |file| {
                    done.fetch_add(1, Ordering::Relaxed);
                    printer.file(file);
                });
                printer.total(&totals);
                totals
            })
            .await
            .expect("the synchronous run does not panic");
            watcher.abort();
            totals
        } else {
            let totals = weir_files::run_async(tree, options, stop.clone(), |file| {
                done.fetch_add(1, Ordering::Relaxed);
                printer.file(file);
            })
            .await;
            printer.total(&totals);
            totals
        };
        display.abort();
        if std::io::stderr().is_terminal() && !std::io::stdout().is_terminal() {
            eprint!("\r\x1b[2K");
        }
        totals
    });
    if let Some(limit) = totals.limit {
        let flag = match limit {
            Limit::Files(_) => "--max-files",
            Limit::Bytes(_) => "--max-bytes",
        };
        eprintln!("weir files: stopped at {flag} ({limit}); the totals are partial");
        ExitCode::FAILURE
    } else if totals.partial {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if totals.errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn options(matches: &ArgMatches) -> Result<Options, String> {
    let mut options = Options::default();
    options.hash = matches
        .get_one::<String>("hash")
        .map(|text| text.parse::<HashKind>())
        .transpose()?;
    options.grep = matches
        .get_one::<String>("grep")
        .map(|text| {
            regex::bytes::RegexBuilder::new(text)
                .multi_line(true)
                .build()
                .map_err(|error| format!("--grep `{text}`: {error}"))
        })
        .transpose()?;
    options.count = matches.get_flag("count") || (options.hash.is_none() && options.grep.is_none());
    options.gitignore = matches.get_flag("gitignore");
    options.hidden = !matches.get_flag("no-hidden");
    options.limits = Limits {
        files: matches
            .get_one::<String>("max-files")
            .map(|text| {
                parse_count(text, 1, u64::MAX)
                    .map_err(|allowed| format!("--max-files `{text}`: {allowed}"))
            })
            .transpose()?,
        bytes: matches
            .get_one::<String>("max-bytes")
            .map(|text| {
                parse_size(text)
                    .ok()
                    .filter(|bytes| *bytes > 0)
                    .ok_or_else(|| {
                        format!("--max-bytes `{text}`: a size of at least 1 byte, such as 500MiB")
                    })
            })
            .transpose()?,
    };
    if let Some(text) = matches.get_one::<String>("jobs") {
        options.jobs = text
            .parse()
            .ok()
            .filter(|jobs| (1..=1024).contains(jobs))
            .ok_or_else(|| format!("--jobs `{text}`: expected a number from 1 to 1024"))?;
    }
    Ok(options)
}

/// Writes reports as a table or JSON lines.
struct Printer {
    out: std::io::BufWriter<std::io::Stdout>,
    json: bool,
    count: bool,
    hash: bool,
}

impl Printer {
    fn new(json: bool, options: &Options) -> Printer {
        Printer {
            out: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()),
            json,
            count: options.count,
            hash: options.hash.is_some(),
        }
    }

    fn file(&mut self, file: &FileReport) {
        // A closed pipe (`| head`) ends the output, not the run's exit code.
        let _ = self.write_file(file);
    }

    fn write_file(&mut self, file: &FileReport) -> std::io::Result<()> {
        if self.json {
            serde_json::to_writer(&mut self.out, file)?;
            return self.out.write_all(b"\n");
        }
        if let Some(error) = &file.error {
            self.out.flush()?;
            eprintln!("weir files: {}: {error}", file.path);
            return Ok(());
        }
        if self.count {
            let (lines, words) = (file.lines.unwrap_or(0), file.words.unwrap_or(0));
            write!(
                self.out,
                "{lines:>9} {words:>9} {:>11} ",
                file.bytes.unwrap_or(0)
            )?;
        }
        if let Some(hash) = &file.hash {
            write!(self.out, "{hash}  ")?;
        }
        if self.count || self.hash {
            writeln!(self.out, "{}", file.path)?;
        }
        for found in &file.matches {
            writeln!(self.out, "{}:{}:{}", file.path, found.line, found.text)?;
        }
        Ok(())
    }

    fn total(&mut self, totals: &Totals) {
        let partial = match (totals.limit, totals.partial) {
            (Some(Limit::Files(_)), _) => " (partial: stopped at --max-files)",
            (Some(Limit::Bytes(_)), _) => " (partial: stopped at --max-bytes)",
            (None, true) => " (partial: interrupted)",
            (None, false) => "",
        };
        let _ = if self.json {
            writeln!(self.out, "{}", serde_json::json!({ "total": totals }))
        } else if self.count {
            writeln!(
                self.out,
                "{:>9} {:>9} {:>11} total: {} files, {} errors{}{partial}",
                totals.lines,
                totals.words,
                totals.bytes,
                totals.files,
                totals.errors,
                if totals.matches > 0 {
                    format!(", {} matching lines", totals.matches)
                } else {
                    String::new()
                },
            )
        } else {
            writeln!(
                self.out,
                "total: {} files, {} bytes, {} matching lines, {} errors{partial}",
                totals.files, totals.bytes, totals.matches, totals.errors
            )
        };
        let _ = self.out.flush();
    }
}

/// A progress line on standard error, when it is a terminal and the output goes elsewhere
/// (a file, a pipe): the two would otherwise interleave.
async fn show_progress(done: Arc<AtomicU64>, stop: CancellationToken) {
    if !std::io::stderr().is_terminal() || std::io::stdout().is_terminal() {
        return;
    }
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    loop {
        ticks.tick().await;
        let files = done.load(Ordering::Relaxed);
        let rate = files as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let spinner = ['|', '/', '-', '\\'][(started.elapsed().as_millis() / 200 % 4) as usize];
        let stopping = if stop.is_cancelled() {
            ", stopping"
        } else {
            ""
        };
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r\x1b[2K[{spinner}] {files} files, {rate:.0} files/s{stopping}"
        );
        let _ = stderr.flush();
    }
}
