//! One line-protocol connection: commands in, replies and events out.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{timeout, Instant};
use weir_pubsub::{Message, PresenceChange, StartFrom, TopicName};

use crate::auth::{Access, Scope};

use super::command::parse;
use super::feeds::{FeedKey, Feeds};
use super::reader::{Line, LineReader};
use super::Command;
use super::LineContext;

/// A reply or event line must reach the client within this, or the connection is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Event lines written at most per write: many per system call under load, bounded so
/// that commands are still read between batches.
pub(crate) const WRITE_BATCH: usize = 256;

const HELP: &str = "+OK commands: NICK name | JOIN room | PART room | SAY room text | WHO room | SUB topic [earliest|OFFSET] | UNSUB topic | PUB topic text | AUTH token | QUIT";

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

/// How a session's replies and events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Text lines (the line protocol).
    Line,
    /// JSON objects (WebSocket frames).
    Json,
}

/// One client's chat and pub/sub state, whatever the transport.
pub(crate) struct Session {
    id: u64,
    /// The transport and peer address (`line 127.0.0.1:5555`), shared with the
    /// subscriptions as their label in the slow-subscriber report.
    peer: Arc<str>,
    encoding: Encoding,
    nick: Option<String>,
    feeds: Feeds,
    ctx: Arc<LineContext>,
    /// The scopes this client holds: all on an open server, none until it authenticates.
    access: Access,
}

/// The answer to a command, in the line protocol's words (`+OK …`, `-ERR …`).
pub(crate) enum Reply {
    Lines(Vec<String>),
    Quit,
}

fn one(line: impl Into<String>) -> Reply {
    Reply::Lines(vec![line.into()])
}

/// Serves one connection; `_slot` is its place under `line.max_connections`, held until
/// the session ends.
pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    ctx: Arc<LineContext>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let (read_half, write_half) = stream.into_split();
    let mut reader = LineReader::new(read_half, ctx.config.max_line_bytes);
    let mut out = write_half;
    let config = ctx.config.clone();
    let mut gate = FloodGate {
        tokens: f64::from(config.flood_burst),
        rate: f64::from(config.flood_rate),
        burst: f64::from(config.flood_burst),
        last: Instant::now(),
        strikes: 0,
    };
    let access = ctx.config.tokens.access(None);
    let mut session = Session::new(
        id,
        format!("line {peer}").into(),
        Encoding::Line,
        ctx.clone(),
        access,
    );
    tracing::debug!("line session opened");
    let mut pending = vec![line_bytes("+OK weir line protocol; HELP for commands")];
    // One timer for the connection's life, moved only when it fires early: making a new
    // one per loop turn cost a timer-wheel insert and removal per delivered batch.
    let idle = tokio::time::sleep(config.idle_timeout);
    tokio::pin!(idle);
    let mut last_activity;
    loop {
        last_activity = Instant::now();
        if !pending.is_empty() {
            if write_lines(&mut out, &pending).await.is_err() {
                break;
            }
            pending.clear();
        }
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => {
                let _ = write_lines(&mut out, &[line_bytes("-ERR server shutting down")]).await;
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
                let _ = write_lines(&mut out, &[line_bytes(format!("-ERR idle for {:?}; closing", config.idle_timeout))]).await;
                break;
            }
            read = reader.next_line() => match read {
                Err(_) | Ok(Line::End) => break,
                Ok(Line::TooLong) => pending.push(line_bytes(format!("-ERR line too long (limit {} bytes); it was discarded", config.max_line_bytes))),
                Ok(Line::NotUtf8) => pending.push(line_bytes("-ERR line is not UTF-8; it was discarded")),
                Ok(Line::Text(text)) => {
                    // Parsed once, here: the flood gate needs the command, and so does the
                    // session. Pub/sub commands are machine traffic, paced by the hub's own
                    // limits; the gate is for chat and for lines that are not commands.
                    let command = parse(&text);
                    let machine = matches!(
                        command,
                        Ok(Command::Pub { .. } | Command::Sub { .. } | Command::Unsub(_))
                    );
                    if !machine && !gate.allow() {
                        if gate.strikes >= config.flood_strikes {
                            let _ = write_lines(&mut out, &[line_bytes("-ERR disconnected for flooding")]).await;
                            break;
                        }
                        pending.push(line_bytes(format!("-ERR flood: more than {} lines a second; line ignored", config.flood_rate)));
                        continue;
                    }
                    // Boxed: a command's future (which may wait for the store) would
                    // otherwise sit inline in every idle connection's task.
                    let reply = match command {
                        Ok(command) => Box::pin(session.handle_command(command)).await,
                        Err(error) => one(format!("-ERR {}", error.0)),
                    };
                    match reply {
                        Reply::Lines(lines) => pending.extend(lines.into_iter().map(line_bytes)),
                        Reply::Quit => {
                            let _ = write_lines(&mut out, &[line_bytes("+OK bye")]).await;
                            break;
                        }
                    }
                }
            },
        }
    }
    Box::pin(session.close()).await;
    tracing::debug!("line session closed");
}

