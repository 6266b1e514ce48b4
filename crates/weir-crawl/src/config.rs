//! What a crawl may do: scope, budgets and politeness.

use std::time::Duration;

use regex::Regex;
use url::Url;
use weir_client::Egress;

/// Settings of one crawl. `Default` is a polite crawl with no budgets.
#[derive(Debug, Clone)]
pub struct CrawlConfig {
    /// Where to start (normalised before use).
    pub seeds: Vec<Url>,
    /// Link depth from a seed (seeds are 0); deeper links are skipped.
    pub max_depth: Option<u32>,
    /// Pages fetched in all (robots.txt and sitemaps do not count).
    pub max_pages: Option<u64>,
    /// Pages fetched per host.
    pub max_pages_per_host: Option<u64>,
    /// Wall time; at the limit no new fetch starts.
    pub max_time: Option<Duration>,
    /// Requests in flight in all.
    pub concurrency: usize,
    /// Requests in flight per host.
    pub per_host: usize,
    /// Least time between two requests to one host; a longer robots.txt `Crawl-delay` wins.
    pub delay: Duration,
    /// Only URLs matching one of these (when any are given).
    pub include: Vec<Regex>,
    /// No URL matching any of these.
    pub exclude: Vec<Regex>,
    /// Only the seeds' hosts and their subdomains.
    pub same_site: bool,
    /// Only these hosts (`host` or `host:port`, as [`host_key`](crate::normalize::host_key)
    /// spells them); empty for any. A crawl split across jobs gives each job its hosts, and
    /// links to other hosts are reported in [`Finished::other_hosts`](crate::Finished).
    pub hosts: Vec<String>,
    /// Honour robots.txt (allow/disallow, crawl-delay, sitemaps).
    pub robots: bool,
    /// Read the sitemaps robots.txt names and crawl their URLs.
    pub sitemaps: bool,
    /// `User-Agent`, also the name matched against robots.txt groups.
    pub user_agent: String,
    /// Body bytes read per page; links past it are not seen.
    pub max_body: usize,
    /// Redirect hops followed from one URL.
    pub max_redirects: u8,
    /// Time one request may take.
    pub timeout: Duration,
    /// Tries per URL for 408, 429, 5xx and transport errors.
    pub max_tries: u8,
    /// URLs remembered for dedupe; past it new URLs are skipped (budget).
    pub max_urls: usize,
    /// After a stop, time in-flight requests get to finish before they are aborted (and
    /// saved to the frontier to be fetched on resume).
    pub drain: Duration,
    /// Where requests may go (default: public addresses only; a link or redirect to a
    /// private address is recorded as an error, never fetched).
    pub egress: Egress,
}

impl Default for CrawlConfig {
    fn default() -> CrawlConfig {
        CrawlConfig {
            seeds: Vec::new(),
            max_depth: None,
            max_pages: None,
            max_pages_per_host: None,
            max_time: None,
            concurrency: 32,
            per_host: 4,
            delay: Duration::ZERO,
            include: Vec::new(),
            exclude: Vec::new(),
            same_site: false,
            hosts: Vec::new(),
            robots: true,
            sitemaps: true,
            user_agent: concat!("weir-crawl/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_body: 10 << 20,
            max_redirects: 10,
            timeout: Duration::from_secs(30),
            max_tries: 3,
            max_urls: 5_000_000,
            drain: Duration::from_secs(5),
            egress: Egress::default(),
        }
    }
}
