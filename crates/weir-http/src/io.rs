//! The I/O state of one connection: the socket, its buffers and the body in progress.
//!
//! The connection loop owns this state between requests. While a handler runs, a request
//! with a body lends the state to that body (as a `tokio::sync::OwnedMutexGuard`), so the
//! handler reads from the socket directly, with no channel and no copy, and the connection
//! takes the state back when the body is dropped. The mutex is never contended in normal
//! operation; it exists so that a body a handler keeps past its response makes the
//! connection wait for it (up to the write timeout) instead of reading the socket twice.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::chunked::{Chunk, ChunkedDecoder};
use crate::{BodyError, BodyFraming, HttpMetrics, ServerConfig};

/// Bytes asked of the kernel per read: 16 KiB keeps syscalls few for bodies while a small
/// request costs no more than it needs.
const READ_CHUNK: usize = 16 * 1024;

/// The response to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Debug)]
pub(crate) struct ConnIo {
    pub(crate) stream: TcpStream,
    pub(crate) read_buf: BytesMut,
    pub(crate) write_buf: BytesMut,
    pub(crate) body: BodyProgress,
    /// Trailer fields of the last chunked body, kept until the next request begins.
    pub(crate) finished_trailers: Vec<(String, String)>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) metrics: Arc<HttpMetrics>,
}

/// Where the current request's body stands.
#[derive(Debug)]
pub(crate) struct BodyProgress {
    pub(crate) remaining: Remaining,
    /// `100 Continue` is owed and not yet sent: it goes out on the first body read.
    pub(crate) continue_pending: bool,
    /// The first error reading the body; it decides the response and closes the connection.
    pub(crate) fault: Option<BodyError>,
    pub(crate) received: u64,
}

#[derive(Debug)]
pub(crate) enum Remaining {
    Done,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
}

impl BodyProgress {
    fn idle() -> Self {
        Self {
            remaining: Remaining::Done,
            continue_pending: false,
            fault: None,
            received: 0,
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.remaining, Remaining::Done)
    }
}

impl ConnIo {
    pub(crate) fn new(
        stream: TcpStream,
        config: Arc<ServerConfig>,
        metrics: Arc<HttpMetrics>,
    ) -> Self {
        Self {
            stream,
            // Empty until used: the first read reserves READ_CHUNK anyway (a buffer made
            // here was thrown away by it), and the write buffer grows to what responses
            // need. A connection that upgrades or streams holds less for it.
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            body: BodyProgress::idle(),
            finished_trailers: Vec::new(),
            config,
            metrics,
        }
    }

    /// Prepares body reading for a new request.
    pub(crate) fn begin_body(&mut self, framing: BodyFraming, expect_continue: bool) {
        self.body = BodyProgress::idle();
        self.finished_trailers.clear();
        self.body.remaining = match framing {
            BodyFraming::None => Remaining::Done,
            BodyFraming::Length(n) => Remaining::Length(n),
            BodyFraming::Chunked => Remaining::Chunked(Box::default()),
        };
        self.body.continue_pending = expect_continue && !self.body.is_finished();
    }

    /// Reads more bytes from the socket into the read buffer. `Ok(0)` means end of stream.
    ///
    /// The buffers stay while a keep-alive connection waits for its next request: giving
    /// them back here cost two allocations per request on a busy connection (measured with
    /// bench/http), and an idle one is closed after `http.idle_timeout` anyway. Streamed
    /// responses, which can wait for hours, give them back (`release_idle_buffers`).
    pub(crate) async fn read_more(&mut self) -> io::Result<usize> {
        self.read_buf.reserve(READ_CHUNK);
        self.stream.read_buf(&mut self.read_buf).await
    }

    /// Frees empty buffers while the connection waits for something other than the socket
    /// (the next piece of a streamed response); they are allocated again when needed.
    pub(crate) fn release_idle_buffers(&mut self) {
        if self.read_buf.is_empty() && self.read_buf.capacity() > 0 {
            self.read_buf = BytesMut::new();
        }
        if self.write_buf.is_empty() && self.write_buf.capacity() > 0 {
            self.write_buf = BytesMut::new();
        }
    }

