//! The request body as the handler sees it: read piece by piece from the socket.

use std::fmt;

use bytes::{Bytes, BytesMut};
use tokio::sync::OwnedMutexGuard;

use crate::chunked::ChunkedError;
use crate::io::{ConnIo, Remaining};
use crate::StatusCode;

/// Why reading a request body failed. The connection answers with [`BodyError::status`]
/// (whatever the handler returned) and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body passed the configured (or the caller's) size limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit that was passed, in bytes: the server's `max_body_bytes`, or the
        /// smaller one given to [`Body::collect`].
        limit: u64,
    },
    /// The chunked coding was malformed.
    #[error("malformed chunked body: {0}")]
    Malformed(#[from] ChunkedError),
    /// No body bytes arrived within the body read timeout.
    #[error("timed out waiting for the request body")]
    Timeout,
    /// The client closed the connection before the end of the body.
    #[error("the connection closed before the end of the request body")]
    Incomplete,
    /// Reading the socket failed. Only the error's kind is kept, so that the error stays
    /// `Clone` and comparable.
    #[error("reading the request body failed: {0}")]
    Io(std::io::ErrorKind),
}

impl BodyError {
    /// The status code this failure is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
            BodyError::Malformed(_) | BodyError::Incomplete | BodyError::Io(_) => {
                StatusCode::BAD_REQUEST
            }
        }
    }
}

/// The body of a [`Request`](crate::Request): read from the connection's socket, or held in
/// memory for a request built in a test.
///
/// Bytes arrive as the handler asks for them: a handler can stream a body of any size in
/// constant memory with [`Body::chunk`], or take it whole with [`Body::collect`] under a limit
/// of its own. `Expect: 100-continue` is answered on the first read, so a handler that
/// rejects a request without reading its body saves the client from sending it.
///
/// Cancel safety: [`Body::chunk`] may be dropped at an `.await`; bytes already read stay
/// buffered for the next call.
pub struct Body {
    inner: Inner,
}

enum Inner {
    Empty,
    Full(Option<Bytes>),
    Socket(OwnedMutexGuard<ConnIo>),
}

impl Body {
    /// A body with no bytes.
    pub fn empty() -> Body {
        Body {
            inner: Inner::Empty,
        }
    }

    /// A body held in memory, as for a request built in a test.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Body {
        let bytes = bytes.into();
        Body {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    pub(crate) fn from_socket(io: OwnedMutexGuard<ConnIo>) -> Body {
        Body {
            inner: Inner::Socket(io),
        }
    }

    /// The next piece of the body, or `Ok(None)` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        match &mut self.inner {
            Inner::Empty => Ok(None),
            Inner::Full(bytes) => Ok(bytes.take()),
            Inner::Socket(io) => io.read_body_chunk().await,
        }
    }

    /// Reads the whole body into memory, failing with [`BodyError::TooLarge`] past `limit`
    /// bytes (the server's own `max_body_bytes` applies as well).
    pub async fn collect(&mut self, limit: u64) -> Result<Bytes, BodyError> {
        let mut first: Option<Bytes> = None;
        let mut joined = BytesMut::new();
        let mut total = 0u64;
        while let Some(piece) = self.chunk().await? {
            total += piece.len() as u64;
            if total > limit {
                return Err(BodyError::TooLarge { limit });
            }
            // A body that arrives in one piece is returned without a copy.
            match first.take() {
                None if joined.is_empty() => first = Some(piece),
                None => joined.extend_from_slice(&piece),
                Some(earlier) => {
                    joined.extend_from_slice(&earlier);
                    joined.extend_from_slice(&piece);
                }
            }
        }
        Ok(first.unwrap_or_else(|| joined.freeze()))
    }

    /// The declared length, when the body has one (Content-Length framing, before reading).
    pub fn declared_length(&self) -> Option<u64> {
        match &self.inner {
            Inner::Empty => Some(0),
            Inner::Full(bytes) => Some(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Socket(io) => match &io.body.remaining {
                Remaining::Length(n) if io.body.received == 0 => Some(*n),
                _ => None,
            },
        }
    }

    /// The trailer fields of a chunked body, once it has been read to the end.
    pub fn trailers(&self) -> Vec<(String, String)> {
        // The decoder is dropped when the body ends; its trailers are kept by the
        // connection only while the body is lent out, so copy them here.
        match &self.inner {
            Inner::Socket(io) => io.finished_trailers.clone(),
            _ => Vec::new(),
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.inner {
            Inner::Empty => "empty",
            Inner::Full(_) => "in memory",
            Inner::Socket(_) => "streamed from the connection",
        };
        f.debug_struct("Body").field("kind", &kind).finish()
    }
}
