//! One connection: keep-alive, pipelining, batched writes, timeouts and shutdown.
//!
//! The loop parses every request already in the read buffer and answers each in order into
//! the write buffer; only when the buffer holds no complete request does it write the batch
//! (one write for all pipelined responses) and read again. Handlers run inline in this task,
//! which keeps responses in request order without a queue.
//!
//! Timeouts: the first request must arrive within the header read timeout; later ones
//! within the idle timeout. Once the first byte of a head is in, the rest must arrive within
//! the header read timeout (slowloris), or the client gets 408. Body reads and response
//! writes each have their own deadline (see [`ServerConfig`]).
//!
//! Shutdown: an idle connection closes at once; a busy one finishes its request, answers
//! with `connection: close`, and closes. Streaming responses end cleanly at shutdown.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::time::{timeout, Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::encode::{
    encode_chunk_header, encode_head, validate_headers, Framing, HeadContext, LAST_CHUNK,
};
use crate::io::ConnIo;
use crate::metrics::OpenConnection;
use crate::unwind::{panic_message, CatchUnwind};
use crate::websocket::Upgraded;
use crate::{
    parse_request_head, Body, BodyFraming, Handler, HeadError, HttpMetrics, Method, Request,
    Response, ResponseBody, ServerConfig, StatusCode,
};

/// A full body larger than this is written straight from its own buffer instead of being
/// copied behind the head into the write buffer.
const COPY_BODY_LIMIT: usize = 16 * 1024;

/// Pipelined responses are flushed early once this many bytes are waiting, so a client that
/// pipelines without reading cannot make the write buffer grow without bound.
const WRITE_BATCH_LIMIT: usize = 64 * 1024;

/// After an error response the socket is half-closed and the client's remaining bytes are
/// read and discarded for up to this long, so the kernel does not answer them with a reset
/// that could destroy the response before the client reads it (nginx's lingering close).
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// What one connection needs from the server.
#[derive(Debug)]
pub(crate) struct ConnContext<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) metrics: Arc<HttpMetrics>,
    pub(crate) shutdown: CancellationToken,
    /// Set when shutdown starts: responses then carry `connection: close`. A plain atomic
    /// rather than `shutdown.is_cancelled()`, which takes a lock, on the per-request path.
    pub(crate) draining: AtomicBool,
}

/// How a request-response exchange left the connection.
enum Next {
    KeepAlive,
    Close,
    /// Close after an error: half-close and linger so the client reads the response.
    CloseAfterError,
    /// The connection now belongs to an upgraded protocol.
    Upgrade(crate::response::OnUpgrade),
}

/// What an upgraded connection runs once HTTP is done with it, and the guard that keeps it
/// counted as an open connection meanwhile.
pub(crate) type UpgradedSession = (
    Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    OpenConnection,
);

