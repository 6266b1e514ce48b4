//! The crawler against `weir demo-site`, over real loopback sockets: what it fetched is
//! read from the site's own request log (server side), and compared with what the site's
//! model says a polite crawler must fetch.

mod support;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use url::Url;
use weir_client::Egress;
use weir_crawl::{CrawlConfig, Crawler, JsonLines, Record, SkipReason, StopReason};
use weir_demo_site::{self as demo_site, Answer, Profile, Site, SiteConfig};

/// A demo site served in this process until the guard drops.
struct DemoSite {
    site: Site,
    shutdown: CancellationToken,
}

impl Drop for DemoSite {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn demo(config: SiteConfig) -> DemoSite {
    let (site, listeners) = demo_site::bind(SiteConfig { port: 0, ..config })
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(demo_site::serve(site.clone(), listeners, shutdown.clone()));
    DemoSite { site, shutdown }
}

impl DemoSite {
    /// Every request the site answered: (URL, arrival in ms).
    async fn log(&self) -> Vec<(String, f64)> {
        support::demo_log(&self.site.base(0)).await
    }
}

/// What a polite crawl limited to `max_depth` must fetch, from the site's model: a
/// breadth-first walk (sitemap entries at depth 1, redirect targets at their source's
/// depth) that never asks for what robots.txt disallows.
fn expected(site: &Site, max_depth: u32) -> BTreeSet<String> {
    let hosts = site.config().hosts;
    let mut fetched = BTreeSet::new();
    let mut depth: HashMap<String, u32> = HashMap::new();
    let mut queue = VecDeque::new();
    let mut visit = |url: String, d: u32, queue: &mut VecDeque<(String, u32)>| {
        if d <= max_depth && !depth.contains_key(&url) {
            depth.insert(url.clone(), d);
            queue.push_back((url, d));
        }
    };
    visit(site.start_url(), 0, &mut queue);
    for host in 0..hosts {
        fetched.insert(format!("{}/robots.txt", site.base(host)));
        fetched.insert(format!("{}/sitemap.xml", site.base(host)));
        let Answer::Other(_, sitemap) = site.answer(host, "/sitemap.xml") else {
            panic!("no sitemap")
        };
        for loc in String::from_utf8(sitemap).unwrap().split("<loc>").skip(1) {
            visit(
                loc.split("</loc>").next().unwrap().to_owned(),
                1,
                &mut queue,
            );
        }
    }
    while let Some((url, d)) = queue.pop_front() {
        let parsed = Url::parse(&url).unwrap();
        if parsed.path().starts_with("/private/") {
            continue;
        }
        fetched.insert(url.clone());
        let host = host_index(&parsed);
        let body = match site.answer(host, parsed.path()) {
            Answer::Html(body) | Answer::Slow(_, body) | Answer::Busy(_, body) => body,
            Answer::Redirect(location) => {
                visit(parsed.join(&location).unwrap().to_string(), d, &mut queue);
                continue;
            }
            Answer::Other(..) | Answer::NotFound => continue,
        };
        for href in body.split("href=\"").skip(1) {
            let mut link = parsed.join(href.split('"').next().unwrap()).unwrap();
            link.set_fragment(None);
            visit(link.to_string(), d + 1, &mut queue);
        }
    }
    fetched
}

fn host_index(url: &Url) -> usize {
    let ip = url.host_str().unwrap();
    ip.rsplit('.').next().unwrap().parse::<usize>().unwrap() - 2
}

async fn crawl(config: CrawlConfig) -> (Vec<Record>, weir_crawl::Finished) {
    let mut out = JsonLines(Vec::new());
    let finished = Crawler::new(config)
        .unwrap()
        .run(&mut out, CancellationToken::new(), None)
        .await
        .unwrap();
    let records = String::from_utf8(out.0)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("{\"summary\""))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (records, finished)
}

fn config(site: &Site) -> CrawlConfig {
    CrawlConfig {
        seeds: vec![Url::parse(&site.start_url()).unwrap()],
        // The demo site is on loopback addresses, which a crawl refuses by default.
        egress: Egress::any(),
        ..CrawlConfig::default()
    }
}

