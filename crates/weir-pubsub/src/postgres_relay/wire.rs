//! The relay's notifications: how messages travel between nodes as PostgreSQL
//! notification payloads, and how the receiver puts them back together.
//!
//! A payload is text shorter than 8,000 bytes: the sender's id in hex, then one or more
//! records ` {seq} {part} {parts} {flags} {topic} {len} {data}`, where
//! - the sender's id lets a node skip its own notifications;
//! - `seq` numbers the sender's messages from 0: a gap tells the receiver that messages were
//!   lost while its listening connection was down (notifications are not kept for a
//!   session that is not listening);
//! - small messages share a notification, as many as fit (measured: one notification per
//!   message held the relay to about 51,000 messages a second on this machine, most of it
//!   PostgreSQL's cost per notification);
//! - a message too large for one notification is cut into `parts`, one per notification,
//!   all sent in one transaction, and PostgreSQL delivers one transaction's notifications
//!   together and in order;
//! - `flags` is `t` (the data is the payload's text) or `b` (base64: a payload that is not
//!   UTF-8 or holds a NUL, which PostgreSQL's text cannot carry), then `e` (publish only
//!   where the topic exists) or `-`;
//! - `data` is `len` bytes, spaces and line breaks included.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::{TopicName, MAX_TOPIC_LEN};
use base64::prelude::{Engine, BASE64_STANDARD};
use bytes::Bytes;

/// PostgreSQL's limit: a notification payload must be shorter than 8,000 bytes.
const MAX_NOTIFICATION: usize = 7_999;
/// The longest node id (16 hex digits).
const MAX_NODE: usize = 16;
/// The longest record header: seq (20 digits), part, parts and len (7 digits each), flags
/// (2), the longest topic, and seven spaces.
const MAX_HEADER: usize = 20 + 7 + 7 + 2 + MAX_TOPIC_LEN + 7 + 7;
/// Data per part of a message cut into parts.
const DATA_PER_PART: usize = MAX_NOTIFICATION - MAX_NODE - MAX_HEADER;
/// The largest payload relayed; a larger one (possible only with `pubsub.max_payload`
/// raised past it) is not sent, and counted as dropped.
pub(crate) const MAX_PAYLOAD: usize = 16 << 20;
/// Parts of one message a receiver accepts: enough for [`MAX_PAYLOAD`] in base64, and a
/// bound on what one half-received message can hold.
const MAX_PARTS: usize = MAX_PAYLOAD.div_ceil(3) * 4 / DATA_PER_PART + 1;
/// Room reserved for a message's data when its first part arrives; a larger one grows as
/// its parts come (a corrupt part count cannot make a node reserve much).
const RESERVE: usize = 1 << 20;

/// A local publish on its way to other nodes.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub(crate) topic: TopicName,
    pub(crate) payload: Bytes,
    pub(crate) only_if_exists: bool,
}

impl Outbound {
    /// What it holds, for the bound on the queue's bytes: its payload and topic, and what
    /// the queue itself keeps per message.
    pub(crate) fn size(&self) -> usize {
        self.payload.len() + self.topic.as_str().len() + std::mem::size_of::<Outbound>()
    }
}

/// A message from another node, put back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inbound {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) only_if_exists: bool,
}

/// Builds the notifications for a run of messages of one node, packing small ones.
#[derive(Debug)]
pub(crate) struct Encoder {
    prefix: String,
    /// With it (a database whose encoding is not UTF-8, which could not take every
    /// character), any text that is not ASCII goes as base64.
    ascii_only: bool,
    notifications: Vec<String>,
    /// Bytes in `notifications`, kept as they are added: the sender asks after every
    /// message whether its batch is full.
    finished_bytes: usize,
    current: String,
}

impl Encoder {
    /// An encoder for node `node`.
    pub(crate) fn new(node: u64, ascii_only: bool) -> Encoder {
        let prefix = format!("{node:x}");
        Encoder {
            current: prefix.clone(),
            prefix,
            ascii_only,
            notifications: Vec::new(),
            finished_bytes: 0,
        }
    }

