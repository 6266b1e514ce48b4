//! The WebSocket opening handshake (RFC 6455 section 4.2) and the upgraded connection.
//!
//! [`upgrade`] validates the client's handshake and answers `101 Switching Protocols`; after
//! the response is written, the server hands the socket, together with any bytes the client
//! sent right behind its request, to the callback as an [`Upgraded`] stream. Framing is the
//! caller's business (tungstenite's `WebSocketStream::from_raw_socket` fits).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::{Method, Request, Response, StatusCode, Version};

/// The GUID of RFC 6455 that the accept key is derived with.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A connection taken over by another protocol after `101 Switching Protocols`.
///
/// Reads first return the bytes the server had already read past the request head, then
/// read from the socket.
#[derive(Debug)]
pub struct Upgraded {
    stream: TcpStream,
    read_ahead: Bytes,
}

impl Upgraded {
    pub(crate) fn new(stream: TcpStream, read_ahead: Bytes) -> Self {
        Self { stream, read_ahead }
    }

    /// The socket and the bytes already read from it, for protocols that want both.
    pub fn into_parts(self) -> (TcpStream, Bytes) {
        (self.stream, self.read_ahead)
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read_ahead.is_empty() {
            let n = self.read_ahead.len().min(buf.remaining());
            buf.put_slice(&self.read_ahead[..n]);
            self.read_ahead.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    base64_encode(&sha.digest().bytes())
}

/// Answers a WebSocket handshake.
///
/// A valid handshake (GET, HTTP/1.1, `Connection: upgrade`, `Upgrade: websocket`,
/// `Sec-WebSocket-Version: 13`, and a key that is 16 bytes in base64) gets `101` and
/// `on_upgrade` runs with the connection once the response is written. A wrong version gets
/// `426` with `Sec-WebSocket-Version: 13`; anything else gets `400` naming what is wrong.
pub fn upgrade<F, Fut>(request: &Request, on_upgrade: F) -> Response
where
    F: FnOnce(Upgraded) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let bad = |why: &'static str| Response::text(StatusCode::BAD_REQUEST, why);
    if *request.method() != Method::Get || request.version() != Version::Http11 {
        return bad("a WebSocket handshake is a GET over HTTP/1.1\n");
    }
    let upgrade_websocket = request.header("upgrade").is_some_and(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
    });
    if !request.is_upgrade() || !upgrade_websocket {
        return bad("a WebSocket handshake needs 'Connection: upgrade' and 'Upgrade: websocket'\n");
    }
    if request.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Response::text(
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is supported\n",
        )
        .with_header("sec-websocket-version", "13");
    }
    let Some(key) = request.header("sec-websocket-key").map(str::trim) else {
        return bad("missing Sec-WebSocket-Key\n");
    };
    if !is_valid_key(key) {
        return bad("Sec-WebSocket-Key must be 16 bytes in base64\n");
    }
    Response::new(StatusCode::SWITCHING_PROTOCOLS)
        .with_header("upgrade", "websocket")
        .with_header("connection", "upgrade")
        .with_header("sec-websocket-accept", accept_key(key))
        .with_upgrade(Box::new(move |upgraded| Box::pin(on_upgrade(upgraded))))
}

/// 16 bytes in base64 are 24 characters, the last two `==`.
fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    bytes.len() == 24
        && bytes[22..] == *b"=="
        && bytes[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for group in input.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    fn handshake(headers: &[(&str, &str)]) -> Response {
        let req = Request::build(Method::GET, "/ws", headers, "").unwrap();
        upgrade(&req, |_| async {})
    }

    #[test]
    fn validates_the_handshake() {
        let good = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        let ok = handshake(&good);
        assert_eq!(ok.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            ok.header("sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        let mut old = good;
        old[2].1 = "8";
        assert_eq!(handshake(&old).status(), StatusCode::UPGRADE_REQUIRED);
        let mut bad_key = good;
        bad_key[3].1 = "short";
        assert_eq!(handshake(&bad_key).status(), StatusCode::BAD_REQUEST);
        assert_eq!(handshake(&good[1..]).status(), StatusCode::BAD_REQUEST);
    }
}
