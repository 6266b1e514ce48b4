//! The request head: request line, header fields, and the framing rules of RFC 9112.
//!
//! [`parse_request_head`] is a pure function over bytes so that it can be fuzzed and tested
//! without sockets. It returns offsets into the buffer rather than copies: the connection
//! freezes the head bytes once and the [`Request`](crate::Request) reads them in place.
//!
//! Every rejection is a [`HeadError`] that names its status code; the connection answers with
//! that status and closes, because after a framing error the position of the next request in
//! the byte stream is unknown (RFC 9112 section 6.3).

use std::mem::MaybeUninit;
use std::ops::Range;

use crate::{Method, ServerConfig, StatusCode};

/// Limits that the head parser enforces.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Bytes of request line plus headers.
    pub max_head_bytes: usize,
    /// Header fields (at most [`ServerConfig::MAX_HEADERS_CEILING`]).
    pub max_headers: usize,
    /// Bytes of request-target.
    pub max_target_bytes: usize,
    /// Bytes of body, checked against Content-Length before any body byte is read.
    pub max_body_bytes: u64,
}

/// The protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no Content-Length, or Content-Length: 0, and no Transfer-Encoding).
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
}

/// A parsed request head: offsets into the parsed buffer plus what framing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHead {
    /// Bytes the head occupies, including the empty line that ends it.
    pub head_len: usize,
    /// The method token, as [`Method::from_token`] reads it.
    pub method: Method,
    /// HTTP/1.0 or HTTP/1.1; any other version is [`HeadError::UnsupportedVersion`].
    pub version: Version,
    /// The path of the request-target (origin-form or the path of absolute-form).
    pub path: Range<usize>,
    /// The query, without its `?`, when there is one.
    pub query: Option<Range<usize>>,
    /// The header section: from the first header line to the end of the head.
    pub headers: Range<usize>,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// Whether the client sent `Expect: 100-continue` (only meaningful on HTTP/1.1).
    pub expect_continue: bool,
    /// Whether the client asked for a protocol upgrade (`Connection: upgrade` and `Upgrade`).
    pub upgrade: bool,
}

/// Why a request head was rejected. Each variant knows its status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Malformed syntax or a framing rule broken; the reason names it.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The head is longer than `max_head_bytes`.
    #[error("request head exceeds {limit} bytes")]
    HeadTooLarge {
        /// The `max_head_bytes` the head exceeded.
        limit: usize,
    },
    /// More header fields than `max_headers`.
    #[error("request has more than {limit} header fields")]
    TooManyHeaders {
        /// `max_headers`, capped at [`ServerConfig::MAX_HEADERS_CEILING`].
        limit: usize,
    },
    /// The request-target is longer than `max_target_bytes`.
    #[error("request-target exceeds {limit} bytes")]
    TargetTooLong {
        /// The `max_target_bytes` the request-target exceeded.
        limit: usize,
    },
    /// The Content-Length is larger than `max_body_bytes`.
    #[error("request body of {length} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The length the client declared in Content-Length, in bytes.
        length: u64,
        /// The `max_body_bytes` it exceeds.
        limit: u64,
    },
    /// A transfer coding other than chunked was applied.
    #[error("transfer coding {0:?} is not implemented; only chunked is")]
    UnsupportedTransferCoding(String),
    /// An `Expect` value other than `100-continue`.
    #[error("unsupported expectation; only 100-continue is supported")]
    UnsupportedExpectation,
    /// A version other than HTTP/1.0 or HTTP/1.1.
    #[error("HTTP version not supported; use HTTP/1.1")]
    UnsupportedVersion,
}

