//! The crawl loop: one task owns the frontier, the seen set and the output, and starts
//! fetches as hosts become ready; each fetch runs in its own task.
//!
//! Owning all state in one task means no locks on the hot path: fetch tasks send back what
//! they found (through the `JoinSet`), and only this loop decides what is new and where it
//! goes. The loop sleeps in one `select!` on: a fetch finishing, the next host's rate-limit
//! slot, the stop signal, the time budget and, once stopping, the drain deadline.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use texting_robots::Robot;
use thiserror::Error;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use url::Url;
use weir_client::{Client, Quota, RetryPolicy};

use crate::config::CrawlConfig;
use crate::fetch::{fetch, sitemap_locations, Answer, Fetched, Outcome};
use crate::frontier::{Entry, Frontier, Kind, Robots, SavedFrontier};
use crate::normalize::{host_key, normalize, same_site};
use crate::output::{Output, Progress};
use crate::record::{Record, SkipReason, StopReason, Summary};
use crate::seen::{Seen, SeenSet};

/// The longest `Retry-After` waited for; a server asking for more gets the URL recorded
/// with its status instead.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);
/// The most a host's spacing grows after repeated 429 and 503 answers.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The first backoff step after a 429 or 503 without `Retry-After`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Sitemaps fetched per crawl (an index may list thousands).
const MAX_SITEMAPS: usize = 1000;
/// Redirects of a robots.txt followed (RFC 9309 §2.3.1.2 asks for at least five).
const ROBOTS_REDIRECTS: u8 = 5;

/// Why a crawl could not run.
#[derive(Debug, Error)]
pub enum CrawlError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// Writing a record failed (a full disk, a closed pipe).
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
    /// Nothing to crawl.
    #[error("no start URL (give one, or --resume a saved frontier)")]
    NoSeeds,
}

/// How a crawl ended.
#[derive(Debug)]
pub struct Finished {
    /// The totals, as also written last to the output.
    pub summary: Summary,
    /// What was left to fetch, when the crawl stopped before the end.
    pub frontier: Option<SavedFrontier>,
    /// When the crawl was limited to some hosts: the first URL seen on each other host
    /// (at most [`MAX_OTHER_HOSTS`]), for whoever crawls those.
    pub other_hosts: Vec<Url>,
}

/// Other hosts remembered for [`Finished::other_hosts`].
pub const MAX_OTHER_HOSTS: usize = 1000;

/// A crawler with its settings and its HTTP client.
#[derive(Debug)]
pub struct Crawler {
    config: Arc<CrawlConfig>,
    client: Client,
    progress: Arc<Progress>,
}

