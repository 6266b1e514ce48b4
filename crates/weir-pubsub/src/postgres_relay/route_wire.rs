//! The wire of a route: one TCP connection on which a node sends its messages straight to
//! another node, PostgreSQL out of the way (see [`super::routes`]).
//!
//! **Who may speak.** A route port is reachable by whoever can reach the node, so nothing
//! is taken from a connection until it proves it knows the cluster's route secret (kept in
//! the shared database, made by the first node that needed it). The proof goes both ways,
//! with fresh nonces, and names both nodes, so a recorded handshake cannot be replayed, a
//! node never sends its messages to a listener that only took over a peer's address (or to
//! a peer restarted there under a new id, or to itself), and a stranger cannot splice two
//! nodes' handshakes together to pass one:
//!
//! ```text
//!  dialer D, for node T                                    acceptor A
//!    ◄──── MAGIC, nonce_a (32 bytes) ─────────────────────────
//!    ───── D (8), T (8), nonce_d (32), HMAC(secret, "dialer" ‖ nonce_a ‖ nonce_d ‖ D ‖ T) ──►
//!                                     A refuses unless T = A, D ≠ A and the proof holds
//!    ◄──── HMAC(secret, "acceptor" ‖ nonce_d ‖ nonce_a ‖ D ‖ A) ───
//!                                     D refuses unless it holds for A = T
//!    ───── sealed batches of frames ─────────────────────────►
//! ```
//!
//! **What follows is sealed.** Each batch of frames carries an HMAC under a key made for
//! this connection (`HMAC(secret, "frames" ‖ nonce_a ‖ nonce_d ‖ D ‖ A)`) over its number
//! and its bytes, so nothing can be added, changed, dropped or replayed on the way without
//! the acceptor closing the connection. A wrong proof, a wrong seal, a wrong magic or a
//! handshake slower than [`HANDSHAKE_DEADLINE`] closes the connection. The messages are not
//! encrypted: a route carries what subscribers see, and whoever can watch the network
//! between two nodes can read them, so routes belong on the cluster's private network, as
//! NATS routes without TLS do.
//!
//! **Batches.** `len` (u32, big-endian), `len` bytes of frames, the 32-byte seal.
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
/// A sender stops adding frames to a batch once it holds this many bytes.
pub(crate) const WRITE_BATCH: usize = 256 << 10;
/// The longest batch: a full one plus the frame that took it past [`WRITE_BATCH`].
const MAX_BATCH: usize = WRITE_BATCH + 4 + MAX_FRAME;

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

    fn proof(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.0);
        for part in parts {
            context.update(part);
        }
        context.sign()
    }

    /// Whether `tag` is the proof for `parts` (compared in constant time).
    fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        hmac::verify(&self.0, &parts.concat(), tag).is_ok()
    }

    /// The key that seals one connection's batches.
    fn for_frames(
        &self,
        acceptor_nonce: &[u8],
        dialer_nonce: &[u8],
        dialer: u64,
        acceptor: u64,
    ) -> hmac::Key {
        let tag = self.proof(&[
            b"frames",
            acceptor_nonce,
            dialer_nonce,
            &dialer.to_be_bytes(),
            &acceptor.to_be_bytes(),
        ]);
        hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
    }
}

/// The dialer's side of a connection after its handshake: seals each batch it sends.
#[derive(Debug)]
pub(crate) struct Sealer {
    key: hmac::Key,
    batch: u64,
}

impl Sealer {
    /// Starts a batch in `buffer`, emptied: room for its length, then frames go after it.
    pub(crate) fn begin(buffer: &mut Vec<u8>) {
        buffer.clear();
        buffer.extend_from_slice(&[0; 4]);
    }

    /// Finishes the batch in `buffer`: its length in front, its seal behind.
    pub(crate) fn seal(&mut self, buffer: &mut Vec<u8>) {
        let len = (buffer.len() - 4) as u32;
        buffer[..4].copy_from_slice(&len.to_be_bytes());
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&self.batch.to_be_bytes());
        context.update(&buffer[4..]);
        self.batch += 1;
        buffer.extend_from_slice(context.sign().as_ref());
    }
}

/// The acceptor's side of a connection after its handshake: checks each batch's seal.
#[derive(Debug)]
pub(crate) struct Opener {
    key: hmac::Key,
    batch: u64,
}

impl Opener {
    #[cfg(test)]
    fn clone_for_test(&self) -> Opener {
        Opener {
            key: self.key.clone(),
            batch: self.batch,
        }
    }