/// Serves HTTP on one connection until it closes, or until it is upgraded: then it returns
/// the upgraded protocol's session for the caller to run as a task of its own, so a
/// long-lived WebSocket does not keep this (much larger) HTTP state machine alive.
pub(crate) async fn serve_connection<H: Handler>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    ctx: Arc<ConnContext<H>>,
    reserved: bool,
) -> Option<UpgradedSession> {
    let _open = ctx.metrics.connection_opened();
    let io = Arc::new(Mutex::new(ConnIo::new(
        stream,
        ctx.config.clone(),
        ctx.metrics.clone(),
    )));
    let mut guard = io
        .clone()
        .try_lock_owned()
        .expect("a new mutex is unlocked");
    let limits = ctx.config.head_limits();
    let mut served: u64 = 0;
    let mut head_deadline: Option<Instant> = None;
    let mut waits = ConnWaits::new(&ctx);
    let mut clock = std::time::Instant::now();

    loop {
        let parsed = match parse_request_head(&guard.read_buf, &limits) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                // End of a batch: send what is buffered, then wait for more bytes.
                if !guard.write_buf.is_empty() && guard.flush().await.is_err() {
                    return None;
                }
                match read_head_bytes(&mut guard, &ctx, &mut waits, served, &mut head_deadline)
                    .await
                {
                    ReadOutcome::Data => {
                        clock = std::time::Instant::now();
                        continue;
                    }
                    ReadOutcome::Closed => return None,
                    ReadOutcome::HeadTimeout => {
                        let response =
                            Response::text(StatusCode::REQUEST_TIMEOUT, "request head timed out\n");
                        let _ = respond_and_close(&mut guard, &ctx, response).await;
                        linger_close(guard).await;
                        return None;
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, "rejected request head");
                let response = head_error_response(&error);
                let _ = respond_and_close(&mut guard, &ctx, response).await;
                linger_close(guard).await;
                return None;
            }
        };
        head_deadline = None;
        served += 1;

        // One clock reading per request: a request starts when the previous one was answered
        // or when its bytes were read, whichever is later, and the reading taken when the
        // handler returns serves both the latency metric and the Date header.
        let started = clock;
        let head = guard.read_buf.split_to(parsed.head_len).freeze();
        let has_body = parsed.framing != BodyFraming::None;
        guard.begin_body(parsed.framing, parsed.expect_continue);
        let mut exchange = Exchange {
            version: parsed.version,
            head_request: parsed.method == Method::Head,
            keep_alive: parsed.keep_alive,
            upgrade_requested: parsed.upgrade,
            answered: started,
        };

        let (body, kept) = if has_body {
            (Body::from_socket(guard), None)
        } else {
            (Body::empty(), Some(guard))
        };
        let request = Request::new(head, parsed, Some(peer), body);
        // A connection past the limit serves one request, on the operator's paths only.
        if reserved {
            exchange.keep_alive = false;
            if !ctx
                .config
                .reserved_paths
                .iter()
                .any(|path| path == request.path())
            {
                drop(request);
                let busy = Response::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "{\"error\":\"the server is at its connection limit\"}",
                )
                .with_header("retry-after", "1");
                let mut guard = match kept {
                    Some(guard) => guard,
                    None => take_back(&io, &ctx.config).await?,
                };
                let _ = respond_and_close(&mut guard, &ctx, busy).await;
                linger_close(guard).await;
                return None;
            }
        }
        // A handler may panic while it makes its future (a router runs the route's closure
        // then), not only when the future is polled: both become a 500.
        let (outcome, held) = match catch_unwind(AssertUnwindSafe(|| ctx.handler.call(request))) {
            Err(panic) => (Err(panic), kept),
            Ok(future) => {
                let mut call = std::pin::pin!(CatchUnwind::new(future));
                // Most handlers answer on their first poll: take that answer here, before
                // setting up the watch on the client (measured: the watch's future was 3% of
                // a pipelined request's instructions). A first poll that is pending
                // registered the task's waker, and the watch goes on from there.
                match poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
                    Poll::Ready(outcome) => (outcome, kept),
                    Poll::Pending => {
                        let Some(answered) =
                            unless_client_leaves(call, &io, kept, &ctx.config).await
                        else {
                            tracing::debug!(
                                "the client closed the connection; its handler was cancelled"
                            );
                            return None;
                        };
                        answered
                    }
                }
            }
        };
        guard = match held {
            Some(guard) => guard,
            None => match take_back(&io, &ctx.config).await {
                Some(guard) => guard,
                None => return None,
            },
        };

        let (response, panicked) = match outcome {
            Ok(response) => (response, false),
            Err(panic) => {
                tracing::error!(
                    panic = panic_message(&*panic),
                    "handler panicked; answering 500 and closing"
                );
                (
                    Response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n"),
                    true,
                )
            }
        };
        exchange.answered = std::time::Instant::now();
        clock = exchange.answered;
        let status = response.status;
        let streamed = matches!(response.body, ResponseBody::Stream(_));
        let next = if guard.body.fault.is_none() && guard.body.is_finished() {
            match answer_without_waiting(&mut guard, &ctx, exchange, response, panicked) {
                Ok(next) => Ok(next),
                Err(queued) => finish_response(&mut guard, &ctx, queued).await,
            }
        } else {
            send_response(&mut guard, &ctx, exchange, response, panicked).await
        };
        let elapsed = if streamed {
            started.elapsed()
        } else {
            exchange.answered - started
        };
        ctx.metrics.record_response(status, elapsed);
        match next {
            Ok(Next::KeepAlive) => {}
            Ok(Next::Close) | Err(_) => {
                let _ = guard.flush().await;
                return None;
            }
            Ok(Next::CloseAfterError) => {
                if guard.flush().await.is_ok() {
                    linger_close(guard).await;
                }
                return None;
            }
            Ok(Next::Upgrade(on_upgrade)) => {
                if guard.flush().await.is_err() {
                    return None;
                }
                drop(guard);
                if let Ok(io) = Arc::try_unwrap(io) {
                    // Keep only the socket and a copy of what the client sent after the
                    // handshake (usually nothing); the buffers go now, not when the
                    // upgraded connection ends (they were 10 KiB per idle WebSocket).
                    let ConnIo {
                        stream, read_buf, ..
                    } = io.into_inner();
                    let leftover = Bytes::copy_from_slice(&read_buf);
                    drop(read_buf);
                    // The connection stays counted as open while the session runs.
                    return Some((on_upgrade(Upgraded::new(stream, leftover)), _open));
                }
                return None;
            }
        }
    }
}