impl Crawler {
    /// A crawler for `config`.
    pub fn new(config: CrawlConfig) -> Result<Crawler, CrawlError> {
        // Retries are the crawler's own (a URL goes back to its host's queue), so a
        // backing-off host never holds a concurrency slot while it waits; redirects too,
        // so every hop passes its own host's robots rules and delay.
        let client = Client::builder()
            .retry(RetryPolicy::none())
            .max_redirects(0)
            .egress(config.egress.clone())
            .user_agent(config.user_agent.clone())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|error| CrawlError::Client(error.to_string()))?;
        Ok(Crawler {
            config: Arc::new(config),
            client,
            progress: Arc::new(Progress::default()),
        })
    }

    /// Live counters, for a progress display.
    pub fn progress(&self) -> Arc<Progress> {
        Arc::clone(&self.progress)
    }

    /// Crawls until the frontier is empty, a budget runs out or `stop` is cancelled, writing
    /// a record per URL and the summary to `output`.
    pub async fn run(
        self,
        output: &mut dyn Output,
        stop: CancellationToken,
        resume: Option<SavedFrontier>,
    ) -> Result<Finished, CrawlError> {
        let started = Instant::now();
        let mut run = Run::new(&self, output);
        let resuming = resume.is_some();
        if let Some(saved) = resume {
            for print in saved.seen {
                run.seen.restore(print);
            }
            for entry in saved.pending {
                run.push(entry);
            }
        }
        for seed in &self.config.seeds {
            run.seed(seed.clone(), resuming)?;
        }
        if run.frontier.queued() == 0 && !resuming {
            return Err(CrawlError::NoSeeds);
        }
        // `instrument`, not `span.enter()`: a guard held across an `.await` would leave the
        // span entered on this thread for whatever task runs there while the crawl waits.
        let span = tracing::info_span!("crawl", seeds = self.config.seeds.len());
        let stopped = run.crawl(&stop, started).instrument(span.clone()).await?;
        // The rest does not wait: entering the span for it is safe.
        let _in_span = span.enter();

        let mut pending = run.frontier.drain_pages();
        pending.extend(
            run.in_flight
                .into_values()
                .filter(|entry| entry.kind == Kind::Page),
        );
        run.summary.pending = pending.len() as u64;
        run.summary.stopped = Some(stopped);
        run.summary.hosts = run.frontier.hosts() as u64;
        run.summary.elapsed_s = started.elapsed().as_secs_f64();
        run.summary.pages_per_s = run.summary.pages as f64 / run.summary.elapsed_s.max(1e-9);
        run.output.summary(&run.summary)?;
        let frontier = (!pending.is_empty()).then(|| SavedFrontier {
            pending,
            seen: run.seen.fingerprints().collect(),
        });
        tracing::info!(pages = run.summary.pages, ?stopped, "crawl ended");
        Ok(Finished {
            summary: run.summary,
            frontier,
            other_hosts: run.other_hosts.into_values().collect(),
        })
    }
}

/// The state of one running crawl.
struct Run<'a> {
    config: Arc<CrawlConfig>,
    client: Client,
    progress: Arc<Progress>,
    output: &'a mut dyn Output,
    frontier: Frontier,
    seen: SeenSet,
    summary: Summary,
    sites: Vec<String>,
    sitemaps: HashSet<String>,
    other_hosts: BTreeMap<String, Url>,
    robots_agent: String,
    pages_started: u64,
    tasks: JoinSet<Fetched>,
    in_flight: HashMap<tokio::task::Id, Entry>,
}

impl<'a> Run<'a> {
    fn new(crawler: &Crawler, output: &'a mut dyn Output) -> Run<'a> {
        let config = Arc::clone(&crawler.config);
        // robots.txt groups name the product token: `weir-crawl` of `weir-crawl/0.1`.
        let robots_agent = config
            .user_agent
            .split(['/', ' '])
            .next()
            .unwrap_or_default()
            .to_owned();
        Run {
            seen: SeenSet::new(config.max_urls),
            client: crawler.client.clone(),
            progress: Arc::clone(&crawler.progress),
            output,
            frontier: Frontier::default(),
            summary: Summary::default(),
            sites: config
                .seeds
                .iter()
                .filter_map(|seed| seed.host_str().map(str::to_owned))
                .collect(),
            sitemaps: HashSet::new(),
            other_hosts: BTreeMap::new(),
            robots_agent,
            pages_started: 0,
            tasks: JoinSet::new(),
            in_flight: HashMap::new(),
            config,
        }
    }

    async fn crawl(
        &mut self,
        stop: &CancellationToken,
        started: Instant,
    ) -> Result<StopReason, CrawlError> {
        let max_time_at = self.config.max_time.map(|limit| started + limit);
        let mut stopping: Option<StopReason> = None;
        let mut drain_at: Option<Instant> = None;
        loop {
            if stopping.is_none() {
                stopping = self.launch()?;
            }
            if stopping.is_some() && drain_at.is_none() {
                drain_at = Some(Instant::now() + self.config.drain);
            }
            self.update_progress();
            if self.tasks.is_empty() && (stopping.is_some() || self.frontier.next_timer().is_none())
            {
                return Ok(stopping.unwrap_or(StopReason::Done));
            }
            let timer = self.frontier.next_timer().filter(|_| stopping.is_none());
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                biased;
                _ = stop.cancelled(), if stopping.is_none() => stopping = Some(StopReason::Interrupted),
                _ = tokio::time::sleep_until(max_time_at.unwrap_or(far)), if stopping.is_none() && max_time_at.is_some() => {
                    stopping = Some(StopReason::MaxTime);
                }
                _ = tokio::time::sleep_until(drain_at.unwrap_or(far)), if drain_at.is_some() => {
                    // In-flight fetches had their time: abort them; `in_flight` keeps
                    // their entries, which go to the saved frontier.
                    self.tasks.shutdown().await;
                    return Ok(stopping.unwrap_or(StopReason::Interrupted));
                }
                joined = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => match joined {
                    Some(Ok((id, fetched))) => {
                        self.in_flight.remove(&id);
                        self.complete(fetched)?;
                    }
                    Some(Err(error)) => {
                        if let Some(entry) = self.in_flight.remove(&error.id()) {
                            self.skip(entry, SkipReason::Error, format!("fetch task failed: {error}"))?;
                        }
                    }
                    None => {}
                },
                _ = tokio::time::sleep_until(timer.unwrap_or(far)), if timer.is_some() => {}
            }
        }
    }

