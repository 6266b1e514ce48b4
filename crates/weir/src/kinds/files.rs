//! Job kind `files`: `weir files` over a path on the worker's machine, with progress.
//!
//! Payload: `{"paths": ["/data/in"], "count": true, "hash": "blake3", "grep": "REGEX",
//! "gitignore": false, "out": "/data/report.jsonl"}`. Per-file reports go to `out` (JSON
//! lines) when given; the result holds the totals and the first 100 errors. A file that
//! cannot be read is reported, not a failure of the job.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use weir_files::{FileReport, HashKind, Options};
use weir_jobs::worker::{HandlerResult, JobContext, JobFailure};

use super::job_io;

/// Most unreadable files the job's result lists, the first ones met; `out`, when given,
/// has them all.
const ERRORS_IN_RESULT: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesJob {
    paths: Vec<String>,
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
    r#"{"paths": ["/dir"], "count": true, "hash": "blake3", "grep": "…", "out": "/file.jsonl"}"#;

pub(crate) async fn run(ctx: JobContext) -> HandlerResult {
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
    let mut out = match &job.out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|error| JobFailure::fatal(format!("out `{path}`: {error}")))?,
        )),
        None => None,
    };
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
    let roots: Vec<PathBuf> = job.paths.iter().map(PathBuf::from).collect();
    let totals = weir_files::run_async(roots, options, ctx.cancel.clone(), |file| {
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
    if let Some(error) = write_error {
        return Err(JobFailure::retry(format!(
            "writing {}: {error}",
            job.out.unwrap_or_default()
        )));
    }
    if totals.partial {
        return Err(JobFailure::retry("stopped before every file was processed"));
    }
    job_io::result(&json!({ "totals": totals, "errors": errors, "out": job.out }))
}
