//! The frontier: URLs waiting, grouped by host, and which hosts may be asked next.
//!
//! Every host has its own queue, lowest depth first (so a crawl stays close to breadth
//! first and depth budgets cut the same pages each run). A host is *scheduled* in exactly
//! one place: the ready queue (round-robin, so no host starves another), the timer heap
//! (its next rate-limit slot is in the future), or nowhere (idle, at its concurrency
//! limit, or waiting for its robots.txt); finishing a fetch or queueing a URL schedules it
//! again. A host with nothing in flight never "finishes" while it still has URLs queued:
//! the failure that makes spider drop most of a multi-host site cannot happen here.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use texting_robots::Robot;
use tokio::time::Instant;
use url::Url;

/// What a fetch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Page,
    Robots,
    Sitemap,
}

/// A URL waiting to be fetched.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) url: Url,
    pub(crate) depth: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) referrer: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) tries: u8,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) redirects: u8,
    #[serde(skip, default = "page")]
    pub(crate) kind: Kind,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

fn page() -> Kind {
    Kind::Page
}

impl Entry {
    pub(crate) fn new(url: Url, depth: u32, referrer: Option<String>, kind: Kind) -> Entry {
        Entry {
            url,
            depth,
            referrer,
            tries: 0,
            redirects: 0,
            kind,
        }
    }
}

/// Queue order: robots.txt and sitemaps first, then lowest depth, then first come.
#[derive(Debug)]
struct Queued {
    rank: (u8, u32, u64),
    entry: Entry,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.rank == other.rank
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap pops the greatest: reverse so the smallest rank comes first.
        other.rank.cmp(&self.rank)
    }
}

/// What a host's robots.txt allows.
#[derive(Debug)]
pub(crate) enum Robots {
    /// Not asked yet: robots.txt is queued first when the host is next picked.
    Unknown,
    /// robots.txt is queued or in flight; meanwhile only it (a retry, a redirect) is
    /// fetched from the host.
    Fetching,
    /// Known: rules, or `None` to allow everything (no robots.txt, or robots off).
    Ready(Option<Box<Robot>>),
    /// Unreadable after every try (5xx, no connection): nothing on the host is fetched,
    /// as the robots.txt standard (RFC 9309 §2.3.1.4) says for an unreachable file.
    Unavailable(String),
}

/// One host's state.
#[derive(Debug)]
pub(crate) struct Host {
    pub(crate) key: String,
    pub(crate) robots: Robots,
    queue: BinaryHeap<Queued>,
    pub(crate) in_flight: usize,
    pub(crate) pages: u64,
    scheduled: bool,
    /// The host's spacing from `--delay` and robots.txt `Crawl-delay`.
    pub(crate) base_interval: Duration,
    /// Extra spacing after 429 and 503 answers; halves with each success.
    pub(crate) backoff: Duration,
}

impl Host {
    pub(crate) fn peek(&self) -> Option<&Entry> {
        self.queue.peek().map(|queued| &queued.entry)
    }