/// The whole allowed site, exactly, with fewer shared slots than hosts: the case where
/// spider lets an idle host end its crawl and drops most of the site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_fetches_exactly_the_allowed_site_with_a_shared_pool() {
    let demo = demo(SiteConfig {
        pages: 150,
        hosts: 4,
        ..SiteConfig::default()
    })
    .await;
    let (records, finished) = crawl(CrawlConfig {
        max_depth: Some(20),
        concurrency: 3,
        per_host: 2,
        ..config(&demo.site)
    })
    .await;
    let log = demo.log().await;
    let fetched: BTreeSet<String> = log.iter().map(|(url, _)| url.clone()).collect();
    let want = expected(&demo.site, 20);
    let missing: Vec<_> = want.difference(&fetched).collect();
    let extra: Vec<_> = fetched.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}\nextra {extra:?}"
    );

    // Robots: nothing under /private/ was asked for, and each one found is on record.
    assert!(log.iter().all(|(url, _)| !url.contains("/private/")));
    let robots_skipped = records
        .iter()
        .filter(|r| r.skipped == Some(SkipReason::Robots))
        .count();
    assert!(robots_skipped > 0);
    assert_eq!(finished.summary.robots_skipped as usize, robots_skipped);
    // The calendar trap stopped at the depth budget, with the first month past it on record.
    let calendar = records
        .iter()
        .filter(|r| r.url.contains("/calendar/") && r.status == Some(200))
        .count();
    assert_eq!(calendar, 2 * (20 - 2) + 1);
    assert!(records
        .iter()
        .any(|r| r.url.contains("/calendar/") && r.skipped == Some(SkipReason::Budget)));
    // Every page fetched once, except the 429s, asked twice by design.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (url, _) in &log {
        *counts.entry(url.as_str()).or_default() += 1;
    }
    for (url, count) in counts {
        let want = if url.contains("/busy/") { 2 } else { 1 };
        assert_eq!(count, want, "{url}");
    }
    assert_eq!(finished.summary.stopped, Some(StopReason::Done));
    assert_eq!(finished.summary.pending, 0);
    // The redirect is on record with its target, and the target was fetched once.
    let redirect = records
        .iter()
        .find(|r| r.status == Some(301))
        .expect("a redirect");
    assert!(redirect.final_url.as_ref().unwrap().contains("/p/"));
    // The binary file counts as fetched, with no links looked for.
    let file = records
        .iter()
        .find(|r| r.url.ends_with("/files/report.bin"))
        .expect("the file");
    assert_eq!(
        (file.content_type.as_deref(), file.bytes, file.links),
        (Some("application/octet-stream"), Some(65_536), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_two_requests_to_a_host_come_closer_than_its_crawl_delay() {
    let delay = Duration::from_millis(200);
    let demo = demo(SiteConfig {
        pages: 24,
        hosts: 2,
        crawl_delay: delay,
        profile: Profile::Static,
        ..SiteConfig::default()
    })
    .await;
    let (_, finished) = crawl(CrawlConfig {
        concurrency: 16,
        per_host: 8,
        ..config(&demo.site)
    })
    .await;
    assert_eq!(finished.summary.stopped, Some(StopReason::Done));
    let log = demo.log().await;
    let mut by_host: HashMap<usize, Vec<f64>> = HashMap::new();
    for (url, at) in &log {
        by_host
            .entry(host_index(&Url::parse(url).unwrap()))
            .or_default()
            .push(*at);
    }
    assert_eq!(by_host.len(), 2);
    for (host, mut arrivals) in by_host {
        arrivals.sort_by(f64::total_cmp);
        // The first request is robots.txt, fetched before the delay is known.
        for pair in arrivals[1..].windows(2) {
            let gap = pair[1] - pair[0];
            // 5 ms of leeway for the request's own trip through the loopback.
            assert!(
                gap >= delay.as_secs_f64() * 1000.0 - 5.0,
                "host {host}: two requests {gap:.1} ms apart"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_asked_again_only_after_its_retry_after() {
    let demo = demo(SiteConfig {
        pages: 60,
        hosts: 2,
        ..SiteConfig::default()
    })
    .await;
    let (records, _) = crawl(CrawlConfig {
        max_depth: Some(6),
        ..config(&demo.site)
    })
    .await;
    let log = demo.log().await;
    let busy: Vec<&Record> = records
        .iter()
        .filter(|r| r.url.contains("/busy/"))
        .collect();
    assert!(!busy.is_empty());
    for record in busy {
        assert_eq!(
            (record.status, record.tries),
            (Some(200), Some(2)),
            "{record:?}"
        );
        let arrivals: Vec<f64> = log
            .iter()
            .filter(|(url, _)| *url == record.url)
            .map(|(_, at)| *at)
            .collect();
        assert_eq!(arrivals.len(), 2);
        assert!(
            arrivals[1] - arrivals[0] >= 990.0,
            "asked again after {:.0} ms",
            arrivals[1] - arrivals[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_time_budgets_contain_the_endless_calendar() {
    let demo = demo(SiteConfig {
        pages: 30,
        hosts: 2,
        ..SiteConfig::default()
    })
    .await;
    // No depth limit: only the budgets stop the calendar.
    let (_, by_pages) = crawl(CrawlConfig {
        max_pages: Some(120),
        ..config(&demo.site)
    })
    .await;
    assert_eq!(by_pages.summary.stopped, Some(StopReason::MaxPages));
    assert!(by_pages.summary.pages <= 120, "{}", by_pages.summary.pages);
    assert!(by_pages
        .frontier
        .is_some_and(|frontier| frontier.pending() > 0));
    let (_, by_time) = crawl(CrawlConfig {
        max_time: Some(Duration::from_secs(1)),
        ..config(&demo.site)
    })
    .await;
    assert_eq!(by_time.summary.stopped, Some(StopReason::MaxTime));
    assert!(by_time.summary.elapsed_s < 1.0 + CrawlConfig::default().drain.as_secs_f64() + 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_filters_and_same_site_skip_with_their_reason() {
    let demo = demo(SiteConfig {
        pages: 40,
        hosts: 3,
        profile: Profile::Static,
        ..SiteConfig::default()
    })
    .await;
    let exclude = regex::Regex::new("/p/1[0-9]$").unwrap();
    let (records, finished) = crawl(CrawlConfig {
        same_site: true,
        exclude: vec![exclude],
        ..config(&demo.site)
    })
    .await;
    let log = demo.log().await;
    let first_host = demo.site.base(0);
    assert!(
        log.iter().all(|(url, _)| url.starts_with(&first_host)),
        "left the start URL's host"
    );
    let excluded_page = regex::Regex::new("/p/1[0-9]$").unwrap();
    assert!(
        log.iter().all(|(url, _)| !excluded_page.is_match(url)),
        "fetched an excluded page"
    );
    let excluded: Vec<&Record> = records
        .iter()
        .filter(|r| r.skipped == Some(SkipReason::Excluded))
        .collect();
    assert!(excluded
        .iter()
        .any(|r| r.detail.as_deref() == Some("not on the start URLs' sites")));
    assert!(excluded.iter().any(|r| r
        .detail
        .as_deref()
        .is_some_and(|d| d.starts_with("matches --exclude"))));
    assert_eq!(finished.summary.excluded as usize, excluded.len());
}

/// `weir crawl` from the command line: stopped by its page budget, then resumed from the
/// saved frontier; together the two runs fetch the whole allowed site, each page once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_stopped_by_a_budget_resumes_from_its_frontier() {
    let demo = demo(SiteConfig {
        pages: 80,
        hosts: 3,
        ..SiteConfig::default()
    })
    .await;
    let dir = support::temp_dir("crawl-resume");
    let out = dir.join("pages.jsonl");
    let out_arg = out.to_str().unwrap();
    let run = |args: &[&str]| {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("crawl")
            .args(args)
            .args(["--depth", "12", "--out", out_arg])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{status:?}");
    };
    let start = demo.site.start_url();
    tokio::task::block_in_place(|| run(&[start.as_str(), "--max-pages", "40"]));
    let frontier = dir.join("pages.jsonl.frontier");
    assert!(frontier.exists(), "no frontier saved");
    tokio::task::block_in_place(|| run(&["--resume", frontier.to_str().unwrap()]));

    let text = std::fs::read_to_string(&out).unwrap();
    let summaries: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter_map(|line| line.get("summary").cloned())
        .collect();
    assert_eq!(summaries.len(), 2);
    assert_eq!(summaries[0]["stopped"], "max_pages");
    assert_eq!(summaries[1]["stopped"], "done");
    let log = demo.log().await;
    let pages: Vec<&String> = log
        .iter()
        .map(|(url, _)| url)
        .filter(|url| {
            !url.ends_with("/robots.txt")
                && !url.ends_with("/sitemap.xml")
                && !url.contains("/busy/")
        })
        .collect();
    let unique: BTreeSet<&String> = pages.iter().copied().collect();
    assert_eq!(
        pages.len(),
        unique.len(),
        "a page was fetched twice across the two runs"
    );
    let fetched: BTreeSet<String> = log.iter().map(|(url, _)| url.clone()).collect();
    assert_eq!(fetched, expected(&demo.site, 12));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ctrl-C: no new URLs, the summary written, the frontier saved, exit code 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_writes_the_summary_and_saves_the_frontier() {
    let demo = demo(SiteConfig {
        pages: 40,
        hosts: 2,
        crawl_delay: Duration::from_millis(300),
        profile: Profile::Static,
        ..SiteConfig::default()
    })
    .await;
    let dir = support::temp_dir("crawl-interrupt");
    let out = dir.join("pages.jsonl");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "crawl",
            &demo.site.start_url(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert_eq!(status.code(), Some(130));
    let text = std::fs::read_to_string(&out).unwrap();
    let summary: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["stopped"], "interrupted");
    assert!(summary["summary"]["pending"].as_u64().unwrap() > 0);
    assert!(dir.join("pages.jsonl.frontier").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_command_lines_are_refused_with_the_reason() {
    let run = |args: &[&str]| {
        let (code, _, stderr) = support::run_weir(&[&["crawl"], args].concat());
        (code, stderr)
    };
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("at least one URL"), "{stderr}");
    let (code, stderr) = run(&["ftp://example.com/"]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("only http and https"), "{stderr}");
    let (code, stderr) = run(&["http://127.0.0.1:1/", "--concurrency", "0"]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("--concurrency `0`"), "{stderr}");
    let (code, stderr) = run(&["http://127.0.0.1:1/", "--exclude", "("]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("--exclude `(`"), "{stderr}");
}

#[test]
fn demo_site_refuses_settings_it_cannot_serve() {
    let run = |args: &[&str]| {
        let (code, _, stderr) = support::run_weir(&[&["demo-site"], args].concat());
        (code, stderr)
    };
    let (code, stderr) = run(&["--hosts", "9"]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("--hosts `9`"), "{stderr}");
    let (code, stderr) = run(&["--pages", "2000000"]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("at most 1000000"), "{stderr}");
    let (code, stderr) = run(&["--crawl-delay", "soon"]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("--crawl-delay `soon`"), "{stderr}");
}

/// The limits the crawler states: the body cap, the dedupe capacity and the redirect
/// limit each end in a record that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_dedupe_and_redirect_limits_are_recorded() {
    let demo = demo(SiteConfig {
        pages: 60,
        hosts: 2,
        ..SiteConfig::default()
    })
    .await;
    let (records, _) = crawl(CrawlConfig {
        max_body: 300,
        ..config(&demo.site)
    })
    .await;
    let page = records
        .iter()
        .find(|r| r.status == Some(200))
        .expect("a page");
    assert!(page.truncated && page.bytes == Some(300), "{page:?}");
    let (records, finished) = crawl(CrawlConfig {
        max_urls: 25,
        max_redirects: 0,
        ..config(&demo.site)
    })
    .await;
    let full = records
        .iter()
        .filter(|r| r.detail.as_deref() == Some("dedupe capacity (max_urls) reached"))
        .count();
    assert!(full > 0 && finished.summary.budget_skipped as usize >= full);
    // 25 URLs remembered: at most 25 fetched, whatever the site holds.
    assert!(finished.summary.pages <= 25, "{}", finished.summary.pages);
    let (records, _) = crawl(CrawlConfig {
        max_redirects: 0,
        max_depth: Some(6),
        ..config(&demo.site)
    })
    .await;
    let redirects: Vec<&Record> = records.iter().filter(|r| r.status == Some(301)).collect();
    assert!(!redirects.is_empty());
    for redirect in redirects {
        assert_eq!(
            redirect.detail.as_deref(),
            Some("not followed: more than 0 redirects")
        );
    }
}

/// A robots.txt that stays unavailable (503 on every try) forbids the whole host, as
/// RFC 9309 says, and every URL of it is recorded with the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_robots_txt_forbids_the_host() {
    use weir_http::{handler_fn, Request, Response, Server, ServerConfig, StatusCode};
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&asked);
    let handler = handler_fn(move |request: Request| {
        seen.lock().unwrap().push(request.path().to_owned());
        async { Response::text(StatusCode::SERVICE_UNAVAILABLE, "down\n") }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/start", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(Server::new(handler, ServerConfig::default()).serve(listener, stop.clone()));
    let _stop = stop.drop_guard();
    let config = CrawlConfig {
        seeds: vec![Url::parse(&url).unwrap()],
        max_tries: 2,
        // The demo site is on loopback addresses, which a crawl refuses by default.
        egress: Egress::any(),
        ..CrawlConfig::default()
    };
    let (records, finished) = crawl(config).await;
    assert_eq!(
        *asked.lock().unwrap(),
        ["/robots.txt", "/robots.txt"],
        "only robots.txt was asked for, twice"
    );
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].skipped, Some(SkipReason::Robots));
    assert_eq!(
        records[0].detail.as_deref(),
        Some("robots.txt unavailable: status 503")
    );
    assert_eq!(
        (finished.summary.pages, finished.summary.robots_skipped),
        (0, 1)
    );
}