    fn update_progress(&self) {
        Progress::set(&self.progress.queued, self.frontier.queued());
        Progress::set(&self.progress.in_flight, self.tasks.len() as u64);
    }

    /// Starts fetches while slots are free and hosts are ready. Returns a stop reason
    /// when the page budget is reached.
    fn launch(&mut self) -> Result<Option<StopReason>, CrawlError> {
        let now = Instant::now();
        while self.tasks.len() < self.config.concurrency {
            let Some(index) = self.frontier.next_ready(now) else {
                break;
            };
            let host = self.frontier.host(index);
            let robots_queued = host.peek().is_some_and(|entry| entry.kind == Kind::Robots);
            match host.robots {
                Robots::Unknown => {
                    // robots.txt goes first in the host's queue (its kind ranks before
                    // everything) and takes the common path below: a slot, then a fetch.
                    host.robots = Robots::Fetching;
                    let robots_url = self.robots_url(index);
                    self.frontier
                        .push(index, Entry::new(robots_url, 0, None, Kind::Robots));
                }
                // While robots.txt is being read, only robots.txt goes: a retry, a redirect.
                Robots::Fetching if !robots_queued => continue,
                Robots::Fetching | Robots::Ready(_) | Robots::Unavailable(_) => {}
            }
            let host = self.frontier.host(index);
            if host.in_flight >= self.config.per_host {
                continue;
            }
            self.drop_blocked(index)?;
            let host = self.frontier.host(index);
            if host.queued() == 0 {
                continue;
            }
            let key = host.key.clone();
            if let Err(at) = self.client.rate_limiter().try_acquire(&key) {
                self.frontier.schedule_at(index, at);
                continue;
            }
            let entry = self.frontier.pop(index).expect("the queue is not empty");
            if entry.kind == Kind::Page && entry.tries == 0 {
                self.frontier.host(index).pages += 1;
                self.pages_started += 1;
            }
            self.spawn(index, entry);
            let host = self.frontier.host(index);
            if host.queued() > 0 && host.in_flight < self.config.per_host {
                self.frontier.schedule(index);
            }
            if self
                .config
                .max_pages
                .is_some_and(|max| self.pages_started >= max)
            {
                return Ok(Some(StopReason::MaxPages));
            }
        }
        Ok(None)
    }

    /// Records and drops the host's next entries while robots.txt or the host's page
    /// budget rules them out.
    fn drop_blocked(&mut self, index: usize) -> Result<(), CrawlError> {
        loop {
            let host = self.frontier.host(index);
            let Some(entry) = host.peek() else {
                return Ok(());
            };
            if entry.kind != Kind::Page {
                return Ok(());
            }
            let blocked = match &host.robots {
                Robots::Ready(Some(robot)) if !robot.allowed(entry.url.as_str()) => {
                    Some((SkipReason::Robots, "disallowed by robots.txt".to_owned()))
                }
                Robots::Unavailable(reason) => Some((
                    SkipReason::Robots,
                    format!("robots.txt unavailable: {reason}"),
                )),
                _ => match self.config.max_pages_per_host {
                    Some(max) if host.pages >= max && entry.tries == 0 => Some((
                        SkipReason::Budget,
                        format!("host page budget ({max}) spent"),
                    )),
                    _ => None,
                },
            };
            let Some((reason, detail)) = blocked else {
                return Ok(());
            };
            let entry = self.frontier.pop(index).expect("peeked");
            self.skip(entry, reason, detail)?;
        }
    }