impl HeadError {
    /// The status code to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            HeadError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HeadError::HeadTooLarge { .. } | HeadError::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            HeadError::TargetTooLong { .. } => StatusCode::URI_TOO_LONG,
            HeadError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HeadError::UnsupportedTransferCoding(_) => StatusCode::NOT_IMPLEMENTED,
            HeadError::UnsupportedExpectation => StatusCode::EXPECTATION_FAILED,
            HeadError::UnsupportedVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        }
    }
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` when the head is incomplete and `buf` is still within the limits, so
/// the caller should read more. Leading empty lines are skipped (RFC 9112 section 2.2).
pub fn parse_request_head(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<ParsedHead>, HeadError> {
    let max_headers = limits.max_headers.min(ServerConfig::MAX_HEADERS_CEILING);
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() };
        ServerConfig::MAX_HEADERS_CEILING];
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(buf, &mut slots[..max_headers]);
    let head_len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(buf, limits),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooManyHeaders { limit: max_headers })
        }
        Err(httparse::Error::Version) => return Err(HeadError::UnsupportedVersion),
        Err(error) => return Err(HeadError::BadRequest(describe_httparse_error(error))),
    };
    if head_len > limits.max_head_bytes {
        return Err(HeadError::HeadTooLarge {
            limit: limits.max_head_bytes,
        });
    }

    let version = match req.version {
        Some(0) => Version::Http10,
        Some(1) => Version::Http11,
        _ => return Err(HeadError::UnsupportedVersion),
    };
    let method = Method::from_token(req.method.unwrap_or_default());
    let target = req.path.unwrap_or_default();
    if target.len() > limits.max_target_bytes {
        return Err(HeadError::TargetTooLong {
            limit: limits.max_target_bytes,
        });
    }
    let target_start = offset_in(buf, target.as_bytes());
    let (path, query) = split_target(target, target_start)?;

    let mut framing = FramingFields::default();
    for header in req.headers.iter() {
        framing.observe(header.name, header.value)?;
    }
    let headers_start = req.headers.first().map_or(head_len.saturating_sub(2), |h| {
        line_start(buf, offset_in(buf, h.name.as_bytes()))
    });

    let http11 = version == Version::Http11;
    if http11 && framing.hosts != 1 {
        return Err(HeadError::BadRequest(if framing.hosts == 0 {
            "an HTTP/1.1 request needs a Host header"
        } else {
            "a request may carry only one Host header"
        }));
    }
    let body = framing.body_framing(version, limits)?;
    let keep_alive = if http11 {
        !framing.close
    } else {
        framing.keep_alive && !framing.close
    };
    Ok(Some(ParsedHead {
        head_len,
        method,
        version,
        path,
        query,
        headers: headers_start..head_len,
        framing: body,
        keep_alive,
        expect_continue: http11 && framing.expect_continue,
        upgrade: framing.connection_upgrade && framing.upgrade_header,
    }))
}

/// Decides what an incomplete head means: wait for more bytes, or reject it as too long.
fn incomplete(buf: &[u8], limits: &HeadLimits) -> Result<Option<ParsedHead>, HeadError> {
    if buf.len() < limits.max_head_bytes {
        return Ok(None);
    }
    // Skip the empty lines a client may send before the request line.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let request_line_len = buf[start..]
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(buf.len() - start);
    if request_line_len > limits.max_target_bytes {
        // The method and version are short; a request line this long is a long target.
        return Err(HeadError::TargetTooLong {
            limit: limits.max_target_bytes,
        });
    }
    Err(HeadError::HeadTooLarge {
        limit: limits.max_head_bytes,
    })
}

/// Splits a request-target into path and query ranges (offsets into the head buffer).
fn split_target(
    target: &str,
    start: usize,
) -> Result<(Range<usize>, Option<Range<usize>>), HeadError> {
    // absolute-form (RFC 9112 section 3.2.2): keep only the path and query.
    let (path_offset, rest) = if let Some(after_scheme) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        let scheme_len = target.len() - after_scheme.len();
        let authority_len = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
        (scheme_len + authority_len, &after_scheme[authority_len..])
    } else if target.starts_with('/') || target == "*" {
        (0, target)
    } else if target.contains(':') && !target.contains('/') {
        // authority-form, used only by CONNECT.
        (0, target)
    } else {
        return Err(HeadError::BadRequest("request-target must start with '/'"));
    };
    let path_start = start + path_offset;
    // A byte scan, not `str::find`: paths are short, and the searcher's set-up cost more than
    // the search (callgrind, bench/http/work.sh).
    Ok(match rest.bytes().position(|b| b == b'?') {
        Some(q) => (
            path_start..path_start + q,
            Some(path_start + q + 1..path_start + rest.len()),
        ),
        None => (path_start..path_start + rest.len(), None),
    })
}

/// The header fields that decide framing and connection handling, gathered in one pass.
#[derive(Default)]
struct FramingFields {
    hosts: usize,
    content_length: Option<u64>,
    /// Transfer codings listed, over all Transfer-Encoding fields.
    transfer_codings: usize,
    /// The first of them, lowercased (for the error that names an unsupported coding); no
    /// list is kept, so a request without Transfer-Encoding allocates nothing here.
    first_coding: Option<String>,
    last_coding_is_chunked: bool,
    saw_transfer_encoding: bool,
    close: bool,
    keep_alive: bool,
    connection_upgrade: bool,
    upgrade_header: bool,
    expect_continue: bool,
}

impl FramingFields {
    fn observe(&mut self, name: &str, value: &[u8]) -> Result<(), HeadError> {
        if name.eq_ignore_ascii_case("host") {
            self.hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            for item in value.split(|&b| b == b',') {
                let length = parse_content_length(trim_ows(item))?;
                match self.content_length {
                    Some(seen) if seen != length => {
                        return Err(HeadError::BadRequest("conflicting Content-Length values"))
                    }
                    _ => self.content_length = Some(length),
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.saw_transfer_encoding = true;
            for coding in value.split(|&b| b == b',') {
                let coding = trim_ows(coding);
                if !coding.is_empty() {
                    self.transfer_codings += 1;
                    self.last_coding_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
                    if self.first_coding.is_none() {
                        self.first_coding =
                            Some(String::from_utf8_lossy(coding).to_ascii_lowercase());
                    }
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim_ows(token);
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    self.connection_upgrade = true;
                }
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            self.upgrade_header = true;
        } else if name.eq_ignore_ascii_case("expect") {
            if trim_ows(value).eq_ignore_ascii_case(b"100-continue") {
                self.expect_continue = true;
            } else {
                return Err(HeadError::UnsupportedExpectation);
            }
        }
        Ok(())
    }

    /// Applies RFC 9112 section 6.3 to the gathered fields.
    fn body_framing(
        &self,
        version: Version,
        limits: &HeadLimits,
    ) -> Result<BodyFraming, HeadError> {
        if self.saw_transfer_encoding {
            if version == Version::Http10 {
                return Err(HeadError::BadRequest(
                    "Transfer-Encoding is not allowed in HTTP/1.0",
                ));
            }
            if self.content_length.is_some() {
                return Err(HeadError::BadRequest(
                    "Content-Length and Transfer-Encoding together are ambiguous",
                ));
            }
            if !self.last_coding_is_chunked {
                return Err(HeadError::BadRequest(
                    "the final transfer coding must be chunked",
                ));
            }
            return match self.first_coding.as_deref() {
                _ if self.transfer_codings == 1 => Ok(BodyFraming::Chunked),
                Some("chunked") => Err(HeadError::BadRequest("chunked may be applied only once")),
                coding => Err(HeadError::UnsupportedTransferCoding(
                    coding.unwrap_or_default().to_owned(),
                )),
            };
        }
        match self.content_length {
            None | Some(0) => Ok(BodyFraming::None),
            Some(length) if length > limits.max_body_bytes => Err(HeadError::BodyTooLarge {
                length,
                limit: limits.max_body_bytes,
            }),
            Some(length) => Ok(BodyFraming::Length(length)),
        }
    }
}

/// Content-Length is 1*DIGIT: no sign, no spaces inside, and it must fit in a u64.
fn parse_content_length(value: &[u8]) -> Result<u64, HeadError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::BadRequest(
            "Content-Length must be a non-negative decimal number",
        ));
    }
    value.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(d - b'0')))
            .ok_or(HeadError::BadRequest("Content-Length is too large"))
    })
}

/// Removes optional whitespace (spaces and tabs) around a list element.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// The offset of `part` inside `buf`; `part` must be a sub-slice of `buf`.
fn offset_in(buf: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - buf.as_ptr() as usize
}

/// The start of the line containing `offset`.
fn line_start(buf: &[u8], offset: usize) -> usize {
    buf[..offset]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |nl| nl + 1)
}

fn describe_httparse_error(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => {
            "invalid header field name (a non-token character, whitespace before the colon, or an obs-fold line)"
        }
        httparse::Error::HeaderValue => "invalid header field value (a control character)",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or request-target",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HeadLimits {
        ServerConfig::default().head_limits()
    }

    fn parse(raw: &str) -> Result<Option<ParsedHead>, HeadError> {
        parse_request_head(raw.as_bytes(), &limits())
    }

    fn status(raw: &str) -> u16 {
        parse(raw)
            .expect_err("should be rejected")
            .status()
            .as_u16()
    }

    #[test]
    fn parses_a_simple_get() {
        let raw = "GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n";
        let head = parse(raw).unwrap().unwrap();
        assert_eq!(head.head_len, raw.len());
        assert_eq!(head.method, Method::Get);
        assert_eq!(&raw[head.path.clone()], "/a/b");
        assert_eq!(&raw[head.query.clone().unwrap()], "x=1");
        assert_eq!(&raw[head.headers.clone()], "Host: h\r\nAccept: */*\r\n\r\n");
        assert_eq!(head.framing, BodyFraming::None);
        assert!(head.keep_alive);
    }

    #[test]
    fn absolute_form_keeps_the_path() {
        let raw = "GET http://example.com:80/p?q HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let head = parse(raw).unwrap().unwrap();
        assert_eq!(&raw[head.path.clone()], "/p");
        assert_eq!(&raw[head.query.unwrap()], "q");
    }

    #[test]
    fn partial_heads_ask_for_more() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: h\r\n"), Ok(None));
        assert_eq!(parse(""), Ok(None));
    }

    #[test]
    fn keep_alive_rules() {
        let close = parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!close.keep_alive);
        let http10 = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!http10.keep_alive);
        let http10_ka = parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(http10_ka.keep_alive);
    }

    #[test]
    fn framing_rules_of_rfc_9112() {
        assert_eq!(status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 4\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -3\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"),
            400
        );
        assert_eq!(status("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n"),
            400
        );
        assert_eq!(status("GET / HTTP/1.1\r\nHost: h\r\nX(y): a\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: h\r\nExpect: teapot\r\n\r\n"),
            417
        );
    }

    #[test]
    fn bare_line_feeds_end_lines_in_the_head() {
        // Found by the request_head fuzz target: a request line ended by LF alone, then CRLF.
        let raw = "&P& /10. HTTP/1.0\n\r\n";
        let head = parse(raw).unwrap().unwrap();
        assert_eq!(head.head_len, raw.len());
        assert_eq!(head.method, Method::Other("&P&".into()));
        let req = crate::Request::new(
            bytes::Bytes::from("GET / HTTP/1.1\nHost: h\nX-A: 1\r\n\n"),
            parse("GET / HTTP/1.1\nHost: h\nX-A: 1\r\n\n")
                .unwrap()
                .unwrap(),
            None,
            crate::Body::empty(),
        );
        assert_eq!(
            req.header("host"),
            Some("h"),
            "headers are found with LF endings"
        );
        assert_eq!(req.header("x-a"), Some("1"));
        assert_eq!(req.headers().count(), 2);
    }

    #[test]
    fn identical_content_lengths_are_one() {
        let head = parse(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.framing, BodyFraming::Length(5));
    }

    #[test]
    fn limits_have_their_statuses() {
        let tight = HeadLimits {
            max_head_bytes: 64,
            max_headers: 2,
            max_target_bytes: 16,
            max_body_bytes: 10,
        };
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(100));
        assert_eq!(
            parse_request_head(long_line.as_bytes(), &tight)
                .unwrap_err()
                .status()
                .as_u16(),
            414
        );
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(20));
        assert_eq!(
            parse_request_head(long_target.as_bytes(), &tight)
                .unwrap_err()
                .status()
                .as_u16(),
            414
        );
        let many = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(
            parse_request_head(many.as_bytes(), &tight)
                .unwrap_err()
                .status()
                .as_u16(),
            431
        );
        let big = format!("GET / HTTP/1.1\r\nHost: h\r\nA: {}\r\n", "x".repeat(100));
        assert_eq!(
            parse_request_head(big.as_bytes(), &tight)
                .unwrap_err()
                .status()
                .as_u16(),
            431
        );
        let body = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
        assert_eq!(
            parse_request_head(body.as_bytes(), &tight)
                .unwrap_err()
                .status()
                .as_u16(),
            413
        );
    }
}
