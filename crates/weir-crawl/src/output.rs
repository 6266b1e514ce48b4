//! Where records go, and live counters for progress displays.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::record::{Record, Summary};

/// Receives the crawl's records as they happen and the summary at the end.
pub trait Output: Send {
    /// One URL's record.
    fn record(&mut self, record: &Record) -> std::io::Result<()>;
    /// The summary, last.
    fn summary(&mut self, summary: &Summary) -> std::io::Result<()>;
}

/// Records as JSON lines; the summary is the last line, as `{"summary": {...}}`.
#[derive(Debug)]
pub struct JsonLines<W: Write + Send>(pub W);

impl<W: Write + Send> Output for JsonLines<W> {
    fn record(&mut self, record: &Record) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.0, record)?;
        self.0.write_all(b"\n")
    }

    fn summary(&mut self, summary: &Summary) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.0, &serde_json::json!({ "summary": summary }))?;
        self.0.write_all(b"\n")?;
        self.0.flush()
    }
}

/// Counters a progress display or a job's progress events read while the crawl runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Pages fetched (any status), as [`Summary::pages`] counts them.
    pub pages: AtomicU64,
    /// URLs waiting in the hosts' queues, not counting those in flight.
    pub queued: AtomicU64,
    /// Fetches running now, robots.txt and sitemaps included.
    pub in_flight: AtomicU64,
    /// URLs given up after errors.
    pub errors: AtomicU64,
    /// URLs skipped (robots, budget, scope).
    pub skipped: AtomicU64,
    /// Body bytes read.
    pub bytes: AtomicU64,
}

impl Progress {
    pub(crate) fn set(counter: &AtomicU64, value: u64) {
        counter.store(value, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