/// What the connection needs to remember about a request while its handler runs.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    version: crate::Version,
    head_request: bool,
    keep_alive: bool,
    upgrade_requested: bool,
    /// When the handler returned.
    answered: std::time::Instant,
}

enum ReadOutcome {
    Data,
    Closed,
    HeadTimeout,
}

/// The waits a connection keeps for its whole life, so that the keep-alive fast path
/// touches neither the timer wheel nor the token's waiter list.
///
/// The timer is only ever moved earlier; when it fires before the deadline that now applies
/// (because requests kept the connection busy), it is re-armed then. A busy connection so
/// re-arms its timer at most once per timeout period instead of once per request.
struct ConnWaits {
    timer: Pin<Box<Sleep>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl ConnWaits {
    fn new<H>(ctx: &ConnContext<H>) -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep(ctx.config.header_read_timeout)),
            shutdown: Box::pin(ctx.shutdown.clone().cancelled_owned()),
        }
    }
}

/// Waits for more bytes of a request head, with the deadline that applies.
async fn read_head_bytes<H>(
    io: &mut ConnIo,
    ctx: &ConnContext<H>,
    waits: &mut ConnWaits,
    served: u64,
    head_deadline: &mut Option<Instant>,
) -> ReadOutcome {
    let idle = io.read_buf.is_empty();
    let deadline = if idle {
        // Between requests. The first request gets the (shorter) head timeout, so a
        // connection that never speaks holds its slot no longer than a slow one.
        let wait = if served == 0 {
            ctx.config.header_read_timeout
        } else {
            ctx.config.idle_timeout
        };
        Instant::now() + wait
    } else {
        *head_deadline.get_or_insert_with(|| Instant::now() + ctx.config.header_read_timeout)
    };
    if waits.timer.deadline() > deadline {
        waits.timer.as_mut().reset(deadline);
    }
    loop {
        tokio::select! {
            biased;
            read = io.read_more() => {
                return match read {
                    Ok(n) if n > 0 => {
                        if idle {
                            // The first bytes of a head start its clock.
                            *head_deadline = Some(Instant::now() + ctx.config.header_read_timeout);
                        }
                        ReadOutcome::Data
                    }
                    _ => ReadOutcome::Closed,
                };
            }
            // Only an idle connection closes at shutdown; a head in progress is answered.
            _ = waits.shutdown.as_mut(), if idle => return ReadOutcome::Closed,
            () = waits.timer.as_mut() => {
                if Instant::now() >= deadline {
                    // Idle close is silent (RFC 9112 section 9.8); a slow head gets 408.
                    return if idle { ReadOutcome::Closed } else { ReadOutcome::HeadTimeout };
                }
                waits.timer.as_mut().reset(deadline);
            }
        }
    }
}

/// Runs a handler while watching its connection: if the client closes it before the
/// answer (a long-poll it gave up on, a page navigated away from), the handler's future is
/// dropped, which cancels it at its current await point, so no further work is done for a
/// client that is gone (a long-poll lease stops waiting; a claim already sent to the store
/// may still lease a job, which its lease's expiry then hands on). Returns `None` then.
///
/// The socket can be watched only while the connection holds it: at once for a request
/// without a body, or from the moment the handler drops the body. Bytes that arrive meanwhile
/// (a pipelined request) stay in the read buffer for later; watching stops once it holds a
/// request head's worth. A client that half-closes its side counts as gone, as in Go's
/// server: HTTP/1.1 clients do not half-close while they wait for an answer.
async fn unless_client_leaves<F: Future>(
    mut call: Pin<&mut F>,
    io: &Arc<Mutex<ConnIo>>,
    mut held: Option<OwnedMutexGuard<ConnIo>>,
    config: &ServerConfig,
) -> Option<(F::Output, Option<OwnedMutexGuard<ConnIo>>)> {
    let mut watching = true;
    loop {
        match held.as_mut() {
            None => {
                tokio::select! {
                    biased;
                    outcome = &mut call => return Some((outcome, None)),
                    // Cancel-safe: a lock not yet acquired is simply not taken.
                    guard = io.clone().lock_owned() => held = Some(guard),
                }
            }
            Some(guard) if watching => {
                tokio::select! {
                    biased;
                    outcome = &mut call => return Some((outcome, held)),
                    // Cancel-safe: `read_buf` either appends what it read or reads nothing.
                    read = guard.read_more() => match read {
                        Ok(0) | Err(_) => return None,
                        Ok(_) => watching = guard.read_buf.len() < config.max_head_bytes.get(),
                    },
                }
            }
            Some(_) => return Some((call.await, held)),
        }
    }
}

