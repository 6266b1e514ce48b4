//! The WebSocket transport of the hub: `GET /v1/ws`, JSON text frames.
//!
//! weir-http does the RFC 6455 handshake and hands over the socket; tungstenite does the
//! framing (masking, fragmentation, ping/pong, close). Client frames:
//! `{"op":"subscribe","topic":"t","from":5|"earliest"}`, `{"op":"unsubscribe","topic":"t"}`,
//! `{"op":"publish","topic":"t","payload":"text"}`. Server frames carry a `type`:
//! `subscribed`, `unsubscribed`, `published`, `message`, `gap`, `lagged`, `disconnected`,
//! `error`. See docs/protocol.md.

use std::sync::Arc;

use bytes::Bytes;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::WebSocketStream;
use weir_http::websocket::{upgrade, Upgraded};
use weir_http::{Method, Request, Router};
use weir_pubsub::StartFrom;

use crate::auth::{denial, Access, Scope};
use crate::line::session::{Encoding, Reply, Session, WRITE_BATCH};
use crate::line::{Command, LineContext};

/// Largest message and frame a client may send: 64 KiB, the same order as the line
/// protocol's lines; larger closes the connection with status 1009 (message too big).
const MAX_MESSAGE: usize = 64 * 1024;
/// A connection silent both ways for this long is closed.
const IDLE: Duration = Duration::from_secs(15 * 60);

/// Adds `GET /v1/ws`.
///
/// With tokens configured, the upgrade itself needs a valid one (header or `?token=`):
/// without it the answer is 401 and no socket is opened.
pub(crate) fn add_ws_route(router: Router, chat: Arc<LineContext>) -> Router {
    router.route("/v1/ws", Method::GET, move |req: Request| {
        let chat = chat.clone();
        async move {
            let access = chat.config.tokens.request_access(&req);
            if !access.is_authenticated() {
                return denial(access, Scope::Subscribe);
            }
            let label = req
                .peer_addr()
                .map_or_else(|| "ws".to_string(), |peer| format!("ws {peer}"));
            upgrade(&req, move |upgraded| session(upgraded, chat, label, access))
        }
    })
}

async fn session(upgraded: Upgraded, chat: Arc<LineContext>, label: String, access: Access) {
    // tungstenite reserves its read buffer up front (128 KiB by default): that was 150 KiB
    // per idle connection. Clients send small JSON commands; 512 bytes hold one, and a
    // larger frame is read in more steps (the buffer grows as needed).
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(512);
    // Not split into halves: reads happen in `select!` and writes after it, never at once,
    // so one owner suffices and no lock is needed between them.
    let mut socket = WebSocketStream::from_raw_socket(upgraded, Role::Server, Some(config)).await;
    // Chat rooms and nicknames are shared with the line protocol: one server, one lobby.
    let mut session = Session::new(
        chat.connection_id(),
        label.into(),
        Encoding::Json,
        chat.clone(),
        access,
    );
    // One timer for the connection's life, moved only when it fires early (see line/session.rs).
    let idle = tokio::time::sleep(IDLE);
    tokio::pin!(idle);
    let mut last_activity;
    loop {
        last_activity = tokio::time::Instant::now();
        let mut out: Vec<Utf8Bytes> = Vec::new();
        tokio::select! {
            () = &mut idle => {
                let quiet_until = last_activity + IDLE;
                if tokio::time::Instant::now() < quiet_until {
                    idle.as_mut().reset(quiet_until);
                    continue;
                }
                break;
            }
            // While a write is pending nothing is taken from the subscriptions: a client
            // that reads slowly falls behind in the hub, and the publisher never waits.
            batch = session.next_events(WRITE_BATCH) => out.extend(batch.into_iter().map(text_of)),
            frame = socket.next() => match frame {
                Some(Ok(Frame::Text(text))) => match chat_command(text.as_str()) {
                    Some(Ok(command)) => out.extend(reply_json(Box::pin(session.handle_command(command)).await).map(Utf8Bytes::from)),
                    Some(Err(message)) => out.push(error(&message).into()),
                    // Boxed, as in the line protocol: a command's future stays out of the idle task.
                    None => out.push(Box::pin(handle(&mut session, text.as_str())).await.into()),
                },
                Some(Ok(Frame::Binary(_))) => out.push(error("binary frames are not supported; send JSON text frames").into()),
                // tungstenite queues the pong for a ping; the flush below writes it.
                Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_))) => {}
                Some(Err(WsError::Capacity(limit))) => {
                    // Say why before closing: 1009 is "message too big".
                    let close = CloseFrame { code: CloseCode::Size, reason: format!("{limit}").into() };
                    let _ = socket.send(Frame::Close(Some(close))).await;
                    break;
                }
                Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => break,
            },
        }
        // Queue every frame, then flush once: many frames per write under load.
        let mut sent = Ok(());
        for text in out {
            if sent.is_ok() {
                sent = socket.feed(Frame::Text(text)).await;
            }
        }
        if sent.and(socket.flush().await).is_err() {
            break;
        }
    }
    Box::pin(session.close()).await;
    // Flushes the close reply tungstenite queued, then closes (the sink close, not the
    // inherent one that would send a second close frame).
    let _ = SinkExt::close(&mut socket).await;
}