    /// Adds `message`, message number `seq`.
    pub(crate) fn push(&mut self, seq: u64, message: &Outbound) {
        let (kind, data) = match std::str::from_utf8(&message.payload) {
            Ok(text) if !text.contains('\0') && (!self.ascii_only || text.is_ascii()) => {
                ('t', Cow::Borrowed(text))
            }
            _ => ('b', Cow::Owned(BASE64_STANDARD.encode(&message.payload))),
        };
        let exists = if message.only_if_exists { 'e' } else { '-' };
        let topic = &message.topic;
        if data.len() <= DATA_PER_PART {
            let header = format!(" {seq} 0 1 {kind}{exists} {topic} {} ", data.len());
            if self.current.len() + header.len() + data.len() > MAX_NOTIFICATION {
                self.flush();
            }
            self.current.push_str(&header);
            self.current.push_str(&data);
            return;
        }
        self.flush();
        let chunks = chunks(&data, DATA_PER_PART);
        let parts = chunks.len();
        for (part, chunk) in chunks.iter().enumerate() {
            let header = format!(
                " {seq} {part} {parts} {kind}{exists} {topic} {} ",
                chunk.len()
            );
            self.finish_one(format!("{}{header}{chunk}", self.prefix));
        }
    }

    /// Bytes of notifications so far.
    pub(crate) fn bytes(&self) -> usize {
        self.finished_bytes + self.current.len()
    }

    /// The notifications, in order.
    pub(crate) fn finish(mut self) -> Vec<String> {
        self.flush();
        self.notifications
    }

    fn flush(&mut self) {
        if self.current.len() > self.prefix.len() {
            let full = std::mem::replace(&mut self.current, self.prefix.clone());
            self.finish_one(full);
        }
    }

    fn finish_one(&mut self, notification: String) {
        self.finished_bytes += notification.len();
        self.notifications.push(notification);
    }
}

/// `text` in pieces of at most `room` bytes, cut between characters; at least one piece.
fn chunks(text: &str, room: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > room {
        let mut cut = room;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    pieces
}

/// One record of a notification, parsed.
#[derive(Debug)]
struct Fragment<'a> {
    seq: u64,
    part: usize,
    parts: usize,
    base64: bool,
    only_if_exists: bool,
    topic: &'a str,
    data: &'a str,
}

/// The sender of a notification, and its records; `None` if malformed.
fn sender_of(payload: &str) -> Option<(u64, &str)> {
    let (node, records) = payload.split_once(' ')?;
    Some((u64::from_str_radix(node, 16).ok()?, records))
}

/// The records of a notification (after its sender); `None` if any is malformed.
fn parse(mut rest: &str) -> Option<Vec<Fragment<'_>>> {
    let mut fragments = Vec::new();
    loop {
        let mut fields = rest.splitn(7, ' ');
        let seq = fields.next()?.parse().ok()?;
        let part = fields.next()?.parse().ok()?;
        let parts = fields.next()?.parse().ok()?;
        let (base64, only_if_exists) = match fields.next()?.as_bytes() {
            [kind @ (b't' | b'b'), exists @ (b'e' | b'-')] => (*kind == b'b', *exists == b'e'),
            _ => return None,
        };
        let topic = fields.next()?;
        let len: usize = fields.next()?.parse().ok()?;
        let tail = fields.next()?;
        if !(part < parts && parts <= MAX_PARTS && tail.is_char_boundary(len)) {
            return None;
        }
        let (data, after) = tail.split_at(len);
        fragments.push(Fragment {
            seq,
            part,
            parts,
            base64,
            only_if_exists,
            topic,
            data,
        });
        if after.is_empty() {
            return Some(fragments);
        }
        rest = after.strip_prefix(' ')?;
    }
}

