//! The request a handler receives.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::head::trim_ows;
use crate::{parse_request_head, Body, HeadError, Method, ParsedHead, ServerConfig, Version};

/// An HTTP request: its head, read in place from the bytes received, and its [`Body`].
///
/// Nothing of the head is copied or allocated per request: path, query and header accessors
/// return slices of the received bytes.
#[derive(Debug)]
pub struct Request {
    head: Bytes,
    method: Method,
    version: Version,
    path: Range<usize>,
    query: Option<Range<usize>>,
    headers: Range<usize>,
    upgrade: bool,
    peer: Option<SocketAddr>,
    params: Vec<(Arc<str>, Range<usize>)>,
    body: Body,
}

impl Request {
    pub(crate) fn new(
        head: Bytes,
        parsed: ParsedHead,
        peer: Option<SocketAddr>,
        body: Body,
    ) -> Self {
        Self {
            head,
            method: parsed.method,
            version: parsed.version,
            path: parsed.path,
            query: parsed.query,
            headers: parsed.headers,
            upgrade: parsed.upgrade,
            peer,
            params: Vec::new(),
            body,
        }
    }

    /// Builds a request from its parts, as a handler test would, by writing and parsing a
    /// real request head.
    ///
    /// ```
    /// use weir_http::{Method, Request};
    /// let req = Request::build(Method::POST, "/v1/jobs?dry=1", &[("content-type", "application/json")], "{}")
    ///     .expect("a valid request");
    /// assert_eq!(req.path(), "/v1/jobs");
    /// assert_eq!(req.query(), Some("dry=1"));
    /// assert_eq!(req.header("Content-Type"), Some("application/json"));
    /// ```
    pub fn build(
        method: Method,
        target: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Request, HeadError> {
        let mut raw = format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\n");
        for (name, value) in headers {
            raw.push_str(name);
            raw.push_str(": ");
            raw.push_str(value);
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        let limits = ServerConfig::default().head_limits();
        let parsed = parse_request_head(raw.as_bytes(), &limits)?
            .ok_or(HeadError::BadRequest("incomplete request head"))?;
        Ok(Request::new(
            Bytes::from(raw),
            parsed,
            None,
            Body::from_bytes(body),
        ))
    }

    /// The method from the request line; a token other than the common ones is
    /// [`Method::Other`], case kept.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// HTTP/1.0 or HTTP/1.1: a request with any other version is answered 505 before a
    /// handler sees it.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The path of the request-target, as sent (not percent-decoded).
    pub fn path(&self) -> &str {
        self.text(self.path.clone())
    }

    /// The query string without its `?`, as sent.
    pub fn query(&self) -> Option<&str> {
        self.query.clone().map(|range| self.text(range))
    }

    /// The value of the query parameter `name` (first occurrence), not percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// The first header field called `name` (case-insensitive), if its value is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// Every header field in order, as name and raw value.
    pub fn headers(&self) -> HeaderIter<'_> {
        HeaderIter {
            rest: &self.head[self.headers.clone()],
        }
    }

    /// The path parameter `name` captured by the router (`/v1/jobs/{id}`), as sent.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, range)| self.text(range.clone()))
    }

    /// The path parameter `name` with its percent-escapes decoded (`orders.%3E` is
    /// `orders.>`): what a client that escapes reserved characters meant. A `%` not followed
    /// by two hex digits stays as it is; bytes that are not UTF-8 become U+FFFD.
    pub fn param_decoded(&self, name: &str) -> Option<Cow<'_, str>> {
        let raw = self.param(name)?;
        if !raw.contains('%') {
            return Some(Cow::Borrowed(raw));
        }
        let bytes = raw.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes[i],
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(high), Some(low)) => {
                    decoded.push((high * 16 + low) as u8);
                    i += 3;
                }
                (byte, _, _) => {
                    decoded.push(byte);
                    i += 1;
                }
            }
        }
        Some(Cow::Owned(String::from_utf8_lossy(&decoded).into_owned()))
    }

    pub(crate) fn set_params(&mut self, params: Vec<(Arc<str>, Range<usize>)>) {
        self.params = params;
    }

    /// The path as the bytes received, for comparisons that need no text.
    pub(crate) fn path_bytes(&self) -> &[u8] {
        &self.head[self.path.clone()]
    }

    pub(crate) fn path_range(&self) -> Range<usize> {
        self.path.clone()
    }

    /// Whether the client asked to switch protocols (`Connection: upgrade` plus `Upgrade`).
    pub fn is_upgrade(&self) -> bool {
        self.upgrade
    }

    /// The client's address, when the request came from a socket.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The body, to read from.
    pub fn body_mut(&mut self) -> &mut Body {
        &mut self.body
    }

    /// Takes the body out of the request.
    pub fn into_body(self) -> Body {
        self.body
    }

    fn text(&self, range: Range<usize>) -> &str {
        // The parser only hands out ranges of valid UTF-8 (httparse checks the target).
        std::str::from_utf8(&self.head[range]).unwrap_or_default()
    }
}

/// An iterator over header fields; see [`Request::headers`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // The head was validated by the parser: every line is `name: value` with a token
        // name, ended by CRLF or (as RFC 9112 section 2.2 lets a recipient accept) a bare LF,
        // and the section ends with an empty line.
        let end = self.rest.iter().position(|&b| b == b'\n')?;
        let line = &self.rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.rest = &self.rest[end + 1..];
        let colon = line.iter().position(|&b| b == b':')?;
        let name = std::str::from_utf8(&line[..colon]).ok()?;
        Some((name, trim_ows(&line[colon + 1..])))
    }
}
