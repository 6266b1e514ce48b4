//! Links and title from HTML, extracted while the body streams in.
//!
//! lol_html tokenises chunk by chunk and calls back only for the selected elements, without
//! building a DOM: memory stays small whatever the page size, and extraction overlaps the
//! download. The `send` flavour lets the extractor live in a spawned fetch task.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};

use lol_html::html_content::TextChunk;
use lol_html::send::{Element, ElementContentHandlers, HtmlRewriter, Settings};
use lol_html::{OutputSink, Selector};

/// Links kept per page; a page with more is cut there (and says so).
pub const MAX_LINKS: usize = 10_000;
/// Characters kept of a title.
const MAX_TITLE: usize = 300;

/// What a page yielded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The `<title>`, whitespace collapsed.
    pub title: Option<String>,
    /// `href`s of `<a>` and `<area>`, as written, in order.
    pub links: Vec<String>,
    /// `<base href>`, when the page sets one.
    pub base: Option<String>,
    /// More than [`MAX_LINKS`] links were found.
    pub links_cut: bool,
}

#[derive(Debug)]
struct Discard;

impl OutputSink for Discard {
    fn handle_chunk(&mut self, _: &[u8]) {}
}

/// Feeds on body chunks; [`LinkExtractor::finish`] gives the result.
pub struct LinkExtractor {
    rewriter: HtmlRewriter<'static, Discard>,
    found: Arc<Mutex<Extracted>>,
    title: Arc<Mutex<String>>,
    failed: bool,
}

impl std::fmt::Debug for LinkExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkExtractor")
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// The selectors, parsed once: parsing them per page cost about 1% of a crawl's CPU.
fn selectors() -> &'static [Selector; 3] {
    static SELECTORS: OnceLock<[Selector; 3]> = OnceLock::new();
    SELECTORS.get_or_init(|| {
        ["a[href], area[href]", "base[href]", "title"]
            .map(|text| text.parse().expect("a valid selector"))
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Default for LinkExtractor {
    fn default() -> LinkExtractor {
        LinkExtractor::new()
    }
}

impl LinkExtractor {
    /// A fresh extractor for one page.
    pub fn new() -> LinkExtractor {
        let found = Arc::new(Mutex::new(Extracted::default()));
        let title = Arc::new(Mutex::new(String::new()));
        let (links, bases, titles) = (Arc::clone(&found), Arc::clone(&found), Arc::clone(&title));
        let add_link = move |el: &mut Element<'_, '_>| {
            if let Some(href) = el.get_attribute("href") {
                let mut found = lock(&links);
                if found.links.len() < MAX_LINKS {
                    found.links.push(href);
                } else {
                    found.links_cut = true;
                }
            }
            Ok(())
        };
        let [anchors, base, title_selector] = selectors();
        let settings = Settings {
            element_content_handlers: vec![
                (
                    Cow::Borrowed(anchors),
                    ElementContentHandlers::default().element(add_link),
                ),
                (
                    Cow::Borrowed(base),
                    ElementContentHandlers::default().element(move |el: &mut Element<'_, '_>| {
                        let mut found = lock(&bases);
                        if found.base.is_none() {
                            found.base = el.get_attribute("href");
                        }
                        Ok(())
                    }),
                ),
                (
                    Cow::Borrowed(title_selector),
                    ElementContentHandlers::default().text(move |chunk: &mut TextChunk<'_>| {
                        let mut title = lock(&titles);
                        if title.len() < MAX_TITLE {
                            title.push_str(chunk.as_str());
                        }
                        Ok(())
                    }),
                ),
            ],
            ..Settings::new_send()
        };
        LinkExtractor {
            rewriter: HtmlRewriter::new(settings, Discard),
            found,
            title,
            failed: false,
        }
    }

    /// Feeds the next body chunk. A document lol_html cannot tokenise stops extraction
    /// (what was found so far is kept); the page still counts as fetched.
    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.failed && self.rewriter.write(chunk).is_err() {
            self.failed = true;
        }
    }

    /// Ends the document and returns what it held.
    pub fn finish(self) -> Extracted {
        if !self.failed {
            let _ = self.rewriter.end();
        }
        let mut found = std::mem::take(&mut *lock(&self.found));
        let title = lock(&self.title);
        let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
        if !title.is_empty() {
            found.title = Some(title.chars().take(MAX_TITLE).collect());
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(chunks: &[&str]) -> Extracted {
        let mut extractor = LinkExtractor::new();
        for chunk in chunks {
            extractor.feed(chunk.as_bytes());
        }
        extractor.finish()
    }

    #[test]
    fn links_title_and_base_survive_any_chunk_boundary() {
        let page = "<html><head><title> Hello\n  world </title><base href=\"/root/\"></head>\
                    <body><a href=\"a.html\">a</a><A HREF='/b'>b</A><a name=x>no</a>\
                    <map><area href=\"c\"></map><link href=\"style.css\"></body></html>";
        let whole = extract(&[page]);
        assert_eq!(whole.title.as_deref(), Some("Hello world"));
        assert_eq!(whole.links, ["a.html", "/b", "c"]);
        assert_eq!(whole.base.as_deref(), Some("/root/"));
        // Byte by byte: the streaming tokenizer gives the same answer.
        let bytes: Vec<String> = page.chars().map(String::from).collect();
        let pieces: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(extract(&pieces), whole);
    }

    #[test]
    fn links_are_capped() {
        let page = "<a href=x></a>".repeat(MAX_LINKS + 5);
        let found = extract(&[&page]);
        assert_eq!(found.links.len(), MAX_LINKS);
        assert!(found.links_cut);
    }
}