/// A line with its line ending, as it is written.
pub(crate) fn line_bytes(line: impl Into<String>) -> Bytes {
    let mut line = line.into();
    line.push_str("\r\n");
    Bytes::from(line)
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

impl Session {
    pub(crate) fn new(
        id: u64,
        peer: Arc<str>,
        encoding: Encoding,
        ctx: Arc<LineContext>,
        access: Access,
    ) -> Self {
        Self {
            access,
            id,
            peer,
            encoding,
            nick: None,
            feeds: Feeds::default(),
            ctx,
        }
    }

    /// Events ready on this client's subscriptions, up to `max`, in its encoding; waits
    /// for the next when none is ready. Cancel-safe.
    pub(crate) async fn next_events(&mut self, max: usize) -> Vec<Bytes> {
        let encoding = self.encoding;
        poll_fn(|cx| self.feeds.poll_batch(cx, encoding, max)).await
    }

    /// The scope a command needs; `None` for those anyone may send.
    fn scope_of(command: &Command) -> Option<Scope> {
        match command {
            Command::Join(_) | Command::Who(_) | Command::Sub { .. } => Some(Scope::Subscribe),
            Command::Say { .. } | Command::Pub { .. } => Some(Scope::Publish),
            Command::Nick(_)
            | Command::Part(_)
            | Command::Unsub(_)
            | Command::Auth(_)
            | Command::Help
            | Command::Quit => None,
        }
    }

    pub(crate) async fn handle_command(&mut self, command: Command) -> Reply {
        if let Some(scope) = Self::scope_of(&command) {
            if let Err(message) = self.access.require(scope) {
                return one(format!("-ERR {message}; AUTH <token>"));
            }
        }
        match command {
            Command::Help => one(HELP),
            Command::Quit => Reply::Quit,
            Command::Auth(token) => self.authenticate(&token),
            Command::Nick(_) if !self.access.is_authenticated() => {
                one("-ERR authenticate first: a token is required; AUTH <token>")
            }
            Command::Nick(nick) => self.nick(nick),
            Command::Join(room) => self.join(room).await,
            Command::Part(room) => self.part(&room).await,
            Command::Say { room, text } => self.say(&room, &text).await,
            Command::Who(room) => {
                let members = self.ctx.presence.members(&room);
                if members.is_empty() {
                    one(format!("+OK {room}: nobody"))
                } else {
                    one(format!("+OK {room}: {}", members.join(" ")))
                }
            }
            Command::Sub { pattern, from } => {
                let start = match from.as_deref() {
                    None => StartFrom::Now,
                    Some("earliest") => StartFrom::Earliest,
                    Some(offset) => match offset.parse() {
                        Ok(offset) => StartFrom::Offset(offset),
                        Err(_) => {
                            return one(format!(
                                "-ERR {offset:?} is not an offset; use a number or 'earliest'"
                            ))
                        }
                    },
                };
                match self.subscribe(&pattern, start) {
                    Ok(()) => one(format!("+OK subscribed to {pattern}")),
                    Err(error) => one(format!("-ERR {error}")),
                }
            }
            Command::Unsub(pattern) => match self.unsubscribe(&pattern) {
                Ok(()) => one(format!("+OK unsubscribed from {pattern}")),
                Err(error) => one(format!("-ERR {error}")),
            },
            Command::Pub { topic, payload } => match self.publish(&topic, payload.into()).await {
                Ok(message) => one(format!("+OK {topic} offset {}", message.offset())),
                Err(error) => one(format!("-ERR {error}")),
            },
        }
    }

    fn authenticate(&mut self, token: &str) -> Reply {
        if self.ctx.config.tokens.is_open() {
            return one("+OK this server is open; no token is needed");
        }
        let access = self.ctx.config.tokens.access(Some(token));
        if !access.is_authenticated() {
            return one("-ERR invalid token");
        }
        self.access = access;
        one("+OK authenticated")
    }

    /// Refuses one more room or subscription past the per-connection limit.
    fn check_subscription_limit(&self) -> Result<(), String> {
        let limit = self.ctx.config.max_subscriptions;
        if self.feeds.len() >= limit {
            return Err(format!(
                "subscription limit: a connection may follow {limit} topics and rooms (setting pubsub.max_subscriptions)"
            ));
        }
        Ok(())
    }

    /// Subscribes this client to a topic or pattern; its events are forwarded in the
    /// session's encoding.
    pub(crate) fn subscribe(&mut self, pattern: &str, start: StartFrom) -> Result<(), String> {
        self.access.require(Scope::Subscribe)?;
        let key = FeedKey::Topic(pattern.to_string());
        if self.feeds.contains(&key) {
            return Err(format!("already subscribed to {pattern}"));
        }
        self.check_subscription_limit()?;
        let subscription = self
            .ctx
            .hub
            .subscribe(pattern, start, self.peer.clone())
            .map_err(|error| error.to_string())?;
        self.feeds.insert(key, subscription);
        Ok(())
    }

    /// Ends a subscription.
    pub(crate) fn unsubscribe(&mut self, pattern: &str) -> Result<(), String> {
        if self.feeds.remove(&FeedKey::Topic(pattern.to_string())) {
            Ok(())
        } else {
            Err(format!("not subscribed to {pattern}"))
        }
    }

    /// Publishes `payload` to `topic`.
    /// Publishes `payload` to `topic`; for a durable topic, once the store has it.
    pub(crate) async fn publish(&self, topic: &str, payload: Bytes) -> Result<Message, String> {
        self.access.require(Scope::Publish)?;
        self.ctx
            .hub
            .publish_wait(topic, payload)
            .await
            .map_err(|error| error.to_string())
    }

    fn nick(&mut self, nick: String) -> Reply {
        if self.nick.as_deref() == Some(nick.as_str()) {
            return one(format!("+OK you are {nick}"));
        }
        if self.feeds.has_rooms() {
            return one("-ERR part your rooms before changing your nickname");
        }
        if !self.ctx.nicks.claim(&nick, self.id) {
            return one(format!("-ERR nickname {nick} is taken"));
        }
        if let Some(old) = self.nick.replace(nick.clone()) {
            self.ctx.nicks.release(&old, self.id);
        }
        one(format!("+OK you are {nick}"))
    }

    fn room_topic(room: &str) -> Option<TopicName> {
        if room.contains('.') {
            return None;
        }
        TopicName::new(&format!("chat.{room}")).ok()
    }

    async fn join(&mut self, room: String) -> Reply {
        let Some(nick) = self.nick.clone() else {
            return one("-ERR set a nickname first: NICK <name>");
        };
        let Some(topic) = Self::room_topic(&room) else {
            return one(format!(
                "-ERR room {room:?}: use letters, digits, '_', '-' or ':'"
            ));
        };
        if self.feeds.contains(&FeedKey::Room(room.clone())) {
            return one(format!("+OK already in {room}"));
        }
        if let Err(error) = self.check_subscription_limit() {
            return one(format!("-ERR {error}"));
        }
        let subscription = match self.ctx.hub.subscribe(
            topic.as_str(),
            StartFrom::Last(self.ctx.config.history),
            self.peer.clone(),
        ) {
            Ok(subscription) => subscription,
            Err(error) => return one(format!("-ERR {error}")),
        };
        self.feeds.insert(FeedKey::Room(room.clone()), subscription);
        if self.ctx.presence.join(&room, &nick, self.id) == PresenceChange::Joined {
            let _ = announce(&self.ctx, topic.as_str(), "join", &nick, "").await;
        }
        let here = self.ctx.presence.members(&room).len();
        one(format!("+OK joined {room} ({here} here)"))
    }

    async fn part(&mut self, room: &str) -> Reply {
        if !self.feeds.remove(&FeedKey::Room(room.to_string())) {
            return one(format!("-ERR you are not in {room}"));
        }
        let nick = self.nick.clone().unwrap_or_default();
        if self.ctx.presence.part(room, &nick, self.id) == PresenceChange::Left {
            if let Some(topic) = Self::room_topic(room) {
                let _ = announce(&self.ctx, topic.as_str(), "part", &nick, "").await;
            }
        }
        one(format!("+OK left {room}"))
    }

    async fn say(&mut self, room: &str, text: &str) -> Reply {
        if !self.feeds.contains(&FeedKey::Room(room.to_string())) {
            return one(format!("-ERR join {room} before saying something there"));
        }
        let (Some(nick), Some(topic)) = (self.nick.clone(), Self::room_topic(room)) else {
            return one("-ERR set a nickname first: NICK <name>");
        };
        // No reply on success: the message comes back as a MSG line, like everyone else's.
        match announce(&self.ctx, topic.as_str(), "say", &nick, text).await {
            Ok(()) => Reply::Lines(Vec::new()),
            Err(error) => one(format!("-ERR {error}")),
        }
    }

    /// Leaves everything: rooms are told the user left (if this was their last connection).
    pub(crate) async fn close(mut self) {
        if let Some(nick) = self.nick.take() {
            for room in self.ctx.presence.disconnect(&nick, self.id) {
                if let Some(topic) = Self::room_topic(&room) {
                    let _ = announce(&self.ctx, topic.as_str(), "part", &nick, "").await;
                }
            }
            self.ctx.nicks.release(&nick, self.id);
        }
    }
}

async fn announce(
    ctx: &LineContext,
    topic: &str,
    kind: &str,
    nick: &str,
    text: &str,
) -> Result<(), weir_pubsub::PublishError> {
    let payload = serde_json::json!({ "kind": kind, "nick": nick, "text": text }).to_string();
    ctx.hub
        .publish_wait(topic, payload.into_bytes().into())
        .await
        .map(|_| ())
}