    pub(crate) fn pop(&mut self) -> Option<Entry> {
        self.queue.pop().map(|queued| queued.entry)
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// Hosts and their queues.
#[derive(Debug, Default)]
pub(crate) struct Frontier {
    hosts: Vec<Host>,
    by_key: HashMap<String, usize>,
    ready: VecDeque<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    sequence: u64,
    queued: u64,
}

impl Frontier {
    pub(crate) fn host(&mut self, index: usize) -> &mut Host {
        &mut self.hosts[index]
    }

    pub(crate) fn hosts_ref(&self) -> &[Host] {
        &self.hosts
    }

    pub(crate) fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// URLs waiting in all queues.
    pub(crate) fn queued(&self) -> u64 {
        self.queued
    }

    /// The index of `key`'s host, added (robots unknown) when new. The flag says it is new.
    pub(crate) fn host_index(
        &mut self,
        key: &str,
        robots: bool,
        interval: Duration,
    ) -> (usize, bool) {
        if let Some(index) = self.by_key.get(key) {
            return (*index, false);
        }
        let index = self.hosts.len();
        self.hosts.push(Host {
            key: key.to_owned(),
            robots: if robots {
                Robots::Unknown
            } else {
                Robots::Ready(None)
            },
            queue: BinaryHeap::new(),
            in_flight: 0,
            pages: 0,
            scheduled: false,
            base_interval: interval,
            backoff: Duration::ZERO,
        });
        self.by_key.insert(key.to_owned(), index);
        (index, true)
    }

    /// Queues `entry` on host `index` and schedules the host.
    pub(crate) fn push(&mut self, index: usize, entry: Entry) {
        self.sequence += 1;
        let class = match entry.kind {
            Kind::Robots => 0,
            Kind::Sitemap => 1,
            Kind::Page => 2,
        };
        let rank = (class, entry.depth, self.sequence);
        self.hosts[index].queue.push(Queued { rank, entry });
        self.queued += 1;
        self.schedule(index);
    }

    /// Takes the next entry of host `index`.
    pub(crate) fn pop(&mut self, index: usize) -> Option<Entry> {
        let entry = self.hosts[index].pop()?;
        self.queued -= 1;
        Some(entry)
    }

    /// Puts host `index` on the ready queue unless it is scheduled already.
    pub(crate) fn schedule(&mut self, index: usize) {
        let host = &mut self.hosts[index];
        if !host.scheduled {
            host.scheduled = true;
            self.ready.push_back(index);
        }
    }

    /// Schedules host `index` for `at` (its next rate-limit slot).
    pub(crate) fn schedule_at(&mut self, index: usize, at: Instant) {
        self.hosts[index].scheduled = true;
        self.timers.push(Reverse((at, index)));
    }

    /// The next ready host (moving hosts whose time came to the ready queue first); it is
    /// no longer scheduled.
    pub(crate) fn next_ready(&mut self, now: Instant) -> Option<usize> {
        while let Some(Reverse((at, index))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.ready.push_back(index);
        }
        let index = self.ready.pop_front()?;
        self.hosts[index].scheduled = false;
        Some(index)
    }

    /// When the earliest timer fires.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Every queued page entry, for saving (the queues are emptied).
    pub(crate) fn drain_pages(&mut self) -> Vec<Entry> {
        let mut pages = Vec::new();
        for host in &mut self.hosts {
            pages.extend(
                host.queue
                    .drain()
                    .map(|queued| queued.entry)
                    .filter(|entry| entry.kind == Kind::Page),
            );
        }
        self.queued = 0;
        pages
    }
}

/// A crawl's state on disk, to resume it: the URLs still to fetch and the fingerprints of
/// every URL seen.
#[derive(Debug, Default)]
pub struct SavedFrontier {
    pub(crate) pending: Vec<Entry>,
    pub(crate) seen: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    weir_crawl_frontier: u32,
    pending: usize,
    seen: usize,
}

#[derive(Serialize, Deserialize)]
struct SeenLine {
    seen: Vec<u64>,
}

impl SavedFrontier {
    /// URLs still to fetch.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Writes the frontier as JSON lines (a header, one line per pending URL, then the
    /// fingerprints), through a temporary file renamed into place once synced, so a crash
    /// while saving leaves the previous file whole.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let temporary = path.with_extension("tmp");
        let file = std::fs::File::create(&temporary)?;
        let mut out = std::io::BufWriter::new(file);
        let header = Header {
            weir_crawl_frontier: 1,
            pending: self.pending.len(),
            seen: self.seen.len(),
        };
        serde_json::to_writer(&mut out, &header)?;
        out.write_all(b"\n")?;
        for entry in &self.pending {
            serde_json::to_writer(&mut out, entry)?;
            out.write_all(b"\n")?;
        }
        for chunk in self.seen.chunks(4096) {
            serde_json::to_writer(
                &mut out,
                &SeenLine {
                    seen: chunk.to_vec(),
                },
            )?;
            out.write_all(b"\n")?;
        }
        out.into_inner()
            .map_err(|error| error.into_error())?
            .sync_all()?;
        std::fs::rename(&temporary, path)
    }

    /// Reads a frontier written by [`SavedFrontier::save`].
    pub fn load(path: &Path) -> std::io::Result<SavedFrontier> {
        let invalid = |line: usize, what: &dyn std::fmt::Display| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}:{line}: {what}", path.display()),
            )
        };
        let reader = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut lines = reader.lines();
        let header: Header = match lines.next() {
            Some(line) => serde_json::from_str(&line?).map_err(|error| invalid(1, &error))?,
            None => return Err(invalid(1, &"empty file, not a saved frontier")),
        };
        if header.weir_crawl_frontier != 1 {
            return Err(invalid(
                1,
                &format!("frontier format {} is not 1", header.weir_crawl_frontier),
            ));
        }
        let mut saved = SavedFrontier::default();
        for (number, line) in lines.enumerate() {
            let line = line?;
            if saved.pending.len() < header.pending {
                saved.pending.push(
                    serde_json::from_str(&line).map_err(|error| invalid(number + 2, &error))?,
                );
            } else {
                let seen: SeenLine =
                    serde_json::from_str(&line).map_err(|error| invalid(number + 2, &error))?;
                saved.seen.extend(seen.seen);
            }
        }
        if saved.pending.len() != header.pending || saved.seen.len() != header.seen {
            return Err(invalid(0, &"the file is cut short"));
        }
        Ok(saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, depth: u32, kind: Kind) -> Entry {
        Entry::new(Url::parse(url).unwrap(), depth, None, kind)
    }

    #[tokio::test(start_paused = true)]
    async fn robots_then_sitemaps_then_the_shallowest_page_first() {
        let mut frontier = Frontier::default();
        let (host, _) = frontier.host_index("a", true, Duration::ZERO);
        frontier.push(host, entry("http://a/deep", 3, Kind::Page));
        frontier.push(host, entry("http://a/shallow", 1, Kind::Page));
        frontier.push(host, entry("http://a/sitemap.xml", 0, Kind::Sitemap));
        frontier.push(host, entry("http://a/robots.txt", 0, Kind::Robots));
        frontier.push(host, entry("http://a/shallow2", 1, Kind::Page));
        let order: Vec<String> = std::iter::from_fn(|| frontier.pop(host))
            .map(|e| e.url.path().to_owned())
            .collect();
        assert_eq!(
            order,
            [
                "/robots.txt",
                "/sitemap.xml",
                "/shallow",
                "/shallow2",
                "/deep"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hosts_take_turns_and_timers_wait() {
        let mut frontier = Frontier::default();
        let (a, _) = frontier.host_index("a", false, Duration::ZERO);
        let (b, _) = frontier.host_index("b", false, Duration::ZERO);
        frontier.push(a, entry("http://a/1", 0, Kind::Page));
        frontier.push(a, entry("http://a/2", 0, Kind::Page));
        frontier.push(b, entry("http://b/1", 0, Kind::Page));
        let now = Instant::now();
        assert_eq!(frontier.next_ready(now), Some(a));
        frontier.schedule_at(a, now + Duration::from_secs(1));
        assert_eq!(frontier.next_ready(now), Some(b));
        assert_eq!(frontier.next_ready(now), None);
        assert_eq!(frontier.next_timer(), Some(now + Duration::from_secs(1)));
        assert_eq!(frontier.next_ready(now + Duration::from_secs(1)), Some(a));
    }

    #[test]
    fn a_saved_frontier_reads_back_and_a_cut_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("weir-frontier-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.jsonl");
        let mut deep = entry("http://a/x?y=1", 2, Kind::Page);
        deep.referrer = Some("http://a/".into());
        deep.tries = 1;
        let saved = SavedFrontier {
            pending: vec![deep, entry("http://b/", 0, Kind::Page)],
            seen: (0..5000).collect(),
        };
        saved.save(&path).unwrap();
        let loaded = SavedFrontier::load(&path).unwrap();
        assert_eq!(loaded.pending.len(), 2);
        assert_eq!(loaded.pending[0].url.as_str(), "http://a/x?y=1");
        assert_eq!(loaded.pending[0].referrer.as_deref(), Some("http://a/"));
        assert_eq!(loaded.pending[0].tries, 1);
        assert_eq!(loaded.seen, saved.seen);
        let text = std::fs::read_to_string(&path).unwrap();
        let cut: String = text
            .lines()
            .take(3)
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(&path, cut).unwrap();
        assert!(SavedFrontier::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