    /// Writes the whole write buffer, bounded by the write timeout.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        let deadline = self.config.write_timeout;
        self.metrics.socket_write();
        match timeout(deadline, self.stream.write_all(&self.write_buf)).await {
            Ok(result) => {
                self.write_buf.clear();
                result
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "response write timed out",
            )),
        }
    }

    /// Writes `bytes` after whatever is buffered, bounded by the write timeout. Large
    /// bodies go straight to the socket instead of being copied into the write buffer.
    pub(crate) async fn write_direct(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !self.write_buf.is_empty() {
            self.flush().await?;
        }
        self.metrics.socket_write();
        match timeout(self.config.write_timeout, self.stream.write_all(bytes)).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "response write timed out",
            )),
        }
    }

    /// The next piece of the request body, `Ok(None)` at its end.
    pub(crate) async fn read_body_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        if let Some(fault) = &self.body.fault {
            return Err(fault.clone());
        }
        match self.next_body_piece().await {
            Ok(piece) => Ok(piece),
            Err(error) => {
                self.body.fault = Some(error.clone());
                self.body.remaining = Remaining::Done;
                Err(error)
            }
        }
    }

    async fn next_body_piece(&mut self) -> Result<Option<Bytes>, BodyError> {
        if self.body.continue_pending {
            self.body.continue_pending = false;
            self.write_buf.extend_from_slice(CONTINUE);
            self.flush().await.map_err(|e| BodyError::Io(e.kind()))?;
        }
        loop {
            let piece = match &mut self.body.remaining {
                Remaining::Done => return Ok(None),
                Remaining::Length(left) => {
                    if self.read_buf.is_empty() {
                        None
                    } else {
                        let take = (*left).min(self.read_buf.len() as u64) as usize;
                        *left -= take as u64;
                        if *left == 0 {
                            self.body.remaining = Remaining::Done;
                        }
                        Some(self.read_buf.split_to(take).freeze())
                    }
                }
                Remaining::Chunked(decoder) => match decoder.decode(&mut self.read_buf) {
                    Ok(Chunk::Data(data)) => Some(data),
                    Ok(Chunk::End) => {
                        self.finished_trailers = decoder.trailers().to_vec();
                        self.body.remaining = Remaining::Done;
                        return Ok(None);
                    }
                    Ok(Chunk::NeedMore) => None,
                    Err(error) => return Err(BodyError::Malformed(error)),
                },
            };
            if let Some(data) = piece {
                self.body.received += data.len() as u64;
                let limit = self.config.max_body_bytes;
                if self.body.received > limit {
                    return Err(BodyError::TooLarge { limit });
                }
                return Ok(Some(data));
            }
            match timeout(self.config.body_read_timeout, self.read_more()).await {
                Err(_) => return Err(BodyError::Timeout),
                Ok(Err(error)) => return Err(BodyError::Io(error.kind())),
                Ok(Ok(0)) => return Err(BodyError::Incomplete),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Reads and discards what is left of the body, up to `max_drain_bytes`, so that the
    /// connection can carry the next request. Returns whether the body was fully consumed.
    pub(crate) async fn drain_body(&mut self) -> bool {
        if self.body.continue_pending || self.body.fault.is_some() {
            // The client is waiting for our word before sending the body: it may or may
            // not send it now, so the connection cannot be reused.
            return false;
        }
        if let Remaining::Length(left) = self.body.remaining {
            if left > self.config.max_drain_bytes {
                return false;
            }
        }
        let budget = self.body.received + self.config.max_drain_bytes;
        while !self.body.is_finished() {
            match self.read_body_chunk().await {
                Ok(_) if self.body.received > budget => return false,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        // A drain error must not override the handler's response.
        self.body.fault = None;
        true
    }
}
