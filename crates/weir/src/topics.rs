//! The HTTP transport of the hub: publish with `POST /v1/topics/{topic}`, subscribe with
//! Server-Sent Events on `GET /v1/topics/{pattern}/events`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use weir_http::sse::{sse_response, Event as SseEvent};
use weir_http::{Method, Request, Response, Router, StatusCode};
use weir_pubsub::{Event, Hub, PublishError, StartFrom, SubscribeError, Subscription};

use crate::auth::{Scope, Tokens};

/// Adds the topic routes to `router`.
/// Publishing needs the `publish` scope, subscribing `subscribe`.
pub(crate) fn add_topic_routes(
    router: Router,
    hub: Hub,
    tokens: Arc<Tokens>,
    heartbeat: Duration,
) -> Router {
    let (publish_hub, publish_tokens) = (hub.clone(), tokens.clone());
    let (list_hub, list_tokens) = (hub.clone(), tokens.clone());
    router
        .route("/v1/topics", Method::GET, move |req| {
            let response = match list_tokens.authorize(&req, Scope::Subscribe) {
                Ok(()) => list(&list_hub),
                Err(denied) => *denied,
            };
            async move { response }
        })
        .route("/v1/topics/{topic}", Method::POST, move |req| {
            // Checked before the body is read: a refused request changes nothing.
            let allowed = publish_tokens.authorize(&req, Scope::Publish);
            let hub = publish_hub.clone();
            async move {
                match allowed {
                    Ok(()) => publish(hub, req).await,
                    Err(denied) => *denied,
                }
            }
        })
        .route("/v1/topics/{topic}/events", Method::GET, move |req| {
            let response = match tokens.authorize(&req, Scope::Subscribe) {
                Ok(()) => subscribe(&hub, &req, heartbeat),
                Err(denied) => *denied,
            };
            async move { response }
        })
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    Response::json(status, body)
}

async fn publish(hub: Hub, mut req: Request) -> Response {
    let topic = req.param_decoded("topic").unwrap_or_default().into_owned();
    let limit = hub.config().max_payload as u64;
    let payload = match req.body_mut().collect(limit).await {
        Ok(payload) => payload,
        Err(weir_http::BodyError::TooLarge { limit }) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("payload exceeds the limit of {limit} bytes (setting pubsub.max_payload)"),
            )
        }
        Err(error) => return json_error(error.status(), &error.to_string()),
    };
    match hub.publish_wait(&topic, payload).await {
        Ok(message) => {
            let body = serde_json::json!({ "topic": topic, "offset": message.offset(), "epoch": message.epoch() });
            Response::json(StatusCode::ACCEPTED, body.to_string())
        }
        Err(error @ PublishError::PayloadTooLarge { .. }) => {
            json_error(StatusCode::PAYLOAD_TOO_LARGE, &error.to_string())
        }
        Err(error @ (PublishError::TooManyTopics(_) | PublishError::Store(_))) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())
        }
        Err(error) => json_error(StatusCode::BAD_REQUEST, &format!("topic: {error}")),
    }
}

/// `GET /v1/topics`: every topic with its offsets and subscribers, sorted by name.
fn list(hub: &Hub) -> Response {
    let topics: Vec<serde_json::Value> = hub
        .topics()
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "topic": t.name.as_str(),
                "epoch": t.epoch,
                "first_offset": t.first_offset,
                "next_offset": t.next_offset,
                "subscribers": t.subscribers,
            })
        })
        .collect();
    Response::json(
        StatusCode::OK,
        serde_json::json!({ "topics": topics }).to_string(),
    )
}

fn subscribe(hub: &Hub, req: &Request, heartbeat: Duration) -> Response {
    let pattern = req.param_decoded("topic").unwrap_or_default();
    let wildcard = pattern.contains(['*', '>']);
    // `Last-Event-ID` (sent by browsers on reconnect) or `?from=` name the last offset seen
    // or the first wanted; `?from=earliest` replays everything retained. A pattern stream's
    // ids (`topic:offset`) cannot resume it, so there a Last-Event-ID is ignored.
    let last_event_id = req.header("last-event-id").filter(|_| !wildcard);
    let start = match (last_event_id, req.query_param("from")) {
        (Some(last), _) => match last.trim().parse::<u64>() {
            Ok(offset) => StartFrom::Offset(offset + 1),
            Err(_) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "Last-Event-ID must be the offset of the last event seen",
                )
            }
        },
        (None, Some("earliest")) => StartFrom::Earliest,
        (None, Some(from)) => match from.parse::<u64>() {
            Ok(offset) => StartFrom::Offset(offset),
            Err(_) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "from must be an offset or 'earliest'",
                )
            }
        },
        (None, None) => StartFrom::Now,
    };
    let label = req
        .peer_addr()
        .map_or_else(|| "sse".to_string(), |peer| format!("sse {peer}"));
    match hub.subscribe(&pattern, start, label) {
        Ok(subscription) => sse_response(
            SseEvents {
                subscription,
                wildcard,
            },
            heartbeat,
        ),
        Err(
            error @ (SubscribeError::TooManyTopics(_) | SubscribeError::TooManySubscribers { .. }),
        ) => json_error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
        Err(error) => json_error(StatusCode::BAD_REQUEST, &format!("topic: {error}")),
    }
}

/// A subscription as Server-Sent Events.
///
/// A message's `id:` is its offset, so a browser's automatic reconnect resumes after it.
/// On a wildcard stream the id is `topic:offset` (such ids do not resume: offsets belong to
/// one topic); messages stay plain `message` events there too, so that a browser's
/// `onmessage` sees them without knowing the topics in advance. Gaps, lag and disconnection arrive as
/// `gap`, `lagged` and `disconnected` events with JSON data.
struct SseEvents {
    subscription: Subscription,
    wildcard: bool,
}

impl Stream for SseEvents {
    type Item = SseEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SseEvent>> {
        let this = self.get_mut();
        let wildcard = this.wildcard;
        Pin::new(&mut this.subscription)
            .poll_next(cx)
            .map(|event| event.map(|event| to_sse(event, wildcard)))
    }
}

fn to_sse(event: Event, wildcard: bool) -> SseEvent {
    match event {
        Event::Message(message) => {
            // SSE is text: a payload that is not UTF-8 arrives with U+FFFD in place of bad bytes.
            let data = String::from_utf8_lossy(message.payload()).into_owned();
            if wildcard {
                SseEvent::data(data).with_id(format!("{}:{}", message.topic(), message.offset()))
            } else {
                SseEvent::data(data).with_id(message.offset().to_string())
            }
        }
        Event::Gap {
            topic,
            epoch,
            from,
            to,
        } => SseEvent::data(
            serde_json::json!({ "topic": topic.as_str(), "epoch": epoch, "from": from, "to": to })
                .to_string(),
        )
        .with_event("gap"),
        Event::Lagged { topic, missed } => SseEvent::data(
            serde_json::json!({ "topic": topic.as_str(), "missed": missed }).to_string(),
        )
        .with_event("lagged"),
        Event::Disconnected { reason } => {
            SseEvent::data(serde_json::json!({ "reason": reason }).to_string())
                .with_event("disconnected")
        }
    }
}
