//! The HTTP transport of the hub: publish with `POST /v1/topics/{topic}`, subscribe with
//! Server-Sent Events on `GET /v1/topics/{pattern}/events`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_core::Stream;
use weir_auth::{unauthenticated, Scope, Tokens, TopicDenied};
use weir_chat::render::sse_event;
use weir_http::sse::{sse_response, Encoded as SseEncoded, Event as SseEvent};
use weir_http::{Method, Request, Response, Router, StatusCode};
use weir_pubsub::{Event, Hub, PublishError, StartFrom, SubscribeError, Subscription};

use super::error::{read_body, ApiError};

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
                // System topics' names say which queues, jobs and rooms exist: the
                // operator's (admin) view only.
                Ok(()) => list(
                    &list_hub,
                    list_tokens.request_access(&req).allows(Scope::Admin),
                ),
                Err(denied) => *denied,
            };
            async move { response }
        })
        .route("/v1/topics/{topic}", Method::POST, move |req| {
            // Checked before the body is read: a refused request changes nothing.
            let topic = req.param_decoded("topic").unwrap_or_default();
            let allowed = match publish_tokens.request_check(&req) {
                Ok(access) => access.may_publish(&topic).map_err(topic_denial),
                Err(why) => Err(Box::new(unauthenticated(&why))),
            };
            let hub = publish_hub.clone();
            async move {
                match allowed {
                    Ok(()) => publish(hub, req)
                        .await
                        .unwrap_or_else(ApiError::into_response),
                    Err(denied) => *denied,
                }
            }
        })
        .route("/v1/topics/{topic}/events", Method::GET, move |req| {
            let pattern = req.param_decoded("topic").unwrap_or_default();
            let allowed = match tokens.request_check(&req) {
                Ok(access) => match access.may_subscribe(&pattern) {
                    Ok(()) => Ok(access.expires_at()),
                    Err(denied) => Err(*topic_denial(denied)),
                },
                Err(why) => Err(unauthenticated(&why)),
            };
            let hub = hub.clone();
            async move {
                match allowed {
                    Ok(expires_at) => subscribe(&hub, &req, heartbeat, expires_at)
                        .await
                        .unwrap_or_else(ApiError::into_response),
                    Err(denied) => denied,
                }
            }
        })
}

/// [`topic_denial`](weir_auth::topic_denial), boxed as routes hand refusals on.
fn topic_denial(denied: TopicDenied) -> Box<Response> {
    Box::new(weir_auth::topic_denial(&denied))
}

async fn publish(hub: Hub, mut req: Request) -> Result<Response, ApiError> {
    let topic = req.param_decoded("topic").unwrap_or_default().into_owned();
    let limit = hub.config().max_payload as u64;
    let payload = read_body(&mut req, limit, |limit| {
        format!("payload exceeds the limit of {limit} bytes (setting pubsub.max_payload)")
    })
    .await?;
    match hub.publish_wait(&topic, payload).await {
        Ok(message) => {
            let body = serde_json::json!({ "topic": topic, "offset": message.offset(), "epoch": message.epoch() });
            Ok(Response::json(StatusCode::ACCEPTED, body.to_string()))
        }
        Err(error @ PublishError::PayloadTooLarge { .. }) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            error.to_string(),
        )),
        Err(error @ (PublishError::TooManyTopics(_) | PublishError::Store(_))) => Err(
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
        ),
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("topic: {error}"),
        )),
    }
}