/// An encoded event as frame text. Events are rendered from strings, so
/// the check cannot fail; it is the price of `forbid(unsafe_code)`.
fn text_of(event: Bytes) -> Utf8Bytes {
    Utf8Bytes::try_from(event).unwrap_or_else(|_| Utf8Bytes::from_static("{\"type\":\"error\"}"))
}

/// A chat frame as a line-protocol command: `None` when the frame is not a chat op.
fn chat_command(text: &str) -> Option<Result<Command, String>> {
    let request: Value = serde_json::from_str(text).ok()?;
    let field = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let need =
        |name: &str| field(name).ok_or_else(|| format!("field \"{name}\" (a string) is required"));
    let command = match request.get("op").and_then(Value::as_str)? {
        "nick" => need("nick").and_then(|nick| validate(Command::Nick(nick), "NICK")),
        "join" => need("room").map(Command::Join),
        "part" => need("room").map(Command::Part),
        "say" => need("room").and_then(|room| need("text").map(|text| Command::Say { room, text })),
        "who" => need("room").map(Command::Who),
        _ => return None,
    };
    Some(command)
}

/// Applies the line protocol's nickname rules to a nickname that came in a JSON frame.
fn validate(command: Command, verb: &str) -> Result<Command, String> {
    let Command::Nick(nick) = &command else {
        return Ok(command);
    };
    crate::line::parse_command(&format!("{verb} {nick}")).map_err(|e| e.0)
}

/// A line-protocol reply as JSON frames: `+OK text` → `{"type":"ok","message":text}`,
/// `-ERR text` → `{"type":"error","message":text}`; nothing for a reply without lines (a
/// successful `say`, whose answer is the chat event itself).
fn reply_json(reply: Reply) -> Option<String> {
    let lines = match reply {
        Reply::Lines(lines) => lines,
        Reply::Quit => Vec::new(),
    };
    let frames: Vec<Value> = lines
        .iter()
        .map(|line| match line.split_once(' ') {
            Some(("+OK", rest)) => json!({ "type": "ok", "message": rest }),
            Some(("-ERR", rest)) => json!({ "type": "error", "message": rest }),
            _ => json!({ "type": "ok", "message": line }),
        })
        .collect();
    match frames.as_slice() {
        [] => None,
        [one] => Some(one.to_string()),
        _ => Some(Value::Array(frames).to_string()),
    }
}

fn error(message: &str) -> String {
    json!({ "type": "error", "message": message }).to_string()
}

/// A pub/sub frame: subscribe, unsubscribe or publish, through the client's session (which
/// checks scopes and the per-connection subscription limit).
async fn handle(session: &mut Session, text: &str) -> String {
    let Ok(request) = serde_json::from_str::<Value>(text) else {
        return error(
            "frames must be JSON objects such as {\"op\":\"subscribe\",\"topic\":\"news\"}",
        );
    };
    let field = |name: &str| request.get(name).and_then(Value::as_str);
    let Some(topic) = field("topic") else {
        return error("field \"topic\" (a string) is required");
    };
    match field("op") {
        Some("subscribe") => {
            let start = match request.get("from") {
                None | Some(Value::Null) => StartFrom::Now,
                Some(Value::String(s)) if s == "earliest" => StartFrom::Earliest,
                Some(Value::Number(n)) if n.as_u64().is_some() => {
                    StartFrom::Offset(n.as_u64().unwrap_or(0))
                }
                Some(_) => {
                    return error("field \"from\" must be an offset (a number) or \"earliest\"")
                }
            };
            match session.subscribe(topic, start) {
                Ok(()) => json!({ "type": "subscribed", "topic": topic }).to_string(),
                Err(message) => error(&message),
            }
        }
        Some("unsubscribe") => match session.unsubscribe(topic) {
            Ok(()) => json!({ "type": "unsubscribed", "topic": topic }).to_string(),
            Err(message) => error(&message),
        },
        Some("publish") => {
            let Some(payload) = field("payload") else {
                return error("field \"payload\" (a string) is required to publish");
            };
            match session.publish(topic, payload.as_bytes().to_vec().into()).await {
                Ok(m) => json!({ "type": "published", "topic": topic, "offset": m.offset(), "epoch": m.epoch() }).to_string(),
                Err(message) => error(&message),
            }
        }
        Some(other) => error(&format!(
            "unknown op {other:?}; use subscribe, unsubscribe, publish, nick, join, part, say or who"
        )),
        None => error("field \"op\" (a string) is required"),
    }
}
