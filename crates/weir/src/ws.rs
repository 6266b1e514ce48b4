//! The WebSocket transport of the hub: `GET /v1/ws`, JSON text frames.
//!
//! weir-http does the RFC 6455 handshake and hands over the socket; tungstenite does the
//! framing (masking, fragmentation, ping/pong, close). Client frames:
//! `{"op":"subscribe","topic":"t","from":5|"earliest"}`, `{"op":"unsubscribe","topic":"t"}`,
//! `{"op":"publish","topic":"t","payload":"text"}`. Server frames carry a `type`:
//! `subscribed`, `unsubscribed`, `published`, `message`, `gap`, `lagged`, `disconnected`,
//! `error`. See docs/protocol.md.

use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::WebSocketStream;
use weir_http::websocket::{upgrade, Upgraded};
use weir_http::{Method, Request, Router};
use weir_pubsub::{Event, Hub, StartFrom, Subscription};

/// Largest message and frame a client may send: 64 KiB, the same order as the line
/// protocol's lines; larger closes the connection with status 1009 (message too big).
const MAX_MESSAGE: usize = 64 * 1024;
/// Server frames queued for a client before its subscriptions wait (and fall behind).
const OUTBOUND_QUEUE: usize = 256;
/// A connection silent both ways for this long is closed.
const IDLE: Duration = Duration::from_secs(15 * 60);

/// Adds `GET /v1/ws`.
pub(crate) fn add_ws_route(router: Router, hub: Hub) -> Router {
    router.route("/v1/ws", Method::GET, move |req: Request| {
        let hub = hub.clone();
        async move {
            let label = req
                .peer_addr()
                .map_or_else(|| "ws".to_string(), |peer| format!("ws {peer}"));
            upgrade(&req, move |upgraded| session(upgraded, hub, label))
        }
    })
}

async fn session(upgraded: Upgraded, hub: Hub, label: String) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let socket = WebSocketStream::from_raw_socket(upgraded, Role::Server, Some(config)).await;
    let (mut sink, mut frames) = socket.split();
    // Subscription events for this client; bounded so that a slow client makes its
    // forwarders wait and fall behind in the hub, never the publisher.
    let (outbound, mut events) = mpsc::channel::<String>(OUTBOUND_QUEUE);
    let mut subscriptions: HashMap<String, AbortHandle> = HashMap::new();
    let mut forwarders = JoinSet::new();
    loop {
        while forwarders.try_join_next().is_some() {}
        let reply = tokio::select! {
            Some(event) = events.recv() => Some(event),
            frame = tokio::time::timeout(IDLE, frames.next()) => match frame {
                Ok(Some(Ok(Frame::Text(text)))) => {
                    Some(handle(&hub, &label, text.as_str(), &mut subscriptions, &mut forwarders, &outbound))
                }
                Ok(Some(Ok(Frame::Binary(_)))) => Some(error("binary frames are not supported; send JSON text frames")),
                // tungstenite queues the pong for a ping; the next send or flush writes it.
                Ok(Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_)))) => None,
                Ok(Some(Err(WsError::Capacity(limit)))) => {
                    // Say why before closing: 1009 is "message too big".
                    let close = CloseFrame { code: CloseCode::Size, reason: format!("{limit}").into() };
                    let _ = sink.send(Frame::Close(Some(close))).await;
                    break;
                }
                Ok(Some(Ok(Frame::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => break,
            },
        };
        let sent = match reply {
            Some(text) => sink.send(Frame::text(text)).await,
            None => sink.flush().await,
        };
        if sent.is_err() {
            break;
        }
    }
    forwarders.abort_all();
    let _ = sink.close().await;
}

fn error(message: &str) -> String {
    json!({ "type": "error", "message": message }).to_string()
}

fn handle(
    hub: &Hub,
    label: &str,
    text: &str,
    subscriptions: &mut HashMap<String, AbortHandle>,
    forwarders: &mut JoinSet<()>,
    outbound: &mpsc::Sender<String>,
) -> String {
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
            if subscriptions.contains_key(topic) {
                return error(&format!("already subscribed to {topic}"));
            }
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
            match hub.subscribe(topic, start, label) {
                Ok(subscription) => {
                    let handle = forwarders.spawn(forward(subscription, outbound.clone()));
                    subscriptions.insert(topic.to_string(), handle);
                    json!({ "type": "subscribed", "topic": topic }).to_string()
                }
                Err(e) => error(&format!("topic: {e}")),
            }
        }
        Some("unsubscribe") => match subscriptions.remove(topic) {
            Some(handle) => {
                handle.abort();
                json!({ "type": "unsubscribed", "topic": topic }).to_string()
            }
            None => error(&format!("not subscribed to {topic}")),
        },
        Some("publish") => {
            let Some(payload) = field("payload") else {
                return error("field \"payload\" (a string) is required to publish");
            };
            match hub.publish(topic, payload.as_bytes().to_vec().into()) {
                Ok(m) => json!({ "type": "published", "topic": topic, "offset": m.offset(), "epoch": m.epoch() }).to_string(),
                Err(e) => error(&format!("topic: {e}")),
            }
        }
        Some(other) => error(&format!(
            "unknown op {other:?}; use subscribe, unsubscribe or publish"
        )),
        None => error("field \"op\" (a string) is required"),
    }
}

async fn forward(mut subscription: Subscription, outbound: mpsc::Sender<String>) {
    while let Some(event) = poll_fn(|cx| Pin::new(&mut subscription).poll_next(cx)).await {
        let ended = matches!(event, Event::Disconnected { .. });
        let frame = match event {
            Event::Message(m) => json!({
                "type": "message",
                "topic": m.topic().as_str(),
                "offset": m.offset(),
                "epoch": m.epoch(),
                "payload": String::from_utf8_lossy(m.payload()),
            }),
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
        };
        if outbound.send(frame.to_string()).await.is_err() || ended {
            break;
        }
    }
}