/// Takes the connection back from a body the handler has dropped (or kept).
async fn take_back(
    io: &Arc<Mutex<ConnIo>>,
    config: &ServerConfig,
) -> Option<OwnedMutexGuard<ConnIo>> {
    if let Ok(guard) = io.clone().try_lock_owned() {
        return Some(guard);
    }
    // The handler kept the body (in a spawned task, say): wait for it to let go.
    timeout(config.write_timeout, io.clone().lock_owned())
        .await
        .ok()
}

fn head_error_response(error: &HeadError) -> Response {
    Response::text(error.status(), format!("{error}\n"))
}

/// Answers with `response` and marks the connection for closing.
async fn respond_and_close<H>(
    io: &mut ConnIo,
    ctx: &ConnContext<H>,
    response: Response,
) -> std::io::Result<()> {
    let ctx_head = HeadContext {
        now: std::time::Instant::now(),
        version: crate::Version::Http11,
        keep_alive: false,
        head_request: false,
    };
    let status = response.status;
    let (framing, _) = encode_head(&mut io.write_buf, &response, ctx_head);
    if let (Framing::Full, ResponseBody::Full(bytes)) = (framing, &response.body) {
        io.write_buf.extend_from_slice(bytes);
    }
    ctx.metrics.record_response(status, Duration::ZERO);
    io.flush().await
}

