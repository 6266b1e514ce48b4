//! What each server expects: the subscribe handshake and the publish frame.
//!
//! Delivered messages are counted without parsing each protocol's framing: every payload
//! starts with `@` followed by 16 hex digits (the send time), and no framing of the three
//! protocols contains `@`, so a subscriber scans its byte stream for that marker.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The servers and transports the tool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Weir's TCP line protocol.
    Weir,
    /// Weir's Server-Sent Events (subscribe only).
    WeirSse,
    /// Weir's WebSocket (subscribe only).
    WeirWs,
    /// Redis pub/sub (RESP2).
    Redis,
    /// NATS core.
    Nats,
}

impl Protocol {
    pub fn parse(name: &str) -> Option<Protocol> {
        Some(match name {
            "weir" => Protocol::Weir,
            "weir-sse" => Protocol::WeirSse,
            "weir-ws" => Protocol::WeirWs,
            "redis" => Protocol::Redis,
            "nats" => Protocol::Nats,
            _ => return None,
        })
    }
}

pub const TOPIC: &str = "bench";
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(30);

/// Connects and subscribes to [`TOPIC`]; returns once the server has confirmed, with any
/// bytes read past the confirmation.
pub async fn subscribe(protocol: Protocol, addr: &str) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (request, confirmation): (Vec<u8>, &[u8]) = match protocol {
        Protocol::Weir => (format!("SUB {TOPIC}\r\n").into_bytes(), b"+OK subscribed"),
        Protocol::WeirSse => (
            format!("GET /v1/topics/{TOPIC}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes(),
            b"\r\n\r\n",
        ),
        Protocol::WeirWs => {
            let mut request = b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
            request.extend(masked_text_frame(&format!(
                "{{\"op\":\"subscribe\",\"topic\":\"{TOPIC}\"}}"
            )));
            (request, b"\"subscribed\"")
        }
        Protocol::Redis => (format!("SUBSCRIBE {TOPIC}\r\n").into_bytes(), b":1\r\n"),
        // verbose off: no +OK per command; the PONG says the SUB before it was processed.
        Protocol::Nats => (
            format!("CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB {TOPIC} 1\r\nPING\r\n")
                .into_bytes(),
            b"PONG\r\n",
        ),
    };
    stream.write_all(&request).await?;
    let mut seen = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let found = tokio::time::timeout(HANDSHAKE_DEADLINE, async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed during subscribe: {}", String::from_utf8_lossy(&seen)),
                ));
            }
            seen.extend_from_slice(&buf[..n]);
            if let Some(at) = find(&seen, confirmation) {
                return Ok(at + confirmation.len());
            }
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "subscribe not confirmed"))??;
    Ok((stream, seen.split_off(found)))
}

/// Connects a publisher; returns the stream with its greeting consumed.
pub async fn publisher(protocol: Protocol, addr: &str) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    if protocol == Protocol::Nats {
        stream
            .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
            .await?;
    }
    Ok(stream)
}

/// Appends the publish command for `payload` to `out`.
pub fn publish_frame(protocol: Protocol, payload: &[u8], out: &mut Vec<u8>) {
    match protocol {
        Protocol::Weir | Protocol::WeirSse | Protocol::WeirWs => {
            out.extend_from_slice(format!("PUB {TOPIC} ").as_bytes());
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
        Protocol::Redis => {
            out.extend_from_slice(
                format!(
                    "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{TOPIC}\r\n${}\r\n",
                    TOPIC.len(),
                    payload.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
        Protocol::Nats => {
            out.extend_from_slice(format!("PUB {TOPIC} {}\r\n", payload.len()).as_bytes());
            out.extend_from_slice(payload);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A payload of `size` bytes: `@`, the send time in 16 hex digits, then filler.
pub fn payload(sent_nanos: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.push(b'@');
    out.extend_from_slice(format!("{sent_nanos:016x}").as_bytes());
    out.resize(size.max(17), b'.');
}

/// A client-to-server WebSocket text frame (masked, as RFC 6455 requires).
fn masked_text_frame(text: &str) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
