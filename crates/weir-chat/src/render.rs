//! Every wire rendering of the hub's events and of a session's replies, in one place: the
//! line protocol's text lines, the WebSocket's JSON frames, and Server-Sent Events.
//!
//! A message's rendering depends on the message alone, so it is made once and shared by
//! every subscriber through the message's encoding cache ([`Message::encoded`]), one slot
//! per format.

use bytes::Bytes;
use serde_json::json;
use weir_http::sse::{Encoded as SseEncoded, Event as SseEvent};
use weir_pubsub::{Event, Message, Position};

use crate::feed_key::FeedKey;
use crate::{ChatError, Reply};

/// How a session's replies and events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Text lines (the line protocol).
    Line,
    /// JSON objects (WebSocket frames).
    Json,
}

/// A line with its line ending, as it is written.
pub fn line_bytes(line: impl Into<String>) -> Bytes {
    let mut line = line.into();
    line.push_str("\r\n");
    Bytes::from(line)
}

/// A command's outcome as the line protocol says it: `+OK …` or `-ERR …`; `None` when
/// there is nothing to say (a successful `SAY`, whose answer is the chat event itself).
pub fn reply_line(outcome: &Result<Reply, ChatError>) -> Option<String> {
    match outcome {
        Ok(Reply::Said) => None,
        Ok(reply) => Some(format!("+OK {reply}")),
        Err(error) => Some(format!("-ERR {error}")),
    }
}

/// A command's outcome as a WebSocket frame. Pub/sub replies have their own types
/// (`subscribed`, `unsubscribed`, `published`); the others are `{"type":"ok","message":…}`
/// with the line protocol's text, and refusals `{"type":"error","message":…}`. `None` for a
/// successful `say` and for `quit`.
pub fn reply_json(outcome: &Result<Reply, ChatError>) -> Option<String> {
    let frame = match outcome {
        Ok(Reply::Said | Reply::Quit) => return None,
        Ok(Reply::Subscribed(topic)) => json!({ "type": "subscribed", "topic": topic }),
        Ok(Reply::Unsubscribed(topic)) => json!({ "type": "unsubscribed", "topic": topic }),
        Ok(Reply::Published {
            topic,
            offset,
            epoch,
        }) => json!({ "type": "published", "topic": topic, "offset": offset, "epoch": epoch }),
        Ok(reply) => json!({ "type": "ok", "message": reply.to_string() }),
        Err(error) => return Some(error_json(&error.to_string())),
    };
    Some(frame.to_string())
}

/// An error frame of the WebSocket: `{"type":"error","message":…}`.
pub fn error_json(message: &str) -> String {
    json!({ "type": "error", "message": message }).to_string()
}

/// A hub event as a Server-Sent Event.
///
/// A message's `id:` is its position (`EPOCH-OFFSET`), so a browser's automatic reconnect
/// resumes after it, and is told with a `reset` event when the offsets started again
/// meanwhile (a restart, another node). On a wildcard stream (`pattern`) the id is
/// `topic:EPOCH-OFFSET` (such ids do not resume: positions belong to one topic); messages
/// stay plain `message` events there too, so that a browser's `onmessage` sees them without
/// knowing the topics in advance. Gaps, resets, lag and disconnection arrive as `gap`,
/// `reset`, `lagged` and `disconnected` events with JSON data.
pub fn sse_event(event: Event, pattern: bool) -> SseEncoded {
    match event {
        // SSE is text: a payload that is not UTF-8 arrives with U+FFFD in place of bad bytes.
        Event::Message(message) if pattern => {
            SseEncoded::from(message.encoded(SLOT_SSE_PATTERN, |m| {
                sse_message(m)
                    .with_id(format!("{}:{}", m.topic(), m.position()))
                    .to_bytes()
            }))
        }
        Event::Message(message) => SseEncoded::from(message.encoded(SLOT_SSE_TOPIC, |m| {
            sse_message(m).with_id(m.position().to_string()).to_bytes()
        })),
        Event::Gap {
            topic,
            epoch,
            from,
            to,
        } => SseEvent::data(
            json!({ "topic": topic.as_str(), "epoch": epoch, "from": from, "to": to }).to_string(),
        )
        .with_event("gap")
        .into(),
        Event::Reset {
            topic,
            previous_epoch,
            epoch,
            from,
        } => {
            let mut data = reset_json(&topic, previous_epoch, epoch, from);
            data.as_object_mut().map(|fields| fields.remove("type"));
            SseEvent::data(data.to_string()).with_event("reset").into()
        }
        Event::Lagged { topic, missed } => {
            SseEvent::data(json!({ "topic": topic.as_str(), "missed": missed }).to_string())
                .with_event("lagged")
                .into()
        }
        Event::Disconnected { reason } => SseEvent::data(json!({ "reason": reason }).to_string())
            .with_event("disconnected")
            .into(),
    }
}

fn sse_message(message: &Message) -> SseEvent {
    SseEvent::data(String::from_utf8_lossy(message.payload()).into_owned())
}

/// An event as the client receives it: a line with its line ending, or a JSON text.
pub(crate) fn encode(event: Event, format: &FeedKey, encoding: Encoding) -> Bytes {
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
const SLOT_SSE_TOPIC: usize = 4;
const SLOT_SSE_PATTERN: usize = 5;

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
                    message.position(),
                    one_line(&text)
                ),
            }
        }
        Event::Gap {
            topic, from, to, ..
        } => format!("GAP {topic} {from} {to}"),
        Event::Reset {
            topic,
            previous_epoch,
            epoch,
            from,
        } => format!(
            "RESET {topic} {previous_epoch} {}",
            Position {
                epoch,
                offset: from
            }
        ),
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
        Event::Reset {
            topic,
            previous_epoch,
            epoch,
            from,
        } => reset_json(&topic, previous_epoch, epoch, from),
        Event::Lagged { topic, missed } => {
            json!({ "type": "lagged", "topic": topic.as_str(), "missed": missed })
        }
        Event::Disconnected { reason } => json!({ "type": "disconnected", "reason": reason }),
    }
}

/// A reset notice as JSON: the position the client gave was in `previous_epoch`; the
/// subscription goes on at offset `from` of `epoch`.
fn reset_json(
    topic: &weir_pubsub::TopicName,
    previous_epoch: u64,
    epoch: u64,
    from: u64,
) -> serde_json::Value {
    json!({
        "type": "reset",
        "topic": topic.as_str(),
        "previous_epoch": previous_epoch,
        "epoch": epoch,
        "from": from,
    })
}

/// Payloads published over HTTP may hold line breaks; a line-protocol line cannot.
fn one_line(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}
