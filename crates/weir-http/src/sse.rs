//! Server-Sent Events: an event stream as a response body, with heartbeats.
//!
//! Each event is encoded as it arrives and sent as one chunk, flushed at once, so a browser
//! sees it without delay. When no event has gone out for the heartbeat interval, a comment
//! line (`: keep-alive`) is sent instead: proxies that close quiet connections see traffic,
//! and a dead client is noticed at the next write.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_core::Stream;
use tokio::time::{Instant, Sleep};

use crate::{BoxError, Response, StatusCode};

/// Default heartbeat interval. 15 s: below the 30-60 s idle cut-off of common proxies and
/// load balancers, rare enough to cost nothing.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// One Server-Sent Event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    id: Option<String>,
    event: Option<String>,
    data: String,
    retry: Option<Duration>,
}

impl Event {
    /// An event carrying `data` (which may span lines).
    pub fn data(data: impl Into<String>) -> Event {
        Event {
            data: data.into(),
            ..Event::default()
        }
    }

    /// Sets the `id:` field, which the client sends back as `Last-Event-ID` on reconnect.
    /// Line breaks are removed: they would end the field.
    pub fn with_id(mut self, id: impl Into<String>) -> Event {
        self.id = Some(single_line(id.into()));
        self
    }

    /// Sets the `event:` field (the event type). Line breaks are removed.
    pub fn with_event(mut self, event: impl Into<String>) -> Event {
        self.event = Some(single_line(event.into()));
        self
    }

    /// Sets the `retry:` field: how long the client waits before reconnecting.
    pub fn with_retry(mut self, retry: Duration) -> Event {
        self.retry = Some(retry);
        self
    }

    /// Encodes the event in the `text/event-stream` format.
    pub fn encode(&self, out: &mut BytesMut) {
        if let Some(event) = &self.event {
            put_field(out, "event", event);
        }
        if let Some(id) = &self.id {
            put_field(out, "id", id);
        }
        if let Some(retry) = self.retry {
            put_field(out, "retry", &retry.as_millis().to_string());
        }
        // Every line of the data becomes its own `data:` field; CRLF and CR count as breaks.
        for line in self.data.split('\n') {
            put_field(out, "data", line.strip_suffix('\r').unwrap_or(line));
        }
        out.put_u8(b'\n');
    }
}

impl Event {
    /// The event in the `text/event-stream` format, as one buffer that many streams can
    /// share (see [`Encoded`]).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.data.len() + 32);
        self.encode(&mut out);
        out.freeze()
    }
}

/// An event already in the `text/event-stream` format: a stream yields these when one
/// encoding serves many clients (a pub/sub message sent to every subscriber), and plain
/// [`Event`]s otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(Bytes);

impl From<Bytes> for Encoded {
    /// Takes bytes that are a complete event (made by [`Event::to_bytes`]) as they are.
    fn from(bytes: Bytes) -> Encoded {
        Encoded(bytes)
    }
}

impl From<Event> for Encoded {
    fn from(event: Event) -> Encoded {
        Encoded(event.to_bytes())
    }
}

fn single_line(text: String) -> String {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], "")
    } else {
        text
    }
}

fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_u8(b'\n');
}

pin_project_lite::pin_project! {
    /// The body of an SSE response: events, with heartbeat comments when it is quiet.
    ///
    /// Backpressure: the next event is polled only after the previous one was written, so a
    /// slow client slows this stream's consumer down; what the source does then (buffer,
    /// drop, lag notice) is the source's policy.
    pub struct SseBody<S> {
        #[pin]
        events: S,
        // Created on the first poll, so that a response can be built outside a runtime.
        #[pin]
        heartbeat: Option<Sleep>,
        interval: Duration,
    }
}

impl<S> SseBody<S> {
    /// Wraps a stream of events; a heartbeat goes out after `interval` without events.
    pub fn new(events: S, interval: Duration) -> Self {
        Self {
            events,
            heartbeat: None,
            interval,
        }
    }
}

impl<S> Stream for SseBody<S>
where
    S: Stream,
    S::Item: Into<Encoded>,
{
    type Item = Result<Bytes, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        let next_beat = Instant::now() + *this.interval;
        if this.heartbeat.is_none() {
            this.heartbeat
                .set(Some(tokio::time::sleep_until(next_beat)));
        }
        let mut heartbeat = this.heartbeat.as_pin_mut().expect("set above");
        match this.events.poll_next(cx) {
            Poll::Ready(Some(event)) => {
                heartbeat.as_mut().reset(next_beat);
                return Poll::Ready(Some(Ok(event.into().0)));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        match heartbeat.as_mut().poll(cx) {
            Poll::Ready(()) => {
                heartbeat.as_mut().reset(next_beat);
                Poll::Ready(Some(Ok(Bytes::from_static(b": keep-alive\n\n"))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future as _;

/// A `200 text/event-stream` response that streams `events` with heartbeats.
///
/// ```
/// use std::time::Duration;
/// use weir_http::sse::{sse_response, Event};
/// # fn events() -> impl futures_core::Stream<Item = Event> + Send + 'static {
/// #     struct Nothing;
/// #     impl futures_core::Stream for Nothing {
/// #         type Item = Event;
/// #         fn poll_next(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>)
/// #             -> std::task::Poll<Option<Event>> { std::task::Poll::Ready(None) }
/// #     }
/// #     Nothing
/// # }
/// let response = sse_response(events(), Duration::from_secs(15));
/// assert_eq!(response.header("content-type"), Some("text/event-stream"));
/// ```
pub fn sse_response<S>(events: S, heartbeat: Duration) -> Response
where
    S: Stream + Send + 'static,
    S::Item: Into<Encoded>,
{
    Response::stream(StatusCode::OK, SseBody::new(events, heartbeat))
        .with_content_type("text/event-stream")
        .with_header("cache-control", "no-cache")
        // Tells nginx not to buffer the stream.
        .with_header("x-accel-buffering", "no")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_fields_and_multiline_data() {
        let mut out = BytesMut::new();
        Event::data("line one\r\nline two")
            .with_id("7")
            .with_event("chat\nx")
            .with_retry(Duration::from_secs(3))
            .encode(&mut out);
        assert_eq!(
            &out[..],
            b"event: chatx\nid: 7\nretry: 3000\ndata: line one\ndata: line two\n\n"
        );
    }
}
