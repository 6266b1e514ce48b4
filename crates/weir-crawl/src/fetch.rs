//! One fetch, run in its own task: the request, the body read up to its cap, and (for
//! HTML) links extracted while it streams. Resolving and normalising links happens here
//! too, spread over the runtime's threads, so the scheduler only dedupes and queues.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use tokio::time::Instant;
use url::Url;
use weir_client::{parse_retry_after, Client, RequestOptions};

use crate::extract::LinkExtractor;
use crate::frontier::{Entry, Kind};
use crate::normalize::resolve;

/// robots.txt is read up to 500 KiB, the limit RFC 9309 §2.5 sets.
const ROBOTS_LIMIT: usize = 500 * 1024;

/// What came back.
#[derive(Debug)]
pub(crate) enum Outcome {
    Response(Answer),
    /// No response; the flag says whether trying again may help.
    Failed(String, bool),
}

/// A response, read.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) location: Option<Url>,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) bytes: u64,
    pub(crate) truncated: bool,
    pub(crate) title: Option<String>,
    /// Links found, before resolving (for the record's count).
    pub(crate) links_found: u32,
    /// Links resolved and normalised.
    pub(crate) links: Vec<Url>,
    /// The body, kept only for robots.txt and sitemaps.
    pub(crate) body: Vec<u8>,
}

/// What a fetch task hands back to the scheduler: the entry, its host's index, and how
/// it went.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) entry: Entry,
    pub(crate) host: usize,
    pub(crate) outcome: Outcome,
    pub(crate) elapsed: Duration,
}

/// Fetches `entry` (its rate-limit slot is already taken).
pub(crate) async fn fetch(
    client: Client,
    entry: Entry,
    host: usize,
    max_body: usize,
    timeout: Duration,
) -> Fetched {
    let started = Instant::now();
    let outcome = match client.http().get(entry.url.clone()).build() {
        Ok(request) => {
            let options = RequestOptions {
                slot_taken: true,
                timeout: Some(timeout),
                ..RequestOptions::default()
            };
            match client.execute(request, options).await {
                Ok(response) => read(response, &entry, max_body).await,
                // Where the URL leads is not permitted: trying again cannot change that.
                Err(error @ weir_client::Error::Refused(_)) => {
                    Outcome::Failed(cause(&error), false)
                }
                Err(error) => Outcome::Failed(cause(&error), true),
            }
        }
        Err(error) => Outcome::Failed(cause(&error), false),
    };
    Fetched {
        entry,
        host,
        outcome,
        elapsed: started.elapsed(),
    }
}

async fn read(mut response: weir_client::Response, entry: &Entry, max_body: usize) -> Outcome {
    let status = response.status().as_u16();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|value: &reqwest::header::HeaderValue| value.to_str().ok())
    };
    let content_type = header(CONTENT_TYPE).map(|value| {
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    let location = header(LOCATION).and_then(|location| resolve(&entry.url, location));
    let retry_after = header(RETRY_AFTER)
        .and_then(|value| parse_retry_after(value, std::time::SystemTime::now()));
    let mut answer = Answer {
        status,
        content_type,
        location,
        retry_after,
        ..Answer::default()
    };
    let html = (200..300).contains(&status)
        && entry.kind == Kind::Page
        && matches!(
            answer.content_type.as_deref(),
            Some("text/html" | "application/xhtml+xml")
        );
    let keep_body = entry.kind != Kind::Page && (200..300).contains(&status);
    let limit = if entry.kind == Kind::Robots {
        ROBOTS_LIMIT
    } else {
        max_body
    };
    let mut extractor = html.then(LinkExtractor::new);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - answer.bytes as usize;
                let chunk = if chunk.len() > room {
                    answer.truncated = true;
                    chunk.slice(..room)
                } else {
                    chunk
                };
                answer.bytes += chunk.len() as u64;
                if let Some(extractor) = extractor.as_mut() {
                    extractor.feed(&chunk);
                }
                if keep_body {
                    answer.body.extend_from_slice(&chunk);
                }
                if answer.truncated {
                    break;
                }
            }
            Ok(None) => break,
            Err(error) => {
                return Outcome::Failed(format!("reading the body: {}", cause(&error)), true)
            }
        }
    }
    if let Some(extractor) = extractor {
        let found = extractor.finish();
        let base = found
            .base
            .as_deref()
            .and_then(|base| entry.url.join(base).ok())
            .unwrap_or_else(|| entry.url.clone());
        answer.links_found = found.links.len() as u32;
        answer.links = found
            .links
            .iter()
            .filter_map(|href| resolve(&base, href))
            .collect();
        answer.title = found.title;
    }
    Outcome::Response(answer)
}

/// An error and its sources in one line ("error sending request: connection refused").
pub(crate) fn cause(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        let next_text = next.to_string();
        if !text.contains(&next_text) {
            text.push_str(": ");
            text.push_str(&next_text);
        }
        source = next.source();
    }
    text
}

/// Page URLs listed in a sitemap (`<urlset>`) or the sitemaps a sitemap index lists
/// (`<sitemapindex>`); the flag says which. Only `<loc>` matters for crawling, so a scan
/// for it is enough; entities in URLs are decoded.
pub(crate) fn sitemap_locations(body: &[u8]) -> (Vec<String>, bool) {
    let text = String::from_utf8_lossy(body);
    let index = text.contains("<sitemapindex");
    let mut locations = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("<loc>") {
        rest = &rest[start + 5..];
        let Some(end) = rest.find("</loc>") else {
            break;
        };
        let location = rest[..end]
            .trim()
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&apos;", "'")
            .replace("&quot;", "\"");
        locations.push(location);
        rest = &rest[end + 6..];
    }
    (locations, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sitemaps_and_indexes_list_their_locations() {
        let set = b"<urlset><url><loc> http://a/1?x=1&amp;y=2 </loc></url><url><loc>http://a/2</loc></url></urlset>";
        assert_eq!(
            sitemap_locations(set),
            (
                vec!["http://a/1?x=1&y=2".to_owned(), "http://a/2".to_owned()],
                false
            )
        );
        let index = b"<sitemapindex><sitemap><loc>http://a/s1.xml</loc></sitemap></sitemapindex>";
        assert_eq!(
            sitemap_locations(index),
            (vec!["http://a/s1.xml".to_owned()], true)
        );
    }
}