/// `GET /v1/topics`: every topic with its offsets and subscribers, sorted by name; system
/// topics only for `with_system`.
fn list(hub: &Hub, with_system: bool) -> Response {
    let topics: Vec<serde_json::Value> = hub
        .topics()
        .into_iter()
        .filter(|t| with_system || !t.name.is_system())
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

async fn subscribe(
    hub: &Hub,
    req: &Request,
    heartbeat: Duration,
    expires_at: Option<SystemTime>,
) -> Result<Response, ApiError> {
    let pattern = req.param_decoded("topic").unwrap_or_default();
    let wildcard = pattern.contains(['*', '>']);
    // `Last-Event-ID` (sent by browsers on reconnect) names the position of the last event
    // seen, `?from=` the first wanted (a position, an offset, or `earliest` for everything
    // retained). A pattern stream's ids (`topic:EPOCH-OFFSET`) cannot resume it: it starts
    // from now, and says so rather than skip the messages in between in silence.
    let last_event_id = req.header("last-event-id");
    let mut notice = None;
    let start = match (last_event_id, req.query_param("from")) {
        (Some(_), _) if wildcard => {
            notice = Some(pattern_restart(&pattern));
            StartFrom::Now
        }
        (Some(last), _) => resume_after(last.trim())?,
        (None, Some(from)) => from
            .parse::<StartFrom>()
            .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, format!("from: {error}")))?,
        (None, None) => StartFrom::Now,
    };
    let label = req
        .peer_addr()
        .map_or_else(|| "sse".to_string(), |peer| format!("sse {peer}"));
    match hub.subscribe_ready(&pattern, start, label).await {
        Ok(subscription) => Ok(sse_response(
            SseEvents {
                subscription,
                notice,
                wildcard,
                expiry: expires_at.map(|at| {
                    let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                    Box::pin(tokio::time::sleep(left))
                }),
                ended: false,
            },
            heartbeat,
        )),
        Err(
            error @ (SubscribeError::TooManyTopics(_) | SubscribeError::TooManySubscribers { .. }),
        ) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            error.to_string(),
        )),
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("topic: {error}"),
        )),
    }
}

/// Where a stream that saw the event with id `last` goes on: the position after it (a bare
/// offset, from a Weir that gave no epochs, is taken in the topic's current epoch).
fn resume_after(last: &str) -> Result<StartFrom, ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Last-Event-ID must be the id of the last event seen (EPOCH-OFFSET)",
        )
    };
    // The largest offset has no next (adding one once wrapped around to 0 and replayed
    // everything).
    match last.parse::<StartFrom>().map_err(|_| refused())? {
        StartFrom::At(position) => position.next().map(StartFrom::At).ok_or_else(refused),
        StartFrom::Offset(offset) => offset
            .checked_add(1)
            .map(StartFrom::Offset)
            .ok_or_else(refused),
        StartFrom::Now | StartFrom::Earliest | StartFrom::Last(_) => Err(refused()),
    }
}

/// The `reset` event of a pattern stream that reconnected: it starts from now.
fn pattern_restart(pattern: &str) -> SseEncoded {
    let data = serde_json::json!({
        "pattern": pattern,
        "reason": "a pattern stream does not resume: it goes on from now, and messages published while it was away are not delivered",
    });
    SseEvent::data(data.to_string()).with_event("reset").into()
}

/// A subscription as Server-Sent Events, rendered by [`weir_chat::render::sse_event`]
/// (each message once for all its subscribers). With a signed token, the stream ends at
/// the token's expiry with a `disconnected` event saying so.
struct SseEvents {
    subscription: Subscription,
    /// Said before the first event: why a reconnect did not resume.
    notice: Option<SseEncoded>,
    wildcard: bool,
    expiry: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
}

impl Stream for SseEvents {
    type Item = SseEncoded;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SseEncoded>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(notice) = this.notice.take() {
            return Poll::Ready(Some(notice));
        }
        if let Some(expiry) = &mut this.expiry {
            if expiry.as_mut().poll(cx).is_ready() {
                this.ended = true;
                let reason = Event::Disconnected {
                    reason: "token expired".into(),
                };
                return Poll::Ready(Some(sse_event(reason, this.wildcard)));
            }
        }
        let wildcard = this.wildcard;
        Pin::new(&mut this.subscription)
            .poll_next(cx)
            .map(|event| event.map(|event| sse_event(event, wildcard)))
    }
}
