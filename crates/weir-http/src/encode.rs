//! Writing response heads into the connection's write buffer.
//!
//! Heads are written straight into the reused write buffer: a pre-encoded status line, the
//! cached date, and the framing header computed from the body. Nothing is allocated per
//! response on this path.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use crate::chunked::is_token_byte;
use crate::date::with_date_at;
use crate::{Response, ResponseBody, StatusCode, Version};

/// How the body of an encoded response must be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Nothing follows the head.
    NoBody,
    /// Exactly the bytes of a full body follow.
    Full,
    /// The body follows in the chunked coding.
    Chunked,
    /// The body follows as raw bytes and the connection closes after it (HTTP/1.0).
    UntilClose,
}

/// What the connection knows when it encodes a head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadContext {
    pub(crate) version: Version,
    pub(crate) keep_alive: bool,
    pub(crate) head_request: bool,
    /// A recent reading of the clock, for the `Date` header.
    pub(crate) now: std::time::Instant,
}

/// A header that may not be sent.
#[derive(Debug)]
pub(crate) struct InvalidHeader(pub(crate) String);

/// Checks the handler's header fields; an invalid one must not reach the wire.
///
/// Text borrowed for `'static` (string literals in the program) is taken as written: an
/// injected CR or LF comes from data, and data is owned. Checking every literal on every
/// response cost about 5% of a small response's instructions (bench/http/work.sh).
pub(crate) fn validate_headers(response: &Response) -> Result<(), InvalidHeader> {
    let valid_value = |v: &Cow<'static, str>| match v {
        Cow::Borrowed(_) => true,
        Cow::Owned(v) => !v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f),
    };
    if let Some(ct) = &response.content_type {
        if !valid_value(ct) {
            return Err(InvalidHeader("content-type".into()));
        }
    }
    for (name, value) in &response.headers {
        let valid_name = matches!(name, Cow::Borrowed(_))
            || (!name.is_empty() && name.bytes().all(is_token_byte));
        if !valid_name || !valid_value(value) {
            return Err(InvalidHeader(name.to_string()));
        }
    }
    Ok(())
}

/// Writes the head of `response` and says how its body must follow. Also reports whether the
/// connection stays open after the response (a close-delimited body forces a close).
pub(crate) fn encode_head(
    buf: &mut BytesMut,
    response: &Response,
    ctx: HeadContext,
) -> (Framing, bool) {
    let status = response.status;
    let mut keep_alive = ctx.keep_alive;
    match status.status_line() {
        Some(line) => buf.put_slice(line),
        None => {
            buf.put_slice(b"HTTP/1.1 ");
            put_decimal(buf, u64::from(status.as_u16()));
            buf.put_slice(b" \r\n");
        }
    }
    with_date_at(ctx.now, |date| {
        buf.put_slice(b"date: ");
        buf.put_slice(date);
        buf.put_slice(b"\r\n");
    });
    if let Some(content_type) = &response.content_type {
        buf.put_slice(b"content-type: ");
        buf.put_slice(content_type.as_bytes());
        buf.put_slice(b"\r\n");
    }
    for (name, value) in &response.headers {
        if is_framing_header(name) {
            continue;
        }
        buf.put_slice(name.as_bytes());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
        buf.put_slice(b"\r\n");
    }

    let framing = if status.forbids_body() {
        Framing::NoBody
    } else {
        match &response.body {
            ResponseBody::Empty => {
                buf.put_slice(b"content-length: 0\r\n");
                Framing::NoBody
            }
            ResponseBody::Full(bytes) => {
                buf.put_slice(b"content-length: ");
                put_decimal(buf, bytes.len() as u64);
                buf.put_slice(b"\r\n");
                Framing::Full
            }
            ResponseBody::Stream(_) if ctx.version == Version::Http11 => {
                buf.put_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
            ResponseBody::Stream(_) => {
                keep_alive = false;
                Framing::UntilClose
            }
        }
    };
    let framing = if ctx.head_request {
        Framing::NoBody
    } else {
        framing
    };

    if status != StatusCode::SWITCHING_PROTOCOLS {
        if !keep_alive {
            buf.put_slice(b"connection: close\r\n");
        } else if ctx.version == Version::Http10 {
            buf.put_slice(b"connection: keep-alive\r\n");
        }
    }
    buf.put_slice(b"\r\n");
    (framing, keep_alive)
}

/// Writes one chunk of the chunked coding.
pub(crate) fn encode_chunk_header(buf: &mut BytesMut, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
    buf.put_slice(b"\r\n");
}

/// The chunk that ends a chunked body, with no trailers.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn is_framing_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length")
        || name.eq_ignore_ascii_case("transfer-encoding")
        || name.eq_ignore_ascii_case("date")
}

