//! The crawl's output: one record per URL, and a summary.

use serde::{Deserialize, Serialize};

/// Why a URL was not fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// robots.txt disallows it (or the host's robots.txt could not be read).
    Robots,
    /// A budget ran out: depth, pages, pages per host or the dedupe capacity.
    Budget,
    /// Outside the scope: `--same-site`, `--include` or `--exclude`.
    Excluded,
    /// Already crawled under the same normalised URL (a seed given twice, a redirect to a
    /// page already fetched).
    Duplicate,
    /// Every try failed; `detail` has the cause.
    Error,
}

/// One line of output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The normalised URL.
    pub url: String,
    /// Where it ended: the redirect target for a 3xx, else the URL itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_url: Option<String>,
    /// The response's status (of the last try, when retried); `None` when the URL was
    /// skipped or no try got a response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Link depth from a seed.
    pub depth: u32,
    /// The page that linked here (none for seeds and sitemap entries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// `Content-Type` without parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Body bytes read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The body was longer than the size cap.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub truncated: bool,
    /// The `<title>` of an HTML page, whitespace collapsed, cut to 300 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Links found on the page (before dedupe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<u32>,
    /// From the request's start to the body's end, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_ms: Option<f64>,
    /// Tries it took, when more than one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tries: Option<u8>,
    /// Why it was not fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<SkipReason>,
    /// The reason in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Why the crawl ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Nothing left to fetch.
    Done,
    /// Stopped from outside (Ctrl-C, a cancelled job).
    Interrupted,
    /// `max_time` passed.
    MaxTime,
    /// `max_pages` reached.
    MaxPages,
}

/// Totals of a crawl, written as the last line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Why it ended (`None` while running).
    pub stopped: Option<StopReason>,
    /// Pages fetched (any status).
    pub pages: u64,
    /// Of those, 2xx.
    pub ok: u64,
    /// 3xx answers with a `Location`, followed or not (past `max_redirects`).
    pub redirects: u64,
    /// URLs given up after errors.
    pub errors: u64,
    /// Skipped by robots.txt.
    pub robots_skipped: u64,
    /// Skipped by a budget.
    pub budget_skipped: u64,
    /// Skipped as out of scope.
    pub excluded: u64,
    /// Links to URLs already seen.
    pub duplicates: u64,
    /// robots.txt files and sitemaps fetched.
    pub robots_and_sitemaps: u64,
    /// Body bytes read.
    pub bytes: u64,
    /// Hosts (with their port, when not the default) that had a URL queued; a crawl that
    /// stopped early may not have contacted them all.
    pub hosts: u64,
    /// URLs still queued or in flight at the end (saved to the frontier file if asked).
    pub pending: u64,
    /// Seconds from start to end.
    pub elapsed_s: f64,
    /// Pages per second.
    pub pages_per_s: f64,
}

impl Summary {
    /// Adds the counts of another crawl (one host's share of a split crawl); `stopped` and
    /// the rates are left for the caller to set.
    pub fn add(&mut self, other: &Summary) {
        self.pages += other.pages;
        self.ok += other.ok;
        self.redirects += other.redirects;
        self.errors += other.errors;
        self.robots_skipped += other.robots_skipped;
        self.budget_skipped += other.budget_skipped;
        self.excluded += other.excluded;
        self.duplicates += other.duplicates;
        self.robots_and_sitemaps += other.robots_and_sitemaps;
        self.bytes += other.bytes;
        self.hosts += other.hosts;
        self.pending += other.pending;
    }
}
