//! The demo site's model: pages, links, robots.txt and sitemaps, from a seed.
//!
//! Page `k` (0-based) lives on host `k % hosts` at `/p/{k}`. Pages form a binary tree
//! (`k` links to `2k+1` and `2k+2`, often on other hosts), so every page is reachable from
//! page 0 and depth grows with log2 of the size; each page also links to a few pages drawn
//! from the seed, and to its host's home page. The `full` profile adds what a polite crawler
//! must handle: robots-disallowed pages, redirects, slow pages, 404s, 429s with
//! `Retry-After`, a non-HTML file, pages only the sitemap lists, and an endless calendar.

use std::time::Duration;

/// Which parts of the site exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Pages, robots.txt and sitemaps only: a static site, for benchmarks.
    Static,
    /// Every trap and error a crawler should handle.
    Full,
}

/// Settings of a site.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// Pages across all hosts.
    pub pages: usize,
    /// How many hosts, 1–8 ([`Site::new`] clamps it): host `h` is `127.0.0.{h+2}`, so
    /// `127.0.0.2` up to `127.0.0.9`.
    pub hosts: usize,
    /// Port every host listens on.
    pub port: u16,
    /// Seed of the extra links.
    pub seed: u64,
    /// Extra links per page.
    pub extra_links: usize,
    /// `Crawl-delay` in every robots.txt (none when zero).
    pub crawl_delay: Duration,
    /// What the site contains.
    pub profile: Profile,
}

impl Default for SiteConfig {
    fn default() -> SiteConfig {
        SiteConfig {
            pages: 1000,
            hosts: 5,
            port: 7080,
            seed: 1,
            extra_links: 4,
            crawl_delay: Duration::ZERO,
            profile: Profile::Full,
        }
    }
}

/// The most hosts: 127.0.0.2 to 127.0.0.9.
pub const MAX_HOSTS: usize = 8;

/// What the server sends for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200 with an HTML page.
    Html(String),
    /// 200 with another content type.
    Other(&'static str, Vec<u8>),
    /// 301 to a path on the same host.
    Redirect(String),
    /// 200 after a wait.
    Slow(Duration, String),
    /// 429 with `Retry-After` (seconds) the first time, then the page.
    Busy(u64, String),
    /// 404.
    NotFound,
}

/// A site: hosts, pages and their links.
#[derive(Debug, Clone)]
pub struct Site {
    config: SiteConfig,
}

/// The calendar's first month; it links on without end, both ways.
const CALENDAR_START: (i32, u32) = (2026, 1);

impl Site {
    /// The site for these settings (`hosts` is clamped to 1–8, `pages` to at least `hosts`).
    pub fn new(mut config: SiteConfig) -> Site {
        config.hosts = config.hosts.clamp(1, MAX_HOSTS);
        config.pages = config.pages.max(config.hosts);
        Site { config }
    }

    /// The settings in force: as given to [`Site::new`], with `hosts` and `pages` clamped.
    pub fn config(&self) -> &SiteConfig {
        &self.config
    }

    /// The IP address of host `h`.
    pub fn host_ip(&self, host: usize) -> String {
        format!("127.0.0.{}", host + 2)
    }

    /// `http://127.0.0.{h+2}:{port}`.
    pub fn base(&self, host: usize) -> String {
        format!("http://{}:{}", self.host_ip(host), self.config.port)
    }

    /// Page `k`'s URL.
    pub fn page_url(&self, page: usize) -> String {
        format!("{}/p/{page}", self.base(page % self.config.hosts))
    }

    /// The start URL: host 0's home page.
    pub fn start_url(&self) -> String {
        format!("{}/", self.base(0))
    }

    fn full(&self) -> bool {
        self.config.profile == Profile::Full
    }