fn put_decimal(buf: &mut BytesMut, mut n: u64) {
    // Short numbers (most content lengths) as copies of a fixed size: a copy of a variable
    // length is a call into memcpy, which was a third of this function's instructions.
    let digit = |n: u64| b'0' + (n % 10) as u8;
    match n {
        0..=9 => return buf.put_u8(digit(n)),
        10..=99 => return buf.put_slice(&[digit(n / 10), digit(n)]),
        100..=999 => return buf.put_slice(&[digit(n / 100), digit(n / 10), digit(n)]),
        _ => {}
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(response: &Response, ctx: HeadContext) -> (String, Framing, bool) {
        let mut buf = BytesMut::new();
        let (framing, keep_alive) = encode_head(&mut buf, response, ctx);
        (
            String::from_utf8(buf.to_vec()).unwrap(),
            framing,
            keep_alive,
        )
    }

    fn keep() -> HeadContext {
        HeadContext {
            version: Version::Http11,
            keep_alive: true,
            head_request: false,
            now: std::time::Instant::now(),
        }
    }

    #[test]
    fn full_body_has_length_and_date() {
        let (head, framing, keep) = encode(&Response::text(StatusCode::OK, "hello"), keep());
        assert!(head.starts_with("HTTP/1.1 200 OK\r\ndate: "));
        assert!(head.contains("content-type: text/plain; charset=utf-8\r\n"));
        assert!(head.contains("content-length: 5\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
        assert!(!head.contains("connection"));
        assert_eq!((framing, keep), (Framing::Full, true));
    }

    #[test]
    fn no_body_statuses_and_head_requests() {
        let (head, framing, _) = encode(&Response::new(StatusCode::NO_CONTENT), keep());
        assert!(!head.contains("content-length"));
        assert_eq!(framing, Framing::NoBody);
        let head_ctx = HeadContext {
            head_request: true,
            ..keep()
        };
        let (head, framing, _) = encode(&Response::text(StatusCode::OK, "hello"), head_ctx);
        assert!(
            head.contains("content-length: 5\r\n"),
            "HEAD announces the GET length"
        );
        assert_eq!(framing, Framing::NoBody);
    }

    #[test]
    fn http10_streams_close_the_connection() {
        let stream = Response::stream(StatusCode::OK, EmptyStream);
        let ctx = HeadContext {
            version: Version::Http10,
            ..keep()
        };
        let (head, framing, keep_alive) = encode(&stream, ctx);
        assert!(!head.contains("transfer-encoding"));
        assert!(head.contains("connection: close\r\n"));
        assert_eq!((framing, keep_alive), (Framing::UntilClose, false));
        let (head, framing, _) = encode(&Response::stream(StatusCode::OK, EmptyStream), keep());
        assert!(head.contains("transfer-encoding: chunked\r\n"));
        assert_eq!(framing, Framing::Chunked);
    }

    #[test]
    fn unknown_status_and_chunk_sizes() {
        let (head, _, _) = encode(&Response::new(StatusCode::from_u16(599).unwrap()), keep());
        assert!(head.starts_with("HTTP/1.1 599 \r\n"));
        let mut buf = BytesMut::new();
        encode_chunk_header(&mut buf, 0x1a2b);
        encode_chunk_header(&mut buf, 0);
        assert_eq!(&buf[..], b"1a2b\r\n0\r\n");
    }

    #[test]
    fn decimals_at_every_length() {
        for n in [
            0,
            7,
            9,
            10,
            42,
            99,
            100,
            567,
            999,
            1000,
            9999,
            65_536,
            u64::MAX,
        ] {
            let mut buf = BytesMut::new();
            put_decimal(&mut buf, n);
            assert_eq!(&buf[..], n.to_string().as_bytes(), "{n}");
        }
    }

    #[test]
    fn invalid_headers_are_caught() {
        let ok = Response::new(StatusCode::OK).with_header("x-ok", "fine\tvalue".to_string());
        assert!(validate_headers(&ok).is_ok());
        let injected =
            Response::new(StatusCode::OK).with_header("x-bad", "a\r\nset-cookie: x".to_string());
        assert!(validate_headers(&injected).is_err());
        let bad_name = Response::new(StatusCode::OK).with_header("bad name".to_string(), "v");
        assert!(validate_headers(&bad_name).is_err());
        let ctl = Response::new(StatusCode::OK).with_content_type("text/plain\x01".to_string());
        assert!(validate_headers(&ctl).is_err());
    }

    struct EmptyStream;
    impl futures_core::Stream for EmptyStream {
        type Item = Result<bytes::Bytes, crate::BoxError>;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(None)
        }
    }
}
