//! Job kind `files`: `weir files` over paths on the worker's machine, confined to what the
//! worker's operator chose, with progress.
//!
//! Payload: `{"paths": ["/srv/data/in"], "count": true, "hash": "blake3", "grep": "REGEX",
//! "gitignore": false, "out": "report.jsonl"}`. What a job may touch is the operator's
//! ([`FilesSettings`]), never the job's:
//!
//! - Every path must lie beneath a `--files-root`, by its name and by where its links lead;
//!   every directory and file of the walk is opened beneath the root (`openat2` with
//!   `RESOLVE_BENEATH`, in `weir-files`). A path outside every root fails the job (fatal);
//!   a link in the tree leading out is a per-file error, never read.
//! - `out` is a file name, created new in `--files-out` (never replacing a file, never
//!   through a link); without `--files-out` a job with `out` is refused. When the attempt
//!   fails the file is removed again, so a retry can create it.
//! - A job stops at `--files-max-files` files and `--files-max-bytes` bytes read, and fails
//!   (fatal) naming the limit.
//!
//! Per-file reports go to `out` (JSON lines) when given; the result holds the totals and the
//! first 100 errors. A file that cannot be read is reported, not a failure of the job.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches};
use serde::Deserialize;
use serde_json::json;
use weir_files::{FileReport, HashKind, Limit, Limits, Options, OutDir, Roots, Totals, Tree};
use weir_jobs::worker::{HandlerResult, JobContext, JobFailure};

use super::job_io;
use crate::config::values::{parse_count, parse_size};

/// Most unreadable files the job's result lists, the first ones met; `out`, when given,
/// has them all.
const ERRORS_IN_RESULT: usize = 100;

/// Files a job may take by default: 100,000. A tree a job is meant for holds thousands;
/// one walking past this is most likely aimed at the wrong directory (the job that walked a
/// home directory had passed 87,000 when it was cancelled). Raise it for bigger trees.
const DEFAULT_MAX_FILES: &str = "100000";

/// Bytes a job may read by default: 10 GiB, about a minute at disk speed and well within
/// the default job timeout (5 minutes) at page-cache speed; a job reading more is most
/// likely aimed at the wrong place (a disk image, a database's files).
const DEFAULT_MAX_BYTES: &str = "10GiB";

/// What `files` jobs may touch on this worker, from its operator.
#[derive(Debug)]
pub(crate) struct FilesSettings {
    /// Directories jobs may read beneath, opened when the worker starts.
    roots: Roots,
    /// The directory `out` files are created in; `None`: jobs with `out` are refused.
    out: Option<OutDir>,
    /// Most files and bytes per job.
    limits: Limits,
}

impl FilesSettings {
    /// The `weir worker` flags: --files-root (repeatable), --files-out, --files-max-files,
    /// --files-max-bytes.
    pub(crate) fn args() -> Vec<Arg> {
        vec![
            Arg::new("files-root")
                .long("files-root")
                .value_name("DIR")
                .action(ArgAction::Append)
                .help("A directory `files` jobs may read beneath (repeatable); nothing outside the roots is opened, links leading out included. Without one, `files` jobs cannot run here"),
            Arg::new("files-out")
                .long("files-out")
                .value_name("DIR")
                .help("The directory a `files` job's `out` names a new file in [default: none: jobs with `out` are refused]"),
            Arg::new("files-max-files")
                .long("files-max-files")
                .value_name("N")
                .default_value(DEFAULT_MAX_FILES)
                .help("Most files one `files` job may take; it fails when it would pass them"),
            Arg::new("files-max-bytes")
                .long("files-max-bytes")
                .value_name("SIZE")
                .default_value(DEFAULT_MAX_BYTES)
                .help("Most bytes one `files` job may read, e.g. 500MiB or 10GiB; it fails when it would pass them"),
        ]
    }

