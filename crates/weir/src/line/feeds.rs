//! The subscriptions of one session (its rooms and topics), polled by the session's own
//! task: no task or channel per subscription.
//!
//! A publish wakes the session directly; the session takes what is ready from all its
//! subscriptions (round-robin, so a busy topic cannot starve a quiet one) and writes it in
//! one batch. When the client reads slowly, the session waits on its socket, stops taking
//! events, and its cursors fall behind in the hub, where the slow-subscriber policy applies;
//! the publisher never waits. (An earlier design forwarded each subscription through its own
//! task into a channel: two wake-ups and a queue per delivery, and a task, a channel and
//! their buffers per idle subscriber.)

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use weir_pubsub::{Event, Subscription};

use super::session::{line_bytes, Encoding};

/// What a feed is, as the client named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FeedKey {
    /// A chat room.
    Room(String),
    /// A topic or pattern.
    Topic(String),
}

struct Feed {
    key: FeedKey,
    subscription: Subscription,
}

/// A session's subscriptions.
#[derive(Default)]
pub(crate) struct Feeds {
    feeds: Vec<Feed>,
    turn: usize,
}

impl Feeds {
    pub(crate) fn contains(&self, key: &FeedKey) -> bool {
        self.feeds.iter().any(|feed| &feed.key == key)
    }

    pub(crate) fn len(&self) -> usize {
        self.feeds.len()
    }

    pub(crate) fn has_rooms(&self) -> bool {
        self.feeds
            .iter()
            .any(|feed| matches!(feed.key, FeedKey::Room(_)))
    }

    pub(crate) fn insert(&mut self, key: FeedKey, subscription: Subscription) {
        // Exactly one more: a Vec's first growth makes room for four feeds (a kilobyte),
        // and most connections follow one or two.
        self.feeds.reserve_exact(1);
        self.feeds.push(Feed { key, subscription });
    }

    /// Ends a feed; false if there was none.
    pub(crate) fn remove(&mut self, key: &FeedKey) -> bool {
        let before = self.feeds.len();
        self.feeds.retain(|feed| &feed.key != key);
        self.feeds.len() < before
    }

    /// Up to `max` ready events in `encoding`, or `Pending` (woken by the next publish)
    /// when none is ready. Cancel-safe: an event is taken from a subscription only when it
    /// is returned.
    pub(crate) fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
        encoding: Encoding,
        max: usize,
    ) -> Poll<Vec<Bytes>> {
        let mut batch = Vec::new();
        let mut ended = Vec::new();
        // Rounds over every feed, one event each, until nothing is ready or the batch is full.
        loop {
            let mut progressed = false;
            let count = self.feeds.len();
            for step in 0..count {
                if batch.len() >= max {
                    break;
                }
                let index = (self.turn + step) % count;
                if ended.contains(&index) {
                    continue;
                }
                let feed = &mut self.feeds[index];
                match Pin::new(&mut feed.subscription).poll_next(cx) {
                    Poll::Ready(Some(event)) => {
                        if matches!(event, Event::Disconnected { .. }) {
                            ended.push(index);
                        }
                        batch.push(encode(event, &feed.key, encoding));
                        progressed = true;
                    }
                    Poll::Ready(None) => ended.push(index),
                    Poll::Pending => {}
                }
            }
            self.turn = self.turn.wrapping_add(1);
            if !progressed || batch.len() >= max {
                break;
            }
        }
        // The hub ended these subscriptions (after saying so): forget them.
        if !ended.is_empty() {
            let mut index = 0;
            self.feeds.retain(|_| {
                let keep = !ended.contains(&index);
                index += 1;
                keep
            });
        }
        if batch.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(batch)
        }
    }
}