    fn robots_url(&self, index: usize) -> Url {
        let host = &self.frontier.hosts_ref()[index];
        let key = &host.key;
        // Every entry of a host shares its scheme, so the host's first queued URL says it.
        let scheme = host.peek().map_or("http", |entry| entry.url.scheme());
        Url::parse(&format!("{scheme}://{key}/robots.txt")).expect("a host key makes a valid URL")
    }

    fn spawn(&mut self, index: usize, entry: Entry) {
        self.frontier.host(index).in_flight += 1;
        let task = fetch(
            self.client.clone(),
            entry.clone(),
            index,
            self.config.max_body,
            self.config.timeout,
        );
        let handle = self.tasks.spawn(task);
        self.in_flight.insert(handle.id(), entry);
    }

    /// A seed URL: depth 0, its own line when given twice.
    fn seed(&mut self, url: Url, resuming: bool) -> Result<(), CrawlError> {
        let Some(url) = normalize(url) else {
            return Ok(());
        };
        match self.seen.insert(url.as_str()) {
            Seen::New => self.push(Entry::new(url, 0, None, Kind::Page)),
            Seen::Duplicate if resuming => {}
            Seen::Duplicate => self.skip(
                Entry::new(url, 0, None, Kind::Page),
                SkipReason::Duplicate,
                "given twice".into(),
            )?,
            Seen::Full => self.skip(
                Entry::new(url, 0, None, Kind::Page),
                SkipReason::Budget,
                "dedupe capacity (max_urls) reached".into(),
            )?,
        }
        Ok(())
    }

    /// Queues `entry` on its host (the key is host and port, scheme aside).
    fn push(&mut self, entry: Entry) {
        let key = host_key(&entry.url);
        let (index, new) = self
            .frontier
            .host_index(&key, self.config.robots, self.config.delay);
        if new && !self.config.delay.is_zero() {
            self.client
                .rate_limiter()
                .set_quota(&key, Quota::every(self.config.delay));
        }
        self.frontier.push(index, entry);
    }

    /// A link found on a page or in a sitemap: dedupe, scope, depth, then the queue.
    fn discover(
        &mut self,
        url: Url,
        depth: u32,
        referrer: &Url,
        redirects: u8,
    ) -> Result<(), CrawlError> {
        match self.seen.insert(url.as_str()) {
            Seen::Duplicate => {
                self.summary.duplicates += 1;
                return Ok(());
            }
            Seen::Full => {
                let entry = Entry::new(url, depth, Some(referrer.to_string()), Kind::Page);
                return self.skip(
                    entry,
                    SkipReason::Budget,
                    "dedupe capacity (max_urls) reached".into(),
                );
            }
            Seen::New => {}
        }
        let mut entry = Entry::new(url, depth, Some(referrer.to_string()), Kind::Page);
        entry.redirects = redirects;
        if let Some(detail) = self.out_of_scope(&entry.url) {
            return self.skip(entry, SkipReason::Excluded, detail);
        }
        if let Some(max) = self.config.max_depth.filter(|max| depth > *max) {
            return self.skip(entry, SkipReason::Budget, format!("depth {depth} > {max}"));
        }
        self.push(entry);
        Ok(())
    }

    fn out_of_scope(&mut self, url: &Url) -> Option<String> {
        if let Some(detail) = self.outside_filters(url) {
            return Some(detail);
        }
        if !self.config.hosts.is_empty() {
            let key = host_key(url);
            if !self.config.hosts.contains(&key) {
                if self.other_hosts.len() < MAX_OTHER_HOSTS {
                    self.other_hosts.entry(key).or_insert_with(|| url.clone());
                }
                return Some("another host than this crawl's".into());
            }
        }
        None
    }