/// What feeding one notification gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Fed {
    /// The messages this notification completed, in order.
    pub(crate) messages: Vec<Inbound>,
    /// Messages of the sender that will never arrive (a gap in its numbers, or a message
    /// whose parts stopped coming).
    pub(crate) lost: u64,
    /// The notification was not one of ours (or a corrupt one): ignored.
    pub(crate) malformed: bool,
}

/// Puts messages back together from their notifications, per sending node.
#[derive(Debug)]
pub(crate) struct Reassembler {
    own: u64,
    senders: HashMap<u64, Sender>,
}

#[derive(Debug, Default)]
struct Sender {
    /// The message number expected next; `None` before the first one seen.
    next: Option<u64>,
    partial: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    seq: u64,
    next_part: usize,
    data: String,
}

/// Senders remembered at most; past it, those with no message in progress are forgotten
/// (a restarted node comes back under a new id).
const MAX_SENDERS: usize = 1024;

impl Reassembler {
    /// A reassembler for node `own`, whose own notifications it skips.
    pub(crate) fn new(own: u64) -> Reassembler {
        Reassembler {
            own,
            senders: HashMap::new(),
        }
    }

    /// Feeds one notification payload.
    pub(crate) fn feed(&mut self, payload: &str) -> Fed {
        let mut fed = Fed::default();
        let Some((node, records)) = sender_of(payload) else {
            fed.malformed = true;
            return fed;
        };
        if node == self.own {
            return fed; // every node hears its own: skipped before any parsing
        }
        let Some(fragments) = parse(records) else {
            fed.malformed = true;
            return fed;
        };
        for fragment in fragments {
            self.feed_fragment(node, fragment, &mut fed);
        }
        fed
    }

