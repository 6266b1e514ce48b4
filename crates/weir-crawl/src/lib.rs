//! A polite concurrent web crawler.
//!
//! [`Crawler::run`] crawls from seed URLs until nothing is left, a budget runs out or it is
//! stopped, writing one [`Record`] per URL and a [`Summary`] to an [`Output`]:
//!
//! - **Politeness.** robots.txt is fetched first on every host and honoured (allow and
//!   disallow rules, `Crawl-delay`, sitemaps); each host has its own spacing (the larger of
//!   `delay` and `Crawl-delay`) and concurrency limit; 429 and 503 widen the spacing
//!   (halved again by each success) and `Retry-After` pauses the host.
//! - **Scheduling.** The frontier keeps a queue per host, shallowest first, and hands out
//!   ready hosts round-robin ([`frontier`](crate::frontier) has the details), so one slow
//!   host never blocks the others and no host is given up while it still has URLs.
//! - **URLs.** WHATWG parsing and normalisation ([`normalize`]), dedupe on 64-bit
//!   fingerprints with a stated capacity ([`seen`]), redirects followed hop by hop.
//! - **Pages.** Links and title extracted while the body streams ([`extract`]), a body
//!   size cap, HTML only.
//! - **Budgets.** Depth, pages, pages per host, time; on a stop the frontier can be saved
//!   and the crawl resumed ([`SavedFrontier`]).

mod config;
mod crawler;
pub mod extract;
mod fetch;
mod frontier;
pub mod normalize;
mod output;
mod record;
pub mod seen;

pub use config::CrawlConfig;
pub use crawler::{CrawlError, Crawler, Finished, MAX_OTHER_HOSTS};
pub use frontier::SavedFrontier;
pub use output::{JsonLines, Output, Progress};
pub use record::{Record, SkipReason, StopReason, Summary};
