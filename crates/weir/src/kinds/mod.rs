//! Job kinds built into `weir worker` beyond `echo` and `sleep`: `http` (webhooks and API
//! calls through the rate-limited client), `crawl` (the crawler, optionally split across
//! jobs by host) and `files` (counts, hashes and search over a tree).

pub(crate) mod crawl;
pub(crate) mod files;
pub(crate) mod http;

use weir_jobs::worker::{JobContext, JobFailure, Registry};

/// Registers the `http`, `crawl` and `files` kinds.
pub(crate) fn register(
    registry: &mut Registry,
    http: weir_client::Client,
    jobs: weir_jobs::client::Client,
) {
    registry.register("http", move |ctx: JobContext| http::run(http.clone(), ctx));
    let jobs = std::sync::Arc::new(jobs);
    registry.register("crawl", move |ctx: JobContext| {
        crawl::run(std::sync::Arc::clone(&jobs), ctx)
    });
    registry.register("files", files::run);
}

/// Reads a job's payload as `T`; a payload that does not fit is a fatal failure (trying
/// again cannot fix it).
fn payload<T: serde::de::DeserializeOwned>(ctx: &JobContext, shape: &str) -> Result<T, JobFailure> {
    serde_json::from_str(ctx.job.payload.get())
        .map_err(|error| JobFailure::fatal(format!("payload: {error} (expected {shape})")))
}

/// A JSON value as a job result.
fn result(value: &serde_json::Value) -> weir_jobs::worker::HandlerResult {
    serde_json::value::to_raw_value(value).map_err(|error| JobFailure::fatal(error.to_string()))
}