    fn feed_fragment(&mut self, node: u64, fragment: Fragment<'_>, fed: &mut Fed) {
        if self.senders.len() >= MAX_SENDERS && !self.senders.contains_key(&node) {
            self.senders.retain(|_, sender| sender.partial.is_some());
            if self.senders.len() >= MAX_SENDERS {
                // Every one mid-message: a bound on memory matters more than those.
                self.senders.clear();
            }
        }
        let sender = self.senders.entry(node).or_default();
        // `next` is the first message number neither delivered nor counted lost; while a
        // message is in progress, that message's.
        let joined_late = sender.next.is_none();
        if let Some(next) = sender.next {
            if fragment.seq < next {
                return; // the rest of a message already given up
            }
            // Messages never seen, and one in progress that this one does not continue.
            fed.lost = fed.lost.saturating_add(fragment.seq - next);
        }
        let continues = sender.partial.as_ref().is_some_and(|partial| {
            partial.seq == fragment.seq && partial.next_part == fragment.part
        });
        if !continues {
            let broken_here = sender
                .partial
                .take()
                .is_some_and(|partial| partial.seq == fragment.seq);
            if fragment.part > 0 {
                // Its start (or a part) was missed: skip the rest of it.
                fed.lost = fed
                    .lost
                    .saturating_add(u64::from(broken_here || !joined_late));
                sender.next = Some(fragment.seq.saturating_add(1));
                return;
            }
            fed.lost = fed.lost.saturating_add(u64::from(broken_here));
            sender.partial = Some(Partial {
                seq: fragment.seq,
                next_part: 0,
                data: String::with_capacity((fragment.data.len() * fragment.parts).min(RESERVE)),
            });
        }
        sender.next = Some(fragment.seq);
        let partial = sender.partial.as_mut().expect("continued or started above");
        partial.data.push_str(fragment.data);
        partial.next_part += 1;
        if partial.next_part < fragment.parts {
            return;
        }
        let data = std::mem::take(&mut partial.data);
        sender.partial = None;
        sender.next = Some(fragment.seq.saturating_add(1));
        let payload = match fragment.base64 {
            false => Bytes::from(data),
            true => match BASE64_STANDARD.decode(&data) {
                Ok(bytes) => Bytes::from(bytes),
                Err(_) => {
                    fed.malformed = true;
                    return;
                }
            },
        };
        fed.messages.push(Inbound {
            topic: fragment.topic.to_owned(),
            payload,
            only_if_exists: fragment.only_if_exists,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound(topic: &str, payload: impl Into<Bytes>, only_if_exists: bool) -> Outbound {
        Outbound {
            topic: TopicName::new(topic).unwrap(),
            payload: payload.into(),
            only_if_exists,
        }
    }

    fn inbound(message: &Outbound) -> Inbound {
        Inbound {
            topic: message.topic.to_string(),
            payload: message.payload.clone(),
            only_if_exists: message.only_if_exists,
        }
    }

    /// The notifications for `messages`, numbered from `first`, as one batch of node `node`.
    fn encode(node: u64, first: u64, messages: &[Outbound], ascii_only: bool) -> Vec<String> {
        let mut encoder = Encoder::new(node, ascii_only);
        for (n, message) in messages.iter().enumerate() {
            encoder.push(first + n as u64, message);
        }
        let notifications = encoder.finish();
        for notification in &notifications {
            assert!(
                notification.len() <= MAX_NOTIFICATION,
                "{}",
                notification.len()
            );
        }
        notifications
    }

    /// Feeds every notification; returns the messages and the total lost.
    fn feed_all(reassembler: &mut Reassembler, notifications: &[String]) -> (Vec<Inbound>, u64) {
        let mut messages = Vec::new();
        let mut lost = 0;
        for notification in notifications {
            let fed = reassembler.feed(notification);
            assert!(!fed.malformed, "{notification}");
            messages.extend(fed.messages);
            lost += fed.lost;
        }
        (messages, lost)
    }

    #[test]
    fn text_binary_empty_and_large_messages_come_back_whole() {
        let long_text: String = "héllo wörld ✓ ".repeat(3_000); // multibyte at every cut
        let binary: Vec<u8> = (0..=255u8).cycle().take(50_000).collect();
        let messages = [
            outbound("chat:lobby", "hi there, two words\nand a line", false),
            outbound("jobs.42", "{\"state\":\"running\"}", true),
            outbound("t", "", false),
            outbound("orders.eu", long_text, false),
            outbound("bin", binary, false),
            outbound("nul", &b"a\0b"[..], false),
            outbound("after", "7 0 1 t- fake 3 abc", false), // looks like a record
        ];
        let notifications = encode(7, 0, &messages, false);
        assert!(notifications.len() > 10, "the large ones are cut");
        let (received, lost) = feed_all(&mut Reassembler::new(1), &notifications);
        assert_eq!(lost, 0);
        assert_eq!(received, messages.iter().map(inbound).collect::<Vec<_>>());
    }

    #[test]
    fn empty_messages_and_the_longest_headers_fit_and_parse() {
        let topic = "t".repeat(MAX_TOPIC_LEN);
        let messages = [
            outbound("a", "", false),
            outbound("b", "after an empty one", false),
            outbound(&topic, vec![0xffu8; DATA_PER_PART], true), // base64: cut into parts
            outbound(&topic, "x".repeat(DATA_PER_PART), true),   // exactly one part's worth
        ];
        let notifications = encode(u64::MAX, u64::MAX - 10, &messages, false);
        let (received, lost) = feed_all(&mut Reassembler::new(1), &notifications);
        assert_eq!(lost, 0);
        assert_eq!(received, messages.iter().map(inbound).collect::<Vec<_>>());
    }

    #[test]
    fn the_running_byte_count_matches_the_notifications() {
        let mut encoder = Encoder::new(7, false);
        for n in 0..300 {
            let size = if n % 50 == 0 { 20_000 } else { 100 };
            encoder.push(n, &outbound("a", "y".repeat(size), false));
        }
        let counted = encoder.bytes();
        let notifications = encoder.finish();
        assert_eq!(
            counted,
            notifications.iter().map(String::len).sum::<usize>()
        );
    }

    #[test]
    fn small_messages_share_notifications() {
        let messages: Vec<Outbound> = (0..1_000)
            .map(|n| outbound("room.1", format!("message {n} {}", "x".repeat(80)), false))
            .collect();
        let notifications = encode(7, 0, &messages, false);
        // About 100 bytes of record each: some 75 to a notification.
        assert!(
            notifications.len() <= 15,
            "{} notifications",
            notifications.len()
        );
        let (received, lost) = feed_all(&mut Reassembler::new(1), &notifications);
        assert_eq!(lost, 0);
        assert_eq!(received, messages.iter().map(inbound).collect::<Vec<_>>());
    }

    #[test]
    fn a_database_that_is_not_utf8_gets_ascii_only() {
        let message = outbound("a", "größer", false);
        let notifications = encode(7, 0, std::slice::from_ref(&message), true);
        assert!(
            notifications.iter().all(|n| n.is_ascii()),
            "{notifications:?}"
        );
        let (received, _) = feed_all(&mut Reassembler::new(1), &notifications);
        assert_eq!(received, [inbound(&message)]);
        let plain = encode(7, 0, &[outbound("a", "plain", false)], true);
        assert!(plain[0].ends_with(" 5 plain"), "{plain:?}");
    }

    #[test]
    fn own_notifications_are_skipped_and_strangers_are_malformed() {
        let mut reassembler = Reassembler::new(7);
        let own = encode(7, 0, &[outbound("a", "x", false)], false);
        assert_eq!(reassembler.feed(&own[0]), Fed::default());
        for bad in [
            "",
            "hello",
            "zz 0 0 1 t- a 1 x",
            "8 0 1 1 t- a 1 x",  // part 1 of 1
            "8 0 0 1 q- a 1 x",  // unknown flags
            "8 0 0 1 t- a 5 x",  // shorter than its length
            "8 0 0 1 t- a 1 xy", // longer, and no record after it
            "8 0 0 1 t- a 1 é",  // a length that cuts a character
        ] {
            assert!(reassembler.feed(bad).malformed, "{bad:?}");
        }
    }

    #[test]
    fn gaps_and_cut_off_messages_count_as_lost() {
        let mut reassembler = Reassembler::new(1);
        let small = |seq| encode(9, seq, &[outbound("a", format!("m{seq}"), false)], false);
        let large = |seq| encode(9, seq, &[outbound("a", "x".repeat(20_000), false)], false);
        // Joining late (first seen: 5) loses nothing; then 6 and 7 never come.
        let (got, lost) = feed_all(&mut reassembler, &[small(5), small(8)].concat());
        assert_eq!((got.len(), lost), (2, 2));
        // A repeat is ignored.
        let (got, lost) = feed_all(&mut reassembler, &small(8));
        assert_eq!((got.len(), lost), (0, 0));
        // Message 9 breaks off after its first part; 10 arrives whole.
        let cut_off = large(9);
        assert!(cut_off.len() >= 3);
        let (got, lost) = feed_all(&mut reassembler, &[&cut_off[..1], &small(10)[..]].concat());
        assert_eq!((got.len(), lost), (1, 1));
        // Message 11's start is missed: its later parts are skipped and it counts as lost.
        let (got, lost) = feed_all(
            &mut reassembler,
            &[&large(11)[1..], &small(12)[..]].concat(),
        );
        assert_eq!((got.len(), lost), (1, 1));
        // A shared notification lost whole: every message in it counts.
        let shared = encode(
            9,
            13,
            &[outbound("a", "p", false), outbound("a", "q", false)],
            false,
        );
        assert_eq!(shared.len(), 1);
        let (got, lost) = feed_all(&mut reassembler, &small(15));
        assert_eq!((got.len(), lost), (1, 2));
    }
}
