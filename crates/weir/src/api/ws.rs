//! The WebSocket transport of the hub: `GET /v1/ws`, JSON text frames.
//!
//! weir-http does the RFC 6455 handshake and hands over the socket; tungstenite does the
//! framing (masking, fragmentation, ping/pong, close); weir-chat reads the frames as
//! commands ([`weir_chat::json`]) and renders replies and events. Server frames carry a
//! `type`: `subscribed`, `unsubscribed`, `published`, `message`, `gap`, `lagged`,
//! `disconnected`, `ok`, `chat`, `error`. See docs/protocol.md.

use std::sync::Arc;

use bytes::Bytes;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::WebSocketStream;
use weir_auth::{denial, unauthenticated, Access, Scope};
use weir_chat::json::parse_frame;
use weir_chat::render::{error_json, reply_json, Encoding};
use weir_chat::{until_expired, ChatContext, Session, WRITE_BATCH};
use weir_http::websocket::{upgrade, Upgraded};
use weir_http::{Method, Request, Router};

/// Largest message and frame a client may send: 64 KiB, the same order as the line
/// protocol's lines; larger closes the connection with status 1009 (message too big).
const MAX_MESSAGE: usize = 64 * 1024;
/// A connection silent both ways for this long is closed.
const IDLE: Duration = Duration::from_secs(15 * 60);
/// Frames must reach the client within this, or the connection is closed: a client that
/// stops reading would otherwise hold its queued frames (and its task) for ever. The line
/// protocol's rule.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Adds `GET /v1/ws`.
///
/// With tokens configured, the upgrade itself needs a valid one (header or `?token=`):
/// without it the answer is 401 and no socket is opened.
pub(crate) fn add_ws_route(router: Router, chat: Arc<ChatContext>) -> Router {
    router.route("/v1/ws", Method::GET, move |req: Request| {
        let chat = chat.clone();
        async move {
            let access = match chat.tokens().request_check(&req) {
                Ok(access) if access.is_authenticated() => access,
                Ok(access) => return denial(&access, Scope::Subscribe),
                Err(why) => return unauthenticated(&why),
            };
            let label = req
                .peer_addr()
                .map_or_else(|| "ws".to_string(), |peer| format!("ws {peer}"));
            upgrade(&req, move |upgraded| session(upgraded, chat, label, access))
        }
    })
}

async fn session(upgraded: Upgraded, chat: Arc<ChatContext>, label: String, access: Access) {
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
    // One timer for the connection's life, moved only when it fires early (see weir-chat's line::connection).
    let idle = tokio::time::sleep(IDLE);
    tokio::pin!(idle);
    let mut last_activity;
    let mut stalled = false;
    // A signed token's session ends when the token does.
    let expiry = until_expired(session.expires_at());
    tokio::pin!(expiry);
    loop {
        last_activity = tokio::time::Instant::now();
        let mut out: Vec<Utf8Bytes> = Vec::new();
        tokio::select! {
            () = &mut expiry => {
                let _ = socket.feed(Frame::Text(r#"{"type":"disconnected","reason":"token expired"}"#.into())).await;
                let close = CloseFrame { code: CloseCode::Policy, reason: "token expired".into() };
                let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(Frame::Close(Some(close)))).await;
                break;
            }
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
                // Boxed, as in the line protocol: a command's future stays out of the idle task.
                Some(Ok(Frame::Text(text))) => out.extend(Box::pin(answer(&mut session, text.as_str())).await.map(Utf8Bytes::from)),
                Some(Ok(Frame::Binary(_))) => out.push(error_json("binary frames are not supported; send JSON text frames").into()),
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
        let write = async {
            for text in out {
                socket.feed(Frame::Text(text)).await?;
            }
            socket.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::info!(timeout = ?WRITE_TIMEOUT, "WebSocket client stopped reading; closing");
                stalled = true;
                break;
            }
        }
    }
    Box::pin(session.close()).await;
    // No close handshake with a client that does not read: it would wait too. Else this
    // flushes the close reply tungstenite queued, then closes (the sink close, not the
    // inherent one that would send a second close frame).
    if !stalled {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, SinkExt::close(&mut socket)).await;
    }
}

/// An encoded event as frame text. Events are rendered from strings, so
/// the check cannot fail; it is the price of `forbid(unsafe_code)`.
fn text_of(event: Bytes) -> Utf8Bytes {
    Utf8Bytes::try_from(event).unwrap_or_else(|_| Utf8Bytes::from_static("{\"type\":\"error\"}"))
}

/// Runs one frame's command; the frame to answer with, if any.
async fn answer(session: &mut Session, text: &str) -> Option<String> {
    match parse_frame(text) {
        Ok(command) => reply_json(&session.handle(command).await),
        Err(message) => Some(error_json(&message)),
    }
}
