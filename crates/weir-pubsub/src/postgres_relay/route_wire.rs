//! The wire of a route: one TCP connection on which a node sends its messages straight to
//! another node, PostgreSQL out of the way (see [`super::routes`]).
//!
//! **Who may speak.** A route port is reachable by whoever can reach the node, so nothing
//! is taken from a connection until it proves it knows the cluster's route secret (kept in
//! the shared database, made by the first node that needed it). The proof goes both ways,
//! with fresh nonces, so a recorded handshake cannot be replayed and a node never sends
//! its messages to a listener that only took over a peer's address:
//!
//! ```text
//!  dialer                                           acceptor
//!    ◄──── MAGIC, nonce_a (32 bytes) ─────────────────
//!    ───── node id (8), nonce_d (32), HMAC-SHA256(secret, "dialer" ‖ nonce_a ‖ nonce_d ‖ node) ──►
//!    ◄──── HMAC-SHA256(secret, "acceptor" ‖ nonce_d ‖ nonce_a ‖ node) ───
//!    ───── frames ───────────────────────────────────►
//! ```
//!
//! A wrong proof, a wrong magic or a handshake slower than [`HANDSHAKE_DEADLINE`] closes
//! the connection. The messages themselves are not encrypted: a route carries what
//! subscribers see, so routes belong on the cluster's private network, as NATS routes
//! without TLS do.
//!
//! **Frames.** `len` (u32, big-endian: the bytes after it), `flags` (bit 0: publish only
//! where the topic exists), the topic's length (u16) and bytes, then the payload. A frame
//! longer than [`MAX_FRAME`] closes the connection.

use std::fmt;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::{Inbound, Outbound, MAX_PAYLOAD};
use crate::MAX_TOPIC_LEN;

/// What an acceptor says first: this protocol, version 1.
const MAGIC: &[u8; 8] = b"WEIRRT01";
const NONCE: usize = 32;
const TAG: usize = 32;
/// Time a handshake may take, either side.
pub(crate) const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// The longest frame after its length: flags, topic length, the longest topic, the largest
/// payload the relay carries.
pub(crate) const MAX_FRAME: usize = 1 + 2 + MAX_TOPIC_LEN + MAX_PAYLOAD;
/// Bytes of a secret made for a new cluster.
pub(crate) const SECRET_LEN: usize = 32;

/// Why a route connection ended or never began.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("route handshake refused: {0}")]
    Handshake(&'static str),
    #[error("route handshake took longer than {HANDSHAKE_DEADLINE:?}")]
    HandshakeTimeout,
    #[error("malformed route frame: {0}")]
    Frame(&'static str),
}

/// The cluster's route secret, as the key both sides of a handshake prove they hold.
#[derive(Clone)]
pub(crate) struct RouteKey(hmac::Key);

impl fmt::Debug for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RouteKey(..)") // never printed
    }
}

impl RouteKey {
    pub(crate) fn new(secret: &[u8]) -> RouteKey {
        RouteKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    fn proof(&self, role: &[u8], first: &[u8], second: &[u8], node: u64) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.0);
        for part in [role, first, second, &node.to_be_bytes()] {
            context.update(part);
        }
        context.sign()
    }

    /// Whether `tag` is the proof for these (compared in constant time).
    fn verify(&self, role: &[u8], first: &[u8], second: &[u8], node: u64, tag: &[u8]) -> bool {
        let mut message = Vec::with_capacity(role.len() + first.len() + second.len() + 8);
        for part in [role, first, second, &node.to_be_bytes()] {
            message.extend_from_slice(part);
        }
        hmac::verify(&self.0, &message, tag).is_ok()
    }
}

/// A new random secret for a cluster that has none.
pub(crate) fn new_secret() -> [u8; SECRET_LEN] {
    let mut secret = [0u8; SECRET_LEN];
    SystemRandom::new()
        .fill(&mut secret)
        .expect("the system's random source works");
    secret
}

fn nonce() -> [u8; NONCE] {
    let mut nonce = [0u8; NONCE];
    SystemRandom::new()
        .fill(&mut nonce)
        .expect("the system's random source works");
    nonce
}

async fn within<T>(
    step: impl std::future::Future<Output = Result<T, RouteError>>,
) -> Result<T, RouteError> {
    tokio::time::timeout(HANDSHAKE_DEADLINE, step)
        .await
        .map_err(|_| RouteError::HandshakeTimeout)?
}

/// The dialer's side: proves node `node` holds `key`, and checks that the acceptor does.
pub(crate) async fn dial(
    stream: &mut TcpStream,
    key: &RouteKey,
    node: u64,
) -> Result<(), RouteError> {
    within(async {
        let mut hello = [0u8; MAGIC.len() + NONCE];
        stream.read_exact(&mut hello).await?;
        let (magic, acceptor_nonce) = hello.split_at(MAGIC.len());
        if magic != MAGIC {
            return Err(RouteError::Handshake("not a Weir route port"));
        }
        let dialer_nonce = nonce();
        let proof = key.proof(b"dialer", acceptor_nonce, &dialer_nonce, node);
        let mut answer = Vec::with_capacity(8 + NONCE + TAG);
        answer.extend_from_slice(&node.to_be_bytes());
        answer.extend_from_slice(&dialer_nonce);
        answer.extend_from_slice(proof.as_ref());
        stream.write_all(&answer).await?;
        let mut theirs = [0u8; TAG];
        stream.read_exact(&mut theirs).await?;
        if !key.verify(b"acceptor", &dialer_nonce, acceptor_nonce, node, &theirs) {
            return Err(RouteError::Handshake(
                "the node at that address does not hold the cluster's route secret",
            ));
        }
        Ok(())
    })
    .await
}

