//! Job kinds built into `weir worker` beyond `echo` and `sleep`: `http` (webhooks and API
//! calls through the rate-limited client), `crawl` (the crawler, optionally split across
//! jobs by host) and `files` (counts, hashes and search over a tree).

pub(crate) mod crawl;
pub(crate) mod files;
pub(crate) mod http;
mod job_io;

use weir_jobs::worker::{JobContext, Registry};

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