    /// robots.txt of every host.
    pub fn robots(&self, host: usize) -> String {
        let mut robots = String::from("User-agent: *\nDisallow: /private/\nDisallow: /__demo/\n");
        if !self.config.crawl_delay.is_zero() {
            robots.push_str(&format!(
                "Crawl-delay: {}\n",
                self.config.crawl_delay.as_secs_f64()
            ));
        }
        robots.push_str(&format!("\nSitemap: {}/sitemap.xml\n", self.base(host)));
        robots
    }

    /// The sitemap of `host`: its pages, and in the full profile one page linked from
    /// nowhere else.
    pub fn sitemap(&self, host: usize) -> String {
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
        );
        let base = self.base(host);
        let mut loc =
            |path: String| xml.push_str(&format!("  <url><loc>{base}{path}</loc></url>\n"));
        for page in (host..self.config.pages).step_by(self.config.hosts) {
            loc(format!("/p/{page}"));
        }
        if self.full() {
            loc(format!("/orphan/{host}"));
        }
        xml.push_str("</urlset>\n");
        xml
    }

    /// The links on page `k`, as written in its HTML (relative on the same host, absolute
    /// across hosts, some with fragments a crawler must strip).
    pub fn page_links(&self, page: usize) -> Vec<String> {
        let hosts = self.config.hosts;
        let own_host = page % hosts;
        let href = |target: usize| {
            if target % hosts == own_host {
                format!("/p/{target}")
            } else {
                self.page_url(target)
            }
        };
        let mut links = vec!["/".to_owned()];
        for child in [2 * page + 1, 2 * page + 2] {
            if child < self.config.pages {
                links.push(href(child));
            }
        }
        for n in 0..self.config.extra_links {
            let target =
                (mix(self.config.seed, page as u64, n as u64) % self.config.pages as u64) as usize;
            links.push(if n == 0 {
                format!("{}#section-{n}", href(target))
            } else {
                href(target)
            });
        }
        if self.full() {
            if page == 0 {
                links.push("/files/report.bin".to_owned());
                links.push(calendar_path(CALENDAR_START));
            }
            let specials: [(usize, usize, &str); 5] = [
                (10, 3, "private"),
                (17, 5, "old"),
                (23, 7, "slow"),
                (19, 2, "missing"),
                (29, 11, "busy"),
            ];
            for (every, at, section) in specials {
                if page % every == at {
                    links.push(format!("/{section}/{page}"));
                }
            }
        }
        links
    }

    /// What `host` answers for `path`.
    pub fn answer(&self, host: usize, path: &str) -> Answer {
        let hosts = self.config.hosts;
        let on_this_host = |k: &str| {
            k.parse::<usize>()
                .ok()
                .filter(|k| *k < self.config.pages && k % hosts == host)
        };
        if path == "/" {
            let first = (host < self.config.pages).then_some(format!("/p/{host}"));
            return Answer::Html(html(
                &format!("Host {host}"),
                first.iter().map(String::as_str),
            ));
        }
        if path == "/robots.txt" {
            return Answer::Other("text/plain", self.robots(host).into_bytes());
        }
        if path == "/sitemap.xml" {
            return Answer::Other("application/xml", self.sitemap(host).into_bytes());
        }
        let (section, rest) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        match section {
            "p" => match on_this_host(rest) {
                Some(page) => Answer::Html(self.page_html(page)),
                None => Answer::NotFound,
            },
            _ if !self.full() => Answer::NotFound,
            "private" | "busy" | "slow" | "old" if on_this_host(rest).is_none() => Answer::NotFound,
            "private" => Answer::Html(html("Private", std::iter::empty())),
            "old" => Answer::Redirect(format!("/p/{rest}")),
            "slow" => Answer::Slow(
                Duration::from_millis(300),
                html("Slow page", std::iter::empty()),
            ),
            "busy" => Answer::Busy(1, html("Busy page", std::iter::empty())),
            "orphan" if rest == host.to_string() => {
                Answer::Html(html("Only in the sitemap", std::iter::empty()))
            }
            "files" if rest == "report.bin" && host == 0 => Answer::Other(
                "application/octet-stream",
                (0..65_536u32).map(|i| (i % 251) as u8).collect(),
            ),
            "calendar" => match parse_month(rest) {
                Some(month) => {
                    let links = [calendar_path(previous(month)), calendar_path(next(month))];
                    Answer::Html(html(
                        &format!("Calendar {}-{:02}", month.0, month.1),
                        links.iter().map(String::as_str),
                    ))
                }
                None => Answer::NotFound,
            },
            _ => Answer::NotFound,
        }
    }

    fn page_html(&self, page: usize) -> String {
        let links = self.page_links(page);
        html(&format!("Page {page}"), links.iter().map(String::as_str))
    }
}

