//! One line-protocol connection: lines in, replies and events out, with the connection's
//! flood limit, idle deadline and write deadline.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout, Instant};
use weir_http::AddressSlot;

use super::config::LineConfig;
use super::parse::{looks_like_http, parse};
use super::reader::{Line, LineReader};
use crate::render::{line_bytes, reply_line, Encoding};
use crate::session::Handled;
use crate::{until_expired, ChatContext, Reply, Session, WRITE_BATCH};

/// A reply or event line must reach the client within this, or the connection is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Replies held back at most while more commands already read wait to be handled: a
/// client that pipelines commands gets their replies in one write, not one write (and one
/// system call) each, as Redis answers a pipeline.
const MAX_HELD_REPLIES: usize = 256;
/// Publishes to durable topics committing at once for one connection, at most: past it the
/// connection reads no further command until the oldest is answered.
const MAX_COMMITTING: usize = 1024;

/// A reply line to come, in command order: a durable publish's once committed, or one
/// that is known but must wait behind it.
type Coming = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

/// The next of the replies to come, in order.
async fn next_coming(coming: &mut VecDeque<Coming>) -> Option<Bytes> {
    match coming.front_mut() {
        Some(reply) => reply.await,
        None => std::future::pending().await,
    }
}

/// Waits (within [`WRITE_TIMEOUT`]) for every reply to come, and holds them for writing;
/// past the deadline, each one still to come is answered with an error that says its
/// outcome is unknown, so that the client is told rather than left counting.
async fn await_coming(coming: &mut VecDeque<Coming>, pending: &mut Vec<Bytes>) {
    let until = Instant::now() + WRITE_TIMEOUT;
    while let Some(reply) = coming.pop_front() {
        // Past the deadline, each is still polled once (a timeout polls before it looks
        // at the clock): what is answered by then is written as it is.
        match tokio::time::timeout_at(until, reply).await {
            Ok(line) => pending.extend(line),
            Err(_) => pending.push(line_bytes(format!(
                "-ERR no answer from the store within {WRITE_TIMEOUT:?}; this publish may or may not be committed"
            ))),
        }
    }
}

/// A token bucket: `rate` lines per second on average, `burst` at once.
#[derive(Debug)]
struct FloodGate {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
    strikes: u32,
}

impl FloodGate {
    fn new(config: &LineConfig) -> FloodGate {
        FloodGate {
            tokens: f64::from(config.flood_burst),
            rate: f64::from(config.flood_rate),
            burst: f64::from(config.flood_burst),
            last: Instant::now(),
            strikes: 0,
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.strikes = 0;
            true
        } else {
            self.strikes += 1;
            false
        }
    }
}