/// An event as the client receives it: a line with its line ending, or a JSON text.
fn encode(event: Event, format: &FeedKey, encoding: Encoding) -> Bytes {
    match (&event, encoding, format) {
        // The rendering of a message depends on the message alone (a room's name comes from
        // its topic), so it is made once and shared through the message's encoding cache.
        (Event::Message(message), Encoding::Line, FeedKey::Topic(_)) => message
            .encoded(SLOT_LINE_TOPIC, |_| {
                line_bytes(render(event.clone(), format))
            }),
        (Event::Message(message), Encoding::Line, FeedKey::Room(_)) => message
            .encoded(SLOT_LINE_CHAT, |_| {
                line_bytes(render(event.clone(), format))
            }),
        (Event::Message(message), Encoding::Json, FeedKey::Topic(_)) => message
            .encoded(SLOT_JSON_TOPIC, |_| {
                render_json(event.clone(), format).to_string().into()
            }),
        (Event::Message(message), Encoding::Json, FeedKey::Room(_)) => message
            .encoded(SLOT_JSON_CHAT, |_| {
                render_json(event.clone(), format).to_string().into()
            }),
        (_, Encoding::Line, _) => line_bytes(render(event, format)),
        (_, Encoding::Json, _) => render_json(event, format).to_string().into(),
    }
}

/// Slots of `Message::encoded` this module owns: a message is rendered once per format,
/// however many subscribers receive it.
const SLOT_LINE_TOPIC: usize = 0;
const SLOT_LINE_CHAT: usize = 1;
const SLOT_JSON_TOPIC: usize = 2;
const SLOT_JSON_CHAT: usize = 3;

/// A chat room's message as the session publishes it (`{"kind","nick","text"}`); a field
/// that is missing (someone published to the room's topic by hand) reads as empty.
struct ChatEvent {
    kind: String,
    nick: String,
    text: String,
}

impl ChatEvent {
    fn decode(payload: &str) -> ChatEvent {
        let value: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
        let field = |name: &str| value[name].as_str().unwrap_or("").to_string();
        ChatEvent {
            kind: field("kind"),
            nick: field("nick"),
            text: field("text"),
        }
    }
}

fn render(event: Event, format: &FeedKey) -> String {
    match event {
        Event::Message(message) => {
            let text = String::from_utf8_lossy(message.payload());
            match format {
                FeedKey::Room(room) => {
                    let said = ChatEvent::decode(&text);
                    match said.kind.as_str() {
                        "join" => format!("JOIN {room} {}", said.nick),
                        "part" => format!("PART {room} {}", said.nick),
                        _ => format!("MSG {room} {} {}", said.nick, one_line(&said.text)),
                    }
                }
                FeedKey::Topic(_) => format!(
                    "EVENT {} {} {}",
                    message.topic(),
                    message.offset(),
                    one_line(&text)
                ),
            }
        }
        Event::Gap {
            topic, from, to, ..
        } => format!("GAP {topic} {from} {to}"),
        Event::Lagged { topic, missed } => format!("LAGGED {topic} {missed}"),
        Event::Disconnected { reason } => {
            let what = match format {
                FeedKey::Room(room) => room,
                FeedKey::Topic(pattern) => pattern,
            };
            format!("-ERR subscription {what} ended: {reason}")
        }
    }
}

/// An event as a JSON object (WebSocket frames).
fn render_json(event: Event, format: &FeedKey) -> serde_json::Value {
    use serde_json::json;
    match event {
        Event::Message(message) => {
            let text = String::from_utf8_lossy(message.payload());
            match format {
                FeedKey::Room(room) => {
                    let said = ChatEvent::decode(&text);
                    json!({ "type": "chat", "room": room, "kind": said.kind, "nick": said.nick, "text": said.text })
                }
                FeedKey::Topic(_) => json!({
                    "type": "message",
                    "topic": message.topic().as_str(),
                    "offset": message.offset(),
                    "epoch": message.epoch(),
                    "payload": text,
                }),
            }
        }
        Event::Gap {
            topic,
            epoch,
            from,
            to,
        } => {
            json!({ "type": "gap", "topic": topic.as_str(), "epoch": epoch, "from": from, "to": to })
        }
        Event::Lagged { topic, missed } => {
            json!({ "type": "lagged", "topic": topic.as_str(), "missed": missed })
        }
        Event::Disconnected { reason } => json!({ "type": "disconnected", "reason": reason }),
    }
}

/// Payloads published over HTTP may hold line breaks; a line-protocol line cannot.
fn one_line(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}