    fn outside_filters(&self, url: &Url) -> Option<String> {
        if self.config.same_site && !self.sites.iter().any(|site| same_site(site, url)) {
            return Some("not on the start URLs' sites".into());
        }
        let text = url.as_str();
        if !self.config.include.is_empty()
            && !self.config.include.iter().any(|re| re.is_match(text))
        {
            return Some("matches no --include".into());
        }
        self.config
            .exclude
            .iter()
            .find(|re| re.is_match(text))
            .map(|re| format!("matches --exclude {re}"))
    }

    fn skip(&mut self, entry: Entry, reason: SkipReason, detail: String) -> Result<(), CrawlError> {
        match reason {
            SkipReason::Robots => self.summary.robots_skipped += 1,
            SkipReason::Budget => self.summary.budget_skipped += 1,
            SkipReason::Excluded => self.summary.excluded += 1,
            SkipReason::Duplicate => self.summary.duplicates += 1,
            SkipReason::Error => self.summary.errors += 1,
        }
        let counter = if reason == SkipReason::Error {
            &self.progress.errors
        } else {
            &self.progress.skipped
        };
        Progress::add(counter, 1);
        let record = Record {
            url: entry.url.into(),
            depth: entry.depth,
            referrer: entry.referrer,
            tries: (entry.tries > 0).then_some(entry.tries + 1),
            skipped: Some(reason),
            detail: Some(detail),
            ..Record::default()
        };
        self.output.record(&record).map_err(CrawlError::Output)
    }

    fn complete(&mut self, fetched: Fetched) -> Result<(), CrawlError> {
        let Fetched {
            entry,
            host: index,
            outcome,
            elapsed,
        } = fetched;
        self.frontier.host(index).in_flight -= 1;
        match (entry.kind, outcome) {
            (Kind::Robots, outcome) => self.robots_done(index, entry, outcome),
            (Kind::Sitemap, outcome) => self.sitemap_done(index, entry, outcome)?,
            (Kind::Page, Outcome::Response(answer)) => {
                self.page_done(index, entry, answer, elapsed)?
            }
            (Kind::Page, Outcome::Failed(error, retryable)) => {
                if !(retryable && self.try_again(index, &entry, None, false)) {
                    self.skip(entry, SkipReason::Error, error)?;
                }
            }
        }
        self.frontier.schedule(index);
        Ok(())
    }

