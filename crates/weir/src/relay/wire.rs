//! The relay's notifications: how a message travels between nodes as PostgreSQL
//! notification payloads, and how the receiver puts it back together.
//!
//! A payload is text shorter than 8,000 bytes: `{node} {seq} {part} {parts} {flags} {topic}
//! {data}`, where
//! - `node` is the sender's id in hex, so that a node skips its own notifications;
//! - `seq` numbers the sender's messages from 0: a gap tells the receiver that messages were
//!   lost while its listening connection was down (notifications are not kept for a
//!   session that is not listening);
//! - a message too large for one notification is cut into `parts`, all sent in one
//!   transaction, and PostgreSQL delivers one transaction's notifications together and in
//!   order;
//! - `flags` is `t` (the data is the payload's text) or `b` (base64: a payload that is not
//!   UTF-8 or holds a NUL, which PostgreSQL's text cannot carry), then `e` (publish only
//!   where the topic exists) or `-`;
//! - `data` is the rest of the line, spaces included.

use std::borrow::Cow;
use std::collections::HashMap;

use base64::prelude::{Engine, BASE64_STANDARD};
use bytes::Bytes;
use weir_pubsub::{TopicName, MAX_TOPIC_LEN};

/// PostgreSQL's limit: a notification payload must be shorter than 8,000 bytes.
const MAX_NOTIFICATION: usize = 7_999;
/// The longest header: node (16 hex digits), seq (20 digits), part and parts (7 digits
/// each), flags (2), the longest topic, and six spaces.
const MAX_HEADER: usize = 16 + 20 + 7 + 7 + 2 + MAX_TOPIC_LEN + 6;
/// Data per notification.
const DATA_PER_PART: usize = MAX_NOTIFICATION - MAX_HEADER;
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

/// A message from another node, put back together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inbound {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) only_if_exists: bool,
}

/// The notifications that carry `message`, message number `seq` of node `node`. With
/// `ascii_only` (a database whose encoding is not UTF-8, which could not take every
/// character), any text that is not ASCII goes as base64.
pub(crate) fn encode(node: u64, seq: u64, message: &Outbound, ascii_only: bool) -> Vec<String> {
    let (kind, data) = match std::str::from_utf8(&message.payload) {
        Ok(text) if !text.contains('\0') && (!ascii_only || text.is_ascii()) => {
            ('t', Cow::Borrowed(text))
        }
        _ => ('b', Cow::Owned(BASE64_STANDARD.encode(&message.payload))),
    };
    let exists = if message.only_if_exists { 'e' } else { '-' };
    let chunks = chunks(&data, DATA_PER_PART);
    let parts = chunks.len();
    chunks
        .iter()
        .enumerate()
        .map(|(part, chunk)| {
            format!(
                "{node:x} {seq} {part} {parts} {kind}{exists} {} {chunk}",
                message.topic
            )
        })
        .collect()
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

/// One notification, parsed.
#[derive(Debug)]
struct Fragment<'a> {
    node: u64,
    seq: u64,
    part: usize,
    parts: usize,
    base64: bool,
    only_if_exists: bool,
    topic: &'a str,
    data: &'a str,
}

fn parse(payload: &str) -> Option<Fragment<'_>> {
    let mut fields = payload.splitn(7, ' ');
    let node = u64::from_str_radix(fields.next()?, 16).ok()?;
    let seq = fields.next()?.parse().ok()?;
    let part = fields.next()?.parse().ok()?;
    let parts = fields.next()?.parse().ok()?;
    let (base64, only_if_exists) = match fields.next()?.as_bytes() {
        [kind @ (b't' | b'b'), exists @ (b'e' | b'-')] => (*kind == b'b', *exists == b'e'),
        _ => return None,
    };
    let topic = fields.next()?;
    let data = fields.next()?;
    (part < parts && parts <= MAX_PARTS).then_some(Fragment {
        node,
        seq,
        part,
        parts,
        base64,
        only_if_exists,
        topic,
        data,
    })
}