    /// `Ok(None)` when no --files-root was given (the kind then cannot be turned on);
    /// Err(message) for bad values.
    pub(crate) fn from_matches(matches: &ArgMatches) -> Result<Option<FilesSettings>, String> {
        let roots: Vec<PathBuf> = matches
            .get_many::<String>("files-root")
            .into_iter()
            .flatten()
            .map(PathBuf::from)
            .collect();
        let out = matches.get_one::<String>("files-out").map(PathBuf::from);
        if roots.is_empty() {
            return match out {
                Some(_) => {
                    Err("--files-out is for `files` jobs, which need --files-root DIR too".into())
                }
                None => Ok(None),
            };
        }
        let roots = Roots::open(&roots).map_err(|error| format!("--files-root {error}"))?;
        let out = out
            .map(|out| OutDir::open(&out).map_err(|error| format!("--files-out {error}")))
            .transpose()?;
        let text = |name: &str| matches.get_one::<String>(name).expect("has a default");
        let files = parse_count(text("files-max-files"), 1, u64::MAX).map_err(|allowed| {
            format!("--files-max-files `{}`: {allowed}", text("files-max-files"))
        })?;
        let bytes = parse_size(text("files-max-bytes"))
            .ok()
            .filter(|bytes| *bytes > 0)
            .ok_or_else(|| {
                format!(
                    "--files-max-bytes `{}`: a size of at least 1 byte, such as 500MiB or 10GiB",
                    text("files-max-bytes")
                )
            })?;
        Ok(Some(FilesSettings {
            roots,
            out,
            limits: Limits {
                files: Some(files),
                bytes: Some(bytes),
            },
        }))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesJob {
    paths: Vec<PathBuf>,
    #[serde(default)]
    count: bool,
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    grep: Option<String>,
    #[serde(default)]
    gitignore: bool,
    #[serde(default)]
    out: Option<String>,
}

const SHAPE: &str =
    r#"{"paths": ["/dir"], "count": true, "hash": "blake3", "grep": "…", "out": "name.jsonl"}"#;

/// The setting a limit is raised with, for messages.
fn setting(limit: Limit) -> &'static str {
    match limit {
        Limit::Files(_) => "--files-max-files",
        Limit::Bytes(_) => "--files-max-bytes",
    }
}

/// Runs a `files` job within `settings`.
pub(crate) async fn run(settings: Arc<FilesSettings>, ctx: JobContext) -> HandlerResult {
    let job: FilesJob = job_io::payload(&ctx, SHAPE)?;
    if job.paths.is_empty() {
        return Err(JobFailure::fatal("paths: give at least one path"));
    }
    let mut options = Options::default();
    options.hash = job
        .hash
        .as_deref()
        .map(str::parse::<HashKind>)
        .transpose()
        .map_err(|error| JobFailure::fatal(format!("hash: {error}")))?;
    options.grep = job
        .grep
        .as_deref()
        .map(|text| {
            regex::bytes::RegexBuilder::new(text)
                .multi_line(true)
                .build()
        })
        .transpose()
        .map_err(|error| JobFailure::fatal(format!("grep: {error}")))?;
    options.count = job.count || (options.hash.is_none() && options.grep.is_none());
    options.gitignore = job.gitignore;
    options.limits = settings.limits;
    let tree = Tree::beneath(&settings.roots, &job.paths).map_err(|error| {
        JobFailure::fatal(format!(
            "paths: {error}: this worker reads only beneath its --files-root directories"
        ))
    })?;
    // Checked before the file is created: a job refused for its paths leaves nothing.
    let out = match (&job.out, &settings.out) {
        (None, _) => None,
        (Some(_), None) => return Err(JobFailure::fatal(
            "out: this worker writes no `out` files; its operator allows them with --files-out DIR",
        )),
        (Some(name), Some(dir)) => Some(
            dir.create(name)
                .map_err(|error| JobFailure::fatal(format!("out: {error}")))?,
        ),
    };
    let outcome = walk(tree, options, &ctx, out.as_ref().map(|out| &out.file)).await;
    let out_path = out.as_ref().map(|out| out.path.clone());
    match outcome {
        Ok((totals, errors)) => {
            job_io::result(&json!({ "totals": totals, "errors": errors, "out": out_path }))
        }
        Err(failure) => {
            // A failed attempt leaves no `out` behind: a retry creates it again.
            if let (Some(out), Some(dir)) = (out, &settings.out) {
                if let Err(error) = dir.remove(out) {
                    tracing::warn!(%error, "a failed files job's out file could not be removed");
                }
            }
            Err(failure)
        }
    }
}

/// Walks `tree`, with progress on the job's topic and each report written to `out`; the
/// totals and the first errors, or why the job failed.
async fn walk(
    tree: Tree,
    options: Options,
    ctx: &JobContext,
    out: Option<&std::fs::File>,
) -> Result<(Totals, Vec<FileReport>), JobFailure> {
    let mut out = out.map(std::io::BufWriter::new);
    let done = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let reporter = tokio::spawn({
        let (done, bytes, ctx) = (Arc::clone(&done), Arc::clone(&bytes), ctx.clone());
        async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            loop {
                ticks.tick().await;
                let files = done.load(Ordering::Relaxed);
                // The total is unknown until the walk ends: progress is a count, not a share.
                ctx.progress(
                    0.0,
                    format!("{files} files, {} MiB", bytes.load(Ordering::Relaxed) >> 20),
                );
            }
        }
    });
    let mut errors: Vec<FileReport> = Vec::new();
    let mut write_error = None;
    let totals = weir_files::run_async(tree, options, ctx.cancel.clone(), |file| {
        done.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(file.bytes.unwrap_or(0), Ordering::Relaxed);
        if file.error.is_some() && errors.len() < ERRORS_IN_RESULT {
            errors.push(file.clone());
        }
        if let Some(out) = out.as_mut() {
            let line = serde_json::to_string(file).expect("a report serializes");
            if let Err(error) = writeln!(out, "{line}") {
                write_error.get_or_insert(error);
            }
        }
    })
    .await;
    reporter.abort();
    if let Some(out) = out.as_mut() {
        if let Err(error) = out.flush() {
            write_error.get_or_insert(error);
        }
    }
    if let Some(limit) = totals.limit {
        return Err(JobFailure::fatal(format!(
            "stopped at the limit of {limit} per job ({}); partial totals: {} files, {} errors, {} bytes read",
            setting(limit),
            totals.files,
            totals.errors,
            totals.bytes,
        )));
    }
    if let Some(error) = write_error {
        return Err(JobFailure::retry(format!("writing out: {error}")));
    }
    if totals.partial {
        return Err(JobFailure::retry("stopped before every file was processed"));
    }
    Ok((totals, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(args: &[&str]) -> ArgMatches {
        clap::Command::new("worker")
            .args(FilesSettings::args())
            .try_get_matches_from(std::iter::once("worker").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn settings_are_checked_when_the_worker_starts() {
        assert!(FilesSettings::from_matches(&matches(&[]))
            .unwrap()
            .is_none());
        let dir = std::env::temp_dir();
        let dir = dir.to_str().unwrap();
        let refused = |args: &[&str]| FilesSettings::from_matches(&matches(args)).unwrap_err();
        assert!(refused(&["--files-out", dir]).contains("--files-root"));
        assert!(refused(&["--files-root", "/nonexistent-weir-root"])
            .starts_with("--files-root `/nonexistent-weir-root`"));
        assert!(
            refused(&["--files-root", dir, "--files-out", "/nonexistent-weir-out"])
                .starts_with("--files-out")
        );
        assert!(refused(&["--files-root", dir, "--files-max-files", "0"])
            .starts_with("--files-max-files `0`"));
        assert!(refused(&["--files-root", dir, "--files-max-bytes", "lots"])
            .starts_with("--files-max-bytes `lots`"));
        let settings = FilesSettings::from_matches(&matches(&[
            "--files-root",
            dir,
            "--files-max-bytes",
            "1MiB",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            settings.limits,
            Limits {
                files: Some(100_000),
                bytes: Some(1 << 20)
            }
        );
        assert!(settings.out.is_none());
    }
}