    /// Takes the first whole batch off `buffer` and checks its seal; its frames, or `None`
    /// until a whole batch has arrived.
    pub(crate) fn open(&mut self, buffer: &mut BytesMut) -> Result<Option<BytesMut>, RouteError> {
        if buffer.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(buffer[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_BATCH {
            return Err(RouteError::Frame("batch longer than any sender makes"));
        }
        if buffer.len() < 4 + len + TAG {
            buffer.reserve(4 + len + TAG - buffer.len());
            return Ok(None);
        }
        buffer.advance(4);
        let frames = buffer.split_to(len);
        let seal = buffer.split_to(TAG);
        let mut message = Vec::with_capacity(8 + len);
        message.extend_from_slice(&self.batch.to_be_bytes());
        message.extend_from_slice(&frames);
        if hmac::verify(&self.key, &message, &seal).is_err() {
            return Err(RouteError::Frame("a batch's seal does not hold"));
        }
        self.batch += 1;
        Ok(Some(frames))
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

/// The dialer's side: proves that node `own` holds `key` and wants node `target`, and
/// checks that the acceptor is `target` and holds it too.
pub(crate) async fn dial(
    stream: &mut TcpStream,
    key: &RouteKey,
    own: u64,
    target: u64,
) -> Result<Sealer, RouteError> {
    within(async {
        let mut hello = [0u8; MAGIC.len() + NONCE];
        stream.read_exact(&mut hello).await?;
        let (magic, acceptor_nonce) = hello.split_at(MAGIC.len());
        if magic != MAGIC {
            return Err(RouteError::Handshake("not a Weir route port"));
        }
        let dialer_nonce = nonce();
        let (own_id, target_id) = (own.to_be_bytes(), target.to_be_bytes());
        let proof = key.proof(&[b"dialer", acceptor_nonce, &dialer_nonce, &own_id, &target_id]);
        let answer = [&own_id[..], &target_id, &dialer_nonce, proof.as_ref()].concat();
        stream.write_all(&answer).await?;
        let mut theirs = [0u8; TAG];
        stream.read_exact(&mut theirs).await?;
        if !key.verify(&[b"acceptor", &dialer_nonce, acceptor_nonce, &own_id, &target_id], &theirs) {
            return Err(RouteError::Handshake(
                "the node at that address is not the one wanted, or does not hold the cluster's route secret",
            ));
        }
        Ok(Sealer {
            key: key.for_frames(acceptor_nonce, &dialer_nonce, own, target),
            batch: 0,
        })
    })
    .await
}

/// The acceptor's side, on node `own`: checks that the dialer holds `key` and wants this
/// node, proves it holds it too; returns the dialer's node id and what opens its batches.
pub(crate) async fn accept(
    stream: &mut TcpStream,
    key: &RouteKey,
    own: u64,
) -> Result<(u64, Opener), RouteError> {
    within(async {
        let acceptor_nonce = nonce();
        stream
            .write_all(&[&MAGIC[..], &acceptor_nonce].concat())
            .await?;
        let mut answer = [0u8; 8 + 8 + NONCE + TAG];
        stream.read_exact(&mut answer).await?;
        let (dialer_id, rest) = answer.split_at(8);
        let (target_id, rest) = rest.split_at(8);
        let (dialer_nonce, proof) = rest.split_at(NONCE);
        let dialer = u64::from_be_bytes(dialer_id.try_into().expect("8 bytes"));
        let target = u64::from_be_bytes(target_id.try_into().expect("8 bytes"));
        if !key.verify(
            &[
                b"dialer",
                &acceptor_nonce,
                dialer_nonce,
                dialer_id,
                target_id,
            ],
            proof,
        ) {
            return Err(RouteError::Handshake(
                "the dialer does not hold the cluster's route secret",
            ));
        }
        if target != own || dialer == own {
            // Another node's handshake passed on to this one, a peer dialling the address
            // of a node that is gone, or this node dialling itself.
            return Err(RouteError::Handshake("the dialer wants another node"));
        }
        let ours = key.proof(&[
            b"acceptor",
            dialer_nonce,
            &acceptor_nonce,
            dialer_id,
            &own.to_be_bytes(),
        ]);
        stream.write_all(ours.as_ref()).await?;
        Ok((
            dialer,
            Opener {
                key: key.for_frames(&acceptor_nonce, dialer_nonce, dialer, own),
                batch: 0,
            },
        ))
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
    if topic_len > MAX_TOPIC_LEN || topic_len > frame.len() {
        return Err(RouteError::Frame("bad topic length"));
    }
    let topic = String::from_utf8(frame.split_to(topic_len).to_vec())
        .map_err(|_| RouteError::Frame("topic is not UTF-8"))?;
    // A copy: the frame shares the connection's read buffer, which a retained message
    // would otherwise keep whole (256 KiB for a 100-byte message, uncounted by the
    // hub's byte limits).
    let payload = Bytes::copy_from_slice(&frame);
    Ok(Some(Inbound {
        topic,
        payload,
        // Bits past the first are for later versions: ignored, not refused.
        only_if_exists: flags & 1 == 1,
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
        // A batch longer than any sender makes is refused from its length alone.
        let mut opener = Opener {
            key: hmac::Key::new(hmac::HMAC_SHA256, b"k"),
            batch: 0,
        };
        let mut buffer = BytesMut::from(&((MAX_BATCH + 1) as u32).to_be_bytes()[..]);
        assert!(opener.open(&mut buffer).is_err());
        // Flag bits past the first are a later version's: ignored.
        let mut buffer = BytesMut::from(&[0, 0, 0, 4, 7, 0, 1, b'a'][..]);
        assert!(decode(&mut buffer).unwrap().unwrap().only_if_exists);
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialer = TcpStream::connect(listener.local_addr().unwrap());
        let (dialer, accepted) = tokio::join!(dialer, listener.accept());
        (dialer.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn a_handshake_passes_with_the_secret_and_the_right_node_only() {
        let key = RouteKey::new(b"the cluster's secret");
        let (mut dialer, mut acceptor) = pair().await;
        let (dialed, accepted) = tokio::join!(
            dial(&mut dialer, &key, 42, 7),
            accept(&mut acceptor, &key, 7)
        );
        let mut sealer = dialed.unwrap();
        let (from, mut opener) = accepted.unwrap();
        assert_eq!(from, 42);

        // Sealed batches open in order; a changed, replayed or reordered one does not.
        let batch = |sealer: &mut Sealer, text: &str| {
            let mut buffer = Vec::new();
            Sealer::begin(&mut buffer);
            encode(
                &mut buffer,
                &Outbound {
                    topic: TopicName::new("t").unwrap(),
                    payload: Bytes::from(text.to_owned()),
                    only_if_exists: false,
                },
            );
            sealer.seal(&mut buffer);
            buffer
        };
        let (first, second) = (batch(&mut sealer, "one"), batch(&mut sealer, "two"));
        let mut wire = BytesMut::from(&first[..]);
        let mut frames = opener.open(&mut wire).unwrap().unwrap();
        assert_eq!(decode(&mut frames).unwrap().unwrap().payload, "one");
        let mut replayed = BytesMut::from(&first[..]);
        assert!(
            opener.clone_for_test().open(&mut replayed).is_err(),
            "a replay"
        );
        let mut changed = second.clone();
        let at = changed.len() - 40;
        changed[at] ^= 1;
        assert!(opener
            .clone_for_test()
            .open(&mut BytesMut::from(&changed[..]))
            .is_err());
        let mut wire = BytesMut::from(&second[..]);
        assert!(opener.open(&mut wire).unwrap().is_some());

        // Another secret: refused both ways.
        let other = RouteKey::new(b"another secret");
        let (mut dialer, mut acceptor) = pair().await;
        // The acceptor's task owns its end, and closes it on refusing, as the relay's does.
        let accepting = tokio::spawn(async move { accept(&mut acceptor, &key, 7).await });
        let dialed = dial(&mut dialer, &other, 42, 7).await;
        assert!(matches!(
            accepting.await.unwrap(),
            Err(RouteError::Handshake(_))
        ));
        assert!(
            matches!(dialed, Err(RouteError::Io(_))),
            "the dialer hears no proof: {dialed:?}"
        );
    }

    #[tokio::test]
    async fn a_handshake_for_another_node_is_refused() {
        let key = RouteKey::new(b"the cluster's secret");
        // Node 42 dials the address of node 7, where node 9 now listens (7 restarted under
        // a new id, or a stranger passes 42's handshake on to 9): 9 refuses.
        let (mut dialer, mut acceptor) = pair().await;
        let accepting = {
            let key = key.clone();
            tokio::spawn(async move { accept(&mut acceptor, &key, 9).await })
        };
        assert!(dial(&mut dialer, &key, 42, 7).await.is_err());
        assert!(matches!(
            accepting.await.unwrap(),
            Err(RouteError::Handshake(_))
        ));
        // A node that dials itself is refused too.
        let (mut dialer, mut acceptor) = pair().await;
        let accepting = tokio::spawn(async move { accept(&mut acceptor, &key, 7).await });
        let key = RouteKey::new(b"the cluster's secret");
        assert!(dial(&mut dialer, &key, 7, 7).await.is_err());
        assert!(matches!(
            accepting.await.unwrap(),
            Err(RouteError::Handshake(_))
        ));
    }
}