/// The acceptor's side: checks that the dialer holds `key`, proves it does too; returns
/// the dialer's node id.
pub(crate) async fn accept(stream: &mut TcpStream, key: &RouteKey) -> Result<u64, RouteError> {
    within(async {
        let acceptor_nonce = nonce();
        let mut hello = Vec::with_capacity(MAGIC.len() + NONCE);
        hello.extend_from_slice(MAGIC);
        hello.extend_from_slice(&acceptor_nonce);
        stream.write_all(&hello).await?;
        let mut answer = [0u8; 8 + NONCE + TAG];
        stream.read_exact(&mut answer).await?;
        let (node, rest) = answer.split_at(8);
        let (dialer_nonce, proof) = rest.split_at(NONCE);
        let node = u64::from_be_bytes(node.try_into().expect("8 bytes"));
        if !key.verify(b"dialer", &acceptor_nonce, dialer_nonce, node, proof) {
            return Err(RouteError::Handshake(
                "the dialer does not hold the cluster's route secret",
            ));
        }
        let ours = key.proof(b"acceptor", dialer_nonce, &acceptor_nonce, node);
        stream.write_all(ours.as_ref()).await?;
        Ok(node)
    })
    .await
}

/// Appends `message`'s frame to `buffer`.
pub(crate) fn encode(buffer: &mut Vec<u8>, message: &Outbound) {
    let topic = message.topic.as_str().as_bytes();
    let len = 1 + 2 + topic.len() + message.payload.len();
    buffer.reserve(4 + len);
    buffer.put_u32(len as u32);
    buffer.put_u8(u8::from(message.only_if_exists));
    buffer.put_u16(topic.len() as u16);
    buffer.put_slice(topic);
    buffer.put_slice(&message.payload);
}

/// Takes the first whole frame off `buffer`; `None` until one has arrived.
pub(crate) fn decode(buffer: &mut BytesMut) -> Result<Option<Inbound>, RouteError> {
    if buffer.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buffer[..4].try_into().expect("4 bytes")) as usize;
    if !(3..=MAX_FRAME).contains(&len) {
        return Err(RouteError::Frame("length out of range"));
    }
    if buffer.len() < 4 + len {
        buffer.reserve(4 + len - buffer.len());
        return Ok(None);
    }
    buffer.advance(4);
    let mut frame = buffer.split_to(len);
    let flags = frame.get_u8();
    let topic_len = usize::from(frame.get_u16());
    if flags > 1 || topic_len > MAX_TOPIC_LEN || topic_len > frame.len() {
        return Err(RouteError::Frame("bad flags or topic length"));
    }
    let topic = String::from_utf8(frame.split_to(topic_len).to_vec())
        .map_err(|_| RouteError::Frame("topic is not UTF-8"))?;
    let payload: Bytes = frame.freeze();
    Ok(Some(Inbound {
        topic,
        payload,
        only_if_exists: flags == 1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TopicName;
    use tokio::net::TcpListener;

    #[test]
    fn frames_round_trip_and_arrive_whole_only() {
        let message = Outbound {
            topic: TopicName::new("orders.eu").unwrap(),
            payload: Bytes::from_static(b"\0binary \xff payload"),
            only_if_exists: true,
        };
        let mut wire = Vec::new();
        encode(&mut wire, &message);
        encode(&mut wire, &message);
        let mut buffer = BytesMut::new();
        // Byte by byte: nothing until a frame is whole.
        let mut got = Vec::new();
        for byte in wire {
            buffer.put_u8(byte);
            while let Some(inbound) = decode(&mut buffer).unwrap() {
                got.push(inbound);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].topic, "orders.eu");
        assert_eq!(got[0].payload, message.payload);
        assert!(got[0].only_if_exists);
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_frame_out_of_bounds_is_refused_before_it_is_read() {
        let mut buffer = BytesMut::from(&((MAX_FRAME + 1) as u32).to_be_bytes()[..]);
        assert!(decode(&mut buffer).is_err());
        let mut buffer = BytesMut::from(&[0, 0, 0, 5, 0, 0xff, 0xff, b'a', b'b'][..]);
        assert!(decode(&mut buffer).is_err(), "topic longer than the frame");
        let mut buffer = BytesMut::from(&[0, 0, 0, 4, 7, 0, 1, b'a'][..]);
        assert!(decode(&mut buffer).is_err(), "unknown flags");
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialer = TcpStream::connect(listener.local_addr().unwrap());
        let (dialer, accepted) = tokio::join!(dialer, listener.accept());
        (dialer.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn a_handshake_passes_with_the_secret_only() {
        let key = RouteKey::new(b"the cluster's secret");
        let (mut dialer, mut acceptor) = pair().await;
        let (dialed, accepted) =
            tokio::join!(dial(&mut dialer, &key, 42), accept(&mut acceptor, &key));
        dialed.unwrap();
        assert_eq!(accepted.unwrap(), 42);

        let other = RouteKey::new(b"another secret");
        let (mut dialer, mut acceptor) = pair().await;
        // The acceptor's task owns its end, and closes it on refusing, as the relay's does.
        let accepting = tokio::spawn(async move { accept(&mut acceptor, &key).await });
        let dialed = dial(&mut dialer, &other, 42).await;
        assert!(matches!(
            accepting.await.unwrap(),
            Err(RouteError::Handshake(_))
        ));
        assert!(
            matches!(dialed, Err(RouteError::Io(_))),
            "the dialer hears no proof: {dialed:?}"
        );
    }
}