/// Serves one connection; `_places` are its places under `line.max_connections` and its
/// address's limit, held until the session ends.
pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    ctx: Arc<ChatContext>,
    config: Arc<LineConfig>,
    _places: (OwnedSemaphorePermit, AddressSlot),
) {
    let _ = stream.set_nodelay(true);
    let (read_half, write_half) = stream.into_split();
    let mut reader = LineReader::new(read_half, config.max_line_bytes);
    let mut out = write_half;
    let mut gate = FloodGate::new(&config);
    let access = ctx.tokens().access(None);
    // A signed token's session ends when the token does; `AUTH` may bring a new one.
    let mut expiry = access.expires_at();
    let expired = until_expired(expiry);
    tokio::pin!(expired);
    // With tokens set, a connection must authenticate within `auth_timeout`.
    let auth_deadline = (!access.is_authenticated()).then(|| Instant::now() + config.auth_timeout);
    let shutdown = ctx.shutdown().clone();
    let mut session = Session::new(
        id,
        format!("line {peer}").into(),
        Encoding::Line,
        ctx,
        access,
    );
    tracing::debug!("line session opened");
    let mut pending = vec![line_bytes("+OK weir line protocol; HELP for commands")];
    let mut coming: VecDeque<Coming> = VecDeque::new();
    // One timer for the connection's life, moved only when it fires early: making a new
    // one per loop turn cost a timer-wheel insert and removal per delivered batch.
    let idle = tokio::time::sleep(config.idle_timeout);
    tokio::pin!(idle);
    let mut last_activity;
    loop {
        last_activity = Instant::now();
        // Replies wait while commands already read remain (they are handled at once), so
        // that a pipeline's replies go out together.
        let more_read = reader.has_line() && pending.len() < MAX_HELD_REPLIES;
        if !pending.is_empty() && !more_read {
            if write_lines(&mut out, &pending).await.is_err() {
                break;
            }
            pending.clear();
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                last_words(&mut out, &mut pending, &mut coming, line_bytes("-ERR server shutting down")).await;
                break;
            }
            () = &mut expired => {
                last_words(&mut out, &mut pending, &mut coming, line_bytes("-ERR token expired; closing")).await;
                break;
            }
            () = async {
                match auth_deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            }, if !session.is_authenticated() => {
                last_words(&mut out, &mut pending, &mut coming, line_bytes(format!("-ERR no AUTH within {:?}; closing", config.auth_timeout))).await;
                break;
            }
            // While a write is pending nothing is taken from the subscriptions: a client
            // that reads slowly falls behind in the hub, and the publisher never waits.
            batch = session.next_events(WRITE_BATCH) => pending.extend(batch),
            () = &mut idle => {
                let quiet_until = last_activity + config.idle_timeout;
                if Instant::now() < quiet_until {
                    idle.as_mut().reset(quiet_until);
                    continue;
                }
                last_words(&mut out, &mut pending, &mut coming, line_bytes(format!("-ERR idle for {:?}; closing", config.idle_timeout))).await;
                break;
            }
            line = next_coming(&mut coming) => {
                coming.pop_front();
                pending.extend(line);
            }
            read = reader.next_line(), if coming.len() < MAX_COMMITTING => match read {
                Err(_) => break,
                // The client is done sending (a half-close, as `nc -N` does) but may still
                // read: the replies still committing go out first. (None is held back in
                // `pending`: replies wait there only while a whole line is read and
                // unhandled, and the end comes after the last one.)
                Ok(Line::End) => {
                    await_coming(&mut coming, &mut pending).await;
                    let _ = write_lines(&mut out, &pending).await;
                    break;
                }
                Ok(Line::TooLong) => answer(&mut pending, &mut coming, Some(line_bytes(format!("-ERR line too long (limit {} bytes); it was discarded", config.max_line_bytes)))),
                Ok(Line::NotUtf8) => answer(&mut pending, &mut coming, Some(line_bytes("-ERR line is not UTF-8; it was discarded"))),
                Ok(Line::Text(text)) if looks_like_http(&text) => {
                    tracing::warn!("an HTTP request on the line protocol's port; closing");
                    last_words(&mut out, &mut pending, &mut coming, line_bytes("-ERR this is Weir's line protocol, not HTTP; closing")).await;
                    break;
                }
                Ok(Line::Text(text)) => {
                    // Parsed once, here: the flood gate needs the command, and so does the
                    // session.
                    let command = parse(&text);
                    let machine = matches!(&command, Ok(command) if command.is_machine_traffic());
                    if !machine && !gate.allow() {
                        if gate.strikes >= config.flood_strikes {
                            last_words(&mut out, &mut pending, &mut coming, line_bytes("-ERR disconnected for flooding")).await;
                            break;
                        }
                        answer(&mut pending, &mut coming, Some(line_bytes(format!("-ERR flood: more than {} lines a second; line ignored", config.flood_rate))));
                        continue;
                    }
                    // Boxed: a command's future (which may wait for the store) would
                    // otherwise sit inline in every idle connection's task.
                    let outcome = match command {
                        Ok(command) => match Box::pin(session.handle_pipelined(command)).await {
                            Handled::Now(outcome) => outcome,
                            Handled::Later(reply) => {
                                coming.push_back(Box::pin(async move {
                                    reply_line(&reply.await).map(line_bytes)
                                }));
                                continue;
                            }
                        },
                        Err(error) => {
                            answer(&mut pending, &mut coming, Some(line_bytes(format!("-ERR {}", error.0))));
                            continue;
                        }
                    };
                    if let Ok(Reply::Quit) = outcome {
                        last_words(&mut out, &mut pending, &mut coming, line_bytes("+OK bye")).await;
                        break;
                    }
                    if session.expires_at() != expiry {
                        // A new token: its own expiry from now on.
                        expiry = session.expires_at();
                        expired.set(until_expired(expiry));
                    }
                    answer(&mut pending, &mut coming, reply_line(&outcome).map(line_bytes));
                }
            },
        }
    }
    Box::pin(session.close()).await;
    tracing::debug!("line session closed");
}

/// Holds a reply for writing, or, while earlier replies are still to come, queues it
/// behind them: replies go out in command order.
fn answer(pending: &mut Vec<Bytes>, coming: &mut VecDeque<Coming>, reply: Option<Bytes>) {
    if coming.is_empty() {
        pending.extend(reply);
    } else {
        coming.push_back(Box::pin(std::future::ready(reply)));
    }
}

/// Writes the replies still held back, and those still to come (a publish committing is
/// answered: it will be committed), then `last`, before the connection closes.
async fn last_words(
    out: &mut OwnedWriteHalf,
    pending: &mut Vec<Bytes>,
    coming: &mut VecDeque<Coming>,
    last: Bytes,
) {
    await_coming(coming, pending).await;
    pending.push(last);
    let _ = write_lines(out, pending).await;
}

/// Writes whole lines (each with its line ending) in one write. No buffer lives between
/// writes: an idle connection holds none.
async fn write_lines(out: &mut OwnedWriteHalf, lines: &[Bytes]) -> std::io::Result<()> {
    let write = async {
        if let [line] = lines {
            return out.write_all(line).await;
        }
        let mut joined = Vec::with_capacity(lines.iter().map(Bytes::len).sum());
        for line in lines {
            joined.extend_from_slice(line);
        }
        out.write_all(&joined).await
    };
    timeout(WRITE_TIMEOUT, write).await.unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "client stopped reading",
        ))
    })
}
