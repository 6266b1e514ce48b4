//! The response a handler returns.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures_core::Stream;

use crate::websocket::Upgraded;
use crate::{BoxError, StatusCode};

/// A streamed response body: each item is sent as it comes (as one chunk of the chunked
/// coding on HTTP/1.1) and flushed at once.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send + 'static>>;

/// What runs on a connection after a `101 Switching Protocols` response.
pub(crate) type OnUpgrade =
    Box<dyn FnOnce(Upgraded) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// The body of a [`Response`].
pub enum ResponseBody {
    /// No bytes (`content-length: 0`, or nothing at all for 1xx, 204 and 304).
    Empty,
    /// Bytes known in full.
    Full(Bytes),
    /// Bytes produced over time.
    Stream(BodyStream),
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseBody::Empty => f.write_str("Empty"),
            ResponseBody::Full(bytes) => f.debug_tuple("Full").field(&bytes.len()).finish(),
            ResponseBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// What a handler returns: a status, header fields, and a body held in full or streamed.
///
/// ```
/// use weir_http::{Response, StatusCode};
/// let response = Response::json(StatusCode::CREATED, r#"{"id":1}"#).with_header("location", "/v1/jobs/1");
/// assert_eq!(response.status(), StatusCode::CREATED);
/// assert_eq!(response.header("Location"), Some("/v1/jobs/1"));
/// ```
pub struct Response {
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<Cow<'static, str>>,
    pub(crate) headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    pub(crate) body: ResponseBody,
    pub(crate) on_upgrade: Option<OnUpgrade>,
}

impl Response {
    /// A response with no body.
    pub fn new(status: StatusCode) -> Response {
        Response {
            status,
            content_type: None,
            headers: Vec::new(),
            body: ResponseBody::Empty,
            on_upgrade: None,
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response {
        Response::new(status)
            .with_content_type("text/plain; charset=utf-8")
            .with_body(body)
    }

    /// An `application/json` response; `body` must already be JSON.
    pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
        Response::new(status)
            .with_content_type("application/json")
            .with_body(body)
    }

    /// A response whose body is streamed.
    pub fn stream(
        status: StatusCode,
        body: impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
    ) -> Response {
        let mut response = Response::new(status);
        response.body = ResponseBody::Stream(Box::pin(body));
        response
    }

    /// Replaces the body with bytes known in full.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Response {
        self.body = ResponseBody::Full(body.into());
        self
    }

    /// Sets the `content-type`.
    pub fn with_content_type(mut self, content_type: impl Into<Cow<'static, str>>) -> Response {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds a header field. Framing headers (`content-length`, `transfer-encoding`) are
    /// written by the server from the body. An owned name or value that is not valid HTTP
    /// (a non-token name, CR, LF or another control character in the value) turns the
    /// response into a 500 when it is sent, and the log names the field; `'static` string
    /// literals are the program's own text and are not checked on every response.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn with_upgrade(mut self, on_upgrade: OnUpgrade) -> Response {
        self.on_upgrade = Some(on_upgrade);
        self
    }

    /// The status code as set. The server sends a 500 instead when an owned header is not
    /// valid HTTP, or for a 101 without an upgrade request and callback.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The first header field called `name` (case-insensitive); `content-type` included.
    pub fn header(&self, name: &str) -> Option<&str> {
        if name.eq_ignore_ascii_case("content-type") {
            if let Some(content_type) = &self.content_type {
                return Some(content_type);
            }
        }
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    /// The body as set ([`ResponseBody::Empty`] until one is given). Whatever it holds, none
    /// is sent for 1xx, 204 and 304, nor in answer to `HEAD`.
    pub fn body(&self) -> &ResponseBody {
        &self.body
    }

    /// Takes the body out.
    pub fn into_body(self) -> ResponseBody {
        self.body
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .field("upgrade", &self.on_upgrade.is_some())
            .finish()
    }
}