/// What feeding one notification gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Fed {
    /// A whole message, when this notification completed one.
    pub(crate) message: Option<Inbound>,
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
        let Some(fragment) = parse(payload) else {
            return Fed {
                malformed: true,
                ..Fed::default()
            };
        };
        if fragment.node == self.own {
            return Fed::default();
        }
        if self.senders.len() >= MAX_SENDERS && !self.senders.contains_key(&fragment.node) {
            self.senders.retain(|_, sender| sender.partial.is_some());
            if self.senders.len() >= MAX_SENDERS {
                // Every one mid-message: a bound on memory matters more than those.
                self.senders.clear();
            }
        }
        let sender = self.senders.entry(fragment.node).or_default();
        let mut fed = Fed::default();
        // `next` is the first message number neither delivered nor counted lost; while a
        // message is in progress, that message's.
        let joined_late = sender.next.is_none();
        if let Some(next) = sender.next {
            if fragment.seq < next {
                return fed; // the rest of a message already given up
            }
            // Messages never seen, and one in progress that this one does not continue.
            fed.lost = fragment.seq - next;
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
                return fed;
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
            return fed;
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
                    return fed;
                }
            },
        };
        fed.message = Some(Inbound {
            topic: fragment.topic.to_owned(),
            payload,
            only_if_exists: fragment.only_if_exists,
        });
        fed
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

    /// Feeds every notification; returns the messages and the total lost.
    fn feed_all(reassembler: &mut Reassembler, notifications: &[String]) -> (Vec<Inbound>, u64) {
        let mut messages = Vec::new();
        let mut lost = 0;
        for notification in notifications {
            let fed = reassembler.feed(notification);
            assert!(!fed.malformed, "{notification}");
            messages.extend(fed.message);
            lost += fed.lost;
        }
        (messages, lost)
    }

    #[test]
    fn text_binary_empty_and_large_messages_come_back_whole() {
        let long_text: String = "héllo wörld ✓ ".repeat(3_000); // multibyte at every cut
        let binary: Vec<u8> = (0..=255u8).cycle().take(50_000).collect();
        let messages = [
            outbound("chat:lobby", "hi there, two words", false),
            outbound("jobs.42", "{\"state\":\"running\"}", true),
            outbound("t", "", false),
            outbound("orders.eu", long_text.clone(), false),
            outbound("bin", binary.clone(), false),
            outbound("nul", &b"a\0b"[..], false),
        ];
        let mut notifications = Vec::new();
        for (seq, message) in messages.iter().enumerate() {
            let encoded = encode(7, seq as u64, message, false);
            for notification in &encoded {
                assert!(
                    notification.len() <= MAX_NOTIFICATION,
                    "{}",
                    notification.len()
                );
            }
            notifications.extend(encoded);
        }
        assert!(
            notifications.len() > messages.len() + 10,
            "the large ones are cut"
        );
        let mut reassembler = Reassembler::new(1);
        let (received, lost) = feed_all(&mut reassembler, &notifications);
        assert_eq!(lost, 0);
        assert_eq!(received, messages.iter().map(inbound).collect::<Vec<_>>());
    }

    #[test]
    fn a_database_that_is_not_utf8_gets_ascii_only() {
        let message = outbound("a", "größer", false);
        let notifications = encode(7, 0, &message, true);
        assert!(
            notifications.iter().all(|n| n.is_ascii()),
            "{notifications:?}"
        );
        let (received, _) = feed_all(&mut Reassembler::new(1), &notifications);
        assert_eq!(received, [inbound(&message)]);
        assert!(encode(7, 0, &outbound("a", "plain", false), true)[0].ends_with(" plain"));
    }

    #[test]
    fn own_notifications_are_skipped_and_strangers_are_malformed() {
        let mut reassembler = Reassembler::new(7);
        let own = encode(7, 0, &outbound("a", "x", false), false);
        assert_eq!(reassembler.feed(&own[0]), Fed::default());
        for bad in [
            "",
            "hello",
            "zz 0 0 1 t- a x",
            "7 0 1 1 t- a x",
            "8 0 0 1 q- a x",
        ] {
            assert!(reassembler.feed(bad).malformed, "{bad:?}");
        }
    }

    #[test]
    fn gaps_and_cut_off_messages_count_as_lost() {
        let mut reassembler = Reassembler::new(1);
        let small = |seq| encode(9, seq, &outbound("a", format!("m{seq}"), false), false);
        let large = |seq| encode(9, seq, &outbound("a", "x".repeat(20_000), false), false);
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
        assert_eq!(got.len(), 1);
        assert_eq!(lost, 1);
    }
}