/// Half-closes the socket and discards what the client still sends, for a bounded time.
async fn linger_close(mut io: OwnedMutexGuard<ConnIo>) {
    if io.stream.shutdown().await.is_err() {
        return;
    }
    let mut discarded = 0;
    // On the heap: an array here would sit in every connection's future, lingering or not
    // (it made each connection task 4 KiB larger).
    let mut scratch = vec![0u8; 4096];
    let _ = timeout(LINGER_TIMEOUT, async {
        while discarded < LINGER_BYTES {
            match io.stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    })
    .await;
}

/// Sends one response (head and body) and decides what happens to the connection next.
async fn send_response<H>(
    io: &mut ConnIo,
    ctx: &ConnContext<H>,
    exchange: Exchange,
    mut response: Response,
    panicked: bool,
) -> std::io::Result<Next> {
    let mut keep_alive = exchange.keep_alive && !panicked;
    let mut after_error = false;

    // A broken body decides the answer, whatever the handler said.
    if let Some(fault) = io.body.fault.take() {
        response = Response::text(fault.status(), format!("{fault}\n"));
        keep_alive = false;
        after_error = true;
    } else if !io.body.is_finished() && keep_alive && !io.drain_body().await {
        keep_alive = false;
        after_error = true;
    }
    let queued = queue_response(io, ctx, exchange, response, keep_alive, after_error);
    finish_response(io, ctx, queued).await
}

/// [`send_response`] without its one await before the response is queued, for a request
/// whose body was read to the end (or that had none) and did not fail: the usual case, which
/// then costs no future of its own unless the response needs writing beyond the buffer.
fn answer_without_waiting<H>(
    io: &mut ConnIo,
    ctx: &ConnContext<H>,
    exchange: Exchange,
    response: Response,
    panicked: bool,
) -> Result<Next, Queued> {
    debug_assert!(io.body.fault.is_none() && io.body.is_finished());
    let keep_alive = exchange.keep_alive && !panicked;
    match queue_response(io, ctx, exchange, response, keep_alive, false) {
        Queued::Buffered(next) if io.write_buf.len() < WRITE_BATCH_LIMIT => Ok(next),
        queued => Err(queued),
    }
}

/// A response whose head is in the write buffer, and what sending it still needs.
enum Queued {
    /// All of it is in the buffer.
    Buffered(Next),
    /// A body too large to copy, written straight from its bytes after the head.
    Direct(Bytes, Next),
    /// A streamed body, in the chunked coding or delimited by the connection's close.
    Stream(BodyStream, bool, Next),
}

type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, crate::BoxError>> + Send>>;

/// Checks the handler's response, writes its head (and a small body) into the write buffer
/// and decides what happens to the connection next. Never waits.
fn queue_response<H>(
    io: &mut ConnIo,
    ctx: &ConnContext<H>,
    exchange: Exchange,
    mut response: Response,
    mut keep_alive: bool,
    after_error: bool,
) -> Queued {
    if let Err(invalid) = validate_headers(&response) {
        tracing::error!(header = %invalid.0, "handler returned an invalid header; answering 500");
        response = Response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n");
    }
    if ctx.draining.load(Relaxed) {
        keep_alive = false;
    }
    let upgrade = response.on_upgrade.take().filter(|_| {
        response.status == StatusCode::SWITCHING_PROTOCOLS && exchange.upgrade_requested
    });
    if response.status == StatusCode::SWITCHING_PROTOCOLS && upgrade.is_none() {
        tracing::error!(
            "a 101 response needs an upgrade request and an upgrade callback; answering 500"
        );
        response = Response::text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n");
    }

    let head_ctx = HeadContext {
        now: exchange.answered,
        version: exchange.version,
        keep_alive,
        head_request: exchange.head_request,
    };
    let (framing, keep_alive) = encode_head(&mut io.write_buf, &response, head_ctx);
    let next = match (upgrade, keep_alive, after_error) {
        (Some(on_upgrade), _, _) => Next::Upgrade(on_upgrade),
        (None, true, _) => Next::KeepAlive,
        (None, false, true) => Next::CloseAfterError,
        (None, false, false) => Next::Close,
    };
    match (framing, response.body) {
        (Framing::Full, ResponseBody::Full(bytes)) if bytes.len() > COPY_BODY_LIMIT => {
            Queued::Direct(bytes, next)
        }
        (Framing::Full, ResponseBody::Full(bytes)) => {
            io.write_buf.extend_from_slice(&bytes);
            Queued::Buffered(next)
        }
        (Framing::Chunked | Framing::UntilClose, ResponseBody::Stream(stream)) => {
            Queued::Stream(stream, framing == Framing::Chunked, next)
        }
        _ => Queued::Buffered(next),
    }
}

/// Writes what [`queue_response`] left to write, and flushes a full write buffer.
async fn finish_response<H>(
    io: &mut ConnIo,
    ctx: &ConnContext<H>,
    queued: Queued,
) -> std::io::Result<Next> {
    let next = match queued {
        Queued::Buffered(next) => next,
        Queued::Direct(bytes, next) => {
            io.write_direct(&bytes).await?;
            next
        }
        // A body delimited by the close, or cut short, closes the connection.
        Queued::Stream(stream, chunked, next) => {
            if !stream_body(io, ctx, stream, chunked).await? || !chunked {
                return Ok(Next::Close);
            }
            next
        }
    };
    if io.write_buf.len() >= WRITE_BATCH_LIMIT {
        io.flush().await?;
    }
    Ok(next)
}

/// Streams a body, flushing every piece. Returns `Ok(false)` when the body ended early
/// (its stream failed, or shutdown began on a body without a natural end): the connection
/// must then close.
async fn stream_body<H>(
    io: &mut ConnIo,
    ctx: &ConnContext<H>,
    mut stream: BodyStream,
    chunked: bool,
) -> std::io::Result<bool> {
    io.flush().await?;
    loop {
        let next = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => None,
            next = poll_fn(|cx| match stream.as_mut().poll_next(cx) {
                // Waiting for the next event of a long stream (SSE): hold no empty buffers.
                Poll::Pending => {
                    io.release_idle_buffers();
                    Poll::Pending
                }
                ready => ready,
            }) => Some(next),
        };
        match next {
            Some(Some(Ok(piece))) => {
                if piece.is_empty() {
                    continue;
                }
                if chunked {
                    encode_chunk_header(&mut io.write_buf, piece.len());
                    io.write_buf.extend_from_slice(&piece);
                    io.write_buf.extend_from_slice(b"\r\n");
                    io.flush().await?;
                } else {
                    io.write_direct(&piece).await?;
                }
            }
            Some(Some(Err(error))) => {
                // Ending without the last chunk tells the client the body is incomplete.
                tracing::warn!(%error, "response body stream failed; closing the connection");
                return Ok(false);
            }
            // At shutdown the body is ended properly, so clients see a clean end and reconnect.
            Some(None) | None => {
                if chunked {
                    io.write_buf.extend_from_slice(LAST_CHUNK);
                    io.flush().await?;
                }
                return Ok(next.is_some());
            }
        }
    }
}