/// A page with a title, some text and links.
fn html<'a>(title: &str, links: impl Iterator<Item = &'a str>) -> String {
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{}</p>\n<ul>\n",
        "A paragraph of demo text, so that pages have a realistic size. ".repeat(12)
    );
    for link in links {
        page.push_str(&format!("<li><a href=\"{link}\">{link}</a></li>\n"));
    }
    page.push_str("</ul></body></html>\n");
    page
}

fn calendar_path((year, month): (i32, u32)) -> String {
    format!("/calendar/{year}/{month:02}")
}

fn parse_month(rest: &str) -> Option<(i32, u32)> {
    let (year, month) = rest.split_once('/')?;
    let (year, month) = (year.parse().ok()?, month.parse().ok()?);
    (1..=12).contains(&month).then_some((year, month))
}

fn next((year, month): (i32, u32)) -> (i32, u32) {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

fn previous((year, month): (i32, u32)) -> (i32, u32) {
    if month == 1 {
        (year - 1, 12)
    } else {
        (year, month - 1)
    }
}

/// splitmix64 of the seed and two indices: the same links on every run and machine.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(profile: Profile) -> Site {
        Site::new(SiteConfig {
            pages: 40,
            hosts: 3,
            port: 9000,
            profile,
            ..SiteConfig::default()
        })
    }

    #[test]
    fn pages_live_on_their_host_and_nowhere_else() {
        let site = site(Profile::Full);
        assert!(matches!(site.answer(1, "/p/4"), Answer::Html(_)));
        assert_eq!(site.answer(0, "/p/4"), Answer::NotFound);
        assert_eq!(site.answer(1, "/p/40"), Answer::NotFound);
        assert_eq!(site.page_url(4), "http://127.0.0.3:9000/p/4");
    }

    #[test]
    fn the_same_seed_gives_the_same_links_and_another_seed_others() {
        let links = |seed| {
            Site::new(SiteConfig {
                seed,
                ..site(Profile::Static).config.clone()
            })
            .page_links(7)
        };
        assert_eq!(links(1), links(1));
        assert_ne!(links(1), links(2));
    }

    #[test]
    fn the_static_profile_has_no_traps() {
        let site = site(Profile::Static);
        assert_eq!(site.answer(0, "/calendar/2026/01"), Answer::NotFound);
        assert!(site
            .page_links(0)
            .iter()
            .all(|link| !link.contains("calendar")));
    }

    #[test]
    fn the_calendar_never_ends() {
        let site = site(Profile::Full);
        let Answer::Html(page) = site.answer(2, "/calendar/2026/12") else {
            panic!()
        };
        assert!(page.contains("/calendar/2027/01") && page.contains("/calendar/2026/11"));
    }

    #[test]
    fn robots_names_the_delay_and_the_sitemap() {
        let site = Site::new(SiteConfig {
            crawl_delay: Duration::from_millis(250),
            ..site(Profile::Full).config.clone()
        });
        let robots = site.robots(1);
        assert!(robots.contains("Crawl-delay: 0.25\n"), "{robots}");
        assert!(robots.contains("Sitemap: http://127.0.0.3:9000/sitemap.xml"));
        assert!(site.sitemap(1).contains("/orphan/1</loc>"));
    }
}