    /// Puts `entry` back on its host's queue for another try, if it has tries left;
    /// `backoff` (a 429 or 503) widens the host's spacing.
    fn try_again(
        &mut self,
        index: usize,
        entry: &Entry,
        retry_after: Option<Duration>,
        backoff: bool,
    ) -> bool {
        if entry.tries + 1 >= self.config.max_tries
            || retry_after.is_some_and(|wait| wait > RETRY_AFTER_CAP)
        {
            return false;
        }
        let mut again = entry.clone();
        again.tries += 1;
        let key = self.frontier.host(index).key.clone();
        if backoff {
            let host = self.frontier.host(index);
            host.backoff = (host.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
            self.pace(index);
        }
        let wait = retry_after.unwrap_or(self.frontier.host(index).backoff);
        if !wait.is_zero() {
            self.client
                .rate_limiter()
                .defer(&key, Instant::now() + wait);
        }
        self.frontier.push(index, again);
        true
    }

    /// Sets the host's spacing: the larger of its configured delay and its backoff.
    fn pace(&self, index: usize) {
        let host = &self.frontier.hosts_ref()[index];
        let interval = host.base_interval.max(host.backoff);
        self.client
            .rate_limiter()
            .set_quota(&host.key, Quota::every(interval));
    }

    /// A success halves the host's backoff, so it recovers its pace.
    fn recover(&mut self, index: usize) {
        let host = self.frontier.host(index);
        if host.backoff.is_zero() {
            return;
        }
        host.backoff /= 2;
        if host.backoff < Duration::from_millis(50) {
            host.backoff = Duration::ZERO;
        }
        self.pace(index);
    }

    fn page_done(
        &mut self,
        index: usize,
        entry: Entry,
        answer: Answer,
        elapsed: Duration,
    ) -> Result<(), CrawlError> {
        let status = answer.status;
        let retryable = status == 408 || status == 429 || (status >= 500 && status != 501);
        if retryable {
            let backoff = status == 429 || status == 503;
            if self.try_again(index, &entry, answer.retry_after, backoff) {
                return Ok(());
            }
        } else {
            self.recover(index);
        }
        self.summary.pages += 1;
        self.summary.bytes += answer.bytes;
        if (200..300).contains(&status) {
            self.summary.ok += 1;
        }
        Progress::add(&self.progress.pages, 1);
        Progress::add(&self.progress.bytes, answer.bytes);
        let redirect = answer
            .location
            .clone()
            .filter(|_| (300..400).contains(&status));
        let mut detail = None;
        if let Some(target) = &redirect {
            self.summary.redirects += 1;
            if entry.redirects >= self.config.max_redirects {
                detail = Some(format!(
                    "not followed: more than {} redirects",
                    self.config.max_redirects
                ));
            } else {
                self.discover(target.clone(), entry.depth, &entry.url, entry.redirects + 1)?;
            }
        }
        let record = Record {
            final_url: Some(redirect.as_ref().unwrap_or(&entry.url).to_string()),
            url: entry.url.to_string(),
            status: Some(status),
            depth: entry.depth,
            referrer: entry.referrer.clone(),
            content_type: answer.content_type,
            bytes: Some(answer.bytes),
            truncated: answer.truncated,
            title: answer.title,
            links: Some(answer.links_found),
            fetch_ms: Some((elapsed.as_secs_f64() * 1e6).round() / 1e3),
            tries: (entry.tries > 0).then_some(entry.tries + 1),
            skipped: None,
            detail,
        };
        self.output.record(&record)?;
        for link in answer.links {
            self.discover(link, entry.depth + 1, &entry.url, 0)?;
        }
        Ok(())
    }

    fn robots_done(&mut self, index: usize, entry: Entry, outcome: Outcome) {
        self.summary.robots_and_sitemaps += 1;
        let answer = match outcome {
            Outcome::Response(answer) => answer,
            Outcome::Failed(error, retryable) => {
                if !(retryable && self.try_again(index, &entry, None, false)) {
                    self.frontier.host(index).robots = Robots::Unavailable(error);
                }
                return;
            }
        };
        let status = answer.status;
        let rules = match status {
            200..=299 => Robot::new(&self.robots_agent, &answer.body).ok(),
            300..=399 if entry.redirects < ROBOTS_REDIRECTS => {
                if let Some(location) = answer.location {
                    let mut next = Entry::new(location, 0, None, Kind::Robots);
                    next.redirects = entry.redirects + 1;
                    self.frontier.push(index, next);
                    return;
                }
                None
            }
            408 | 429 | 500..=599 => {
                if self.try_again(
                    index,
                    &entry,
                    answer.retry_after,
                    status == 429 || status == 503,
                ) {
                    return;
                }
                self.frontier.host(index).robots = Robots::Unavailable(format!("status {status}"));
                return;
            }
            // 4xx (and too many redirects): no rules, everything allowed (RFC 9309 §2.3.1.3).
            _ => None,
        };
        if let Some(robot) = &rules {
            if let Some(delay) = robot
                .delay
                .filter(|delay| delay.is_finite() && *delay > 0.0)
            {
                let delay = Duration::from_secs_f32(delay.min(3600.0));
                let host = self.frontier.host(index);
                host.base_interval = host.base_interval.max(delay);
                self.pace(index);
            }
            if self.config.sitemaps {
                for sitemap in robot.sitemaps.clone() {
                    self.add_sitemap(&sitemap);
                }
            }
        }
        self.frontier.host(index).robots = Robots::Ready(rules.map(Box::new));
    }

    fn add_sitemap(&mut self, location: &str) {
        let Some(url) = Url::parse(location).ok().and_then(normalize) else {
            return;
        };
        if self.sitemaps.len() < MAX_SITEMAPS && self.sitemaps.insert(url.to_string()) {
            self.push(Entry::new(url, 0, None, Kind::Sitemap));
        }
    }

    fn sitemap_done(
        &mut self,
        index: usize,
        entry: Entry,
        outcome: Outcome,
    ) -> Result<(), CrawlError> {
        self.summary.robots_and_sitemaps += 1;
        let answer = match outcome {
            Outcome::Response(answer) if (200..300).contains(&answer.status) => answer,
            Outcome::Response(answer) => {
                let status = answer.status;
                if status == 429 || status >= 500 {
                    self.try_again(
                        index,
                        &entry,
                        answer.retry_after,
                        status == 429 || status == 503,
                    );
                }
                return Ok(());
            }
            Outcome::Failed(_, retryable) => {
                if retryable {
                    self.try_again(index, &entry, None, false);
                }
                return Ok(());
            }
        };
        let (locations, is_index) = sitemap_locations(&answer.body);
        for location in locations {
            if is_index {
                self.add_sitemap(&location);
            } else if let Some(url) = Url::parse(&location).ok().and_then(normalize) {
                self.discover(url, 1, &entry.url, 0)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::JsonLines;

    fn crawler(hosts: &[&str]) -> Crawler {
        Crawler::new(CrawlConfig {
            seeds: vec![Url::parse("http://start.test/").unwrap()],
            hosts: hosts.iter().map(|host| (*host).to_owned()).collect(),
            ..CrawlConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn sitemaps_past_the_cap_are_not_fetched() {
        let crawler = crawler(&[]);
        let mut output = JsonLines(Vec::new());
        let mut run = Run::new(&crawler, &mut output);
        // The same sitemap named twice is fetched once: the repeat takes no place under
        // the cap.
        run.add_sitemap("http://start.test/sitemap-0.xml");
        run.add_sitemap("http://start.test/sitemap-0.xml");
        assert_eq!(run.frontier.queued(), 1);
        for i in 0..MAX_SITEMAPS + 500 {
            run.add_sitemap(&format!("http://start.test/sitemap-{i}.xml"));
        }
        assert_eq!(run.sitemaps.len(), MAX_SITEMAPS);
        let sitemap = |i: usize| format!("http://start.test/sitemap-{i}.xml");
        assert!(run.sitemaps.contains(&sitemap(MAX_SITEMAPS - 1)));
        assert!(!run.sitemaps.contains(&sitemap(MAX_SITEMAPS)));
        assert_eq!(run.frontier.queued(), MAX_SITEMAPS as u64);
    }

    #[test]
    fn other_hosts_are_remembered_up_to_the_cap_and_refused_past_it() {
        let crawler = crawler(&["start.test"]);
        let mut output = JsonLines(Vec::new());
        let mut run = Run::new(&crawler, &mut output);
        let inside = Url::parse("http://start.test/page").unwrap();
        assert_eq!(run.out_of_scope(&inside), None);
        // A second URL on a remembered host keeps the first and takes no place.
        let first = Url::parse("http://host-0.test/a").unwrap();
        let again = Url::parse("http://host-0.test/b").unwrap();
        assert!(run.out_of_scope(&first).is_some() && run.out_of_scope(&again).is_some());
        assert_eq!(run.other_hosts.len(), 1);
        for i in 0..MAX_OTHER_HOSTS + 500 {
            let url = Url::parse(&format!("http://host-{i}.test/a")).unwrap();
            assert_eq!(
                run.out_of_scope(&url).as_deref(),
                Some("another host than this crawl's"),
                "past the cap, other hosts are still out of scope"
            );
        }
        assert_eq!(run.other_hosts.len(), MAX_OTHER_HOSTS);
        assert_eq!(run.other_hosts["host-0.test"].path(), "/a");
        // host-0 counted once: the hosts after it fill the other places.
        let host = |i: usize| format!("host-{i}.test");
        assert!(run.other_hosts.contains_key(&host(MAX_OTHER_HOSTS - 1)));
        assert!(!run.other_hosts.contains_key(&host(MAX_OTHER_HOSTS)));
    }
}
