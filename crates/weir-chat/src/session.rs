//! One client's chat and pub/sub state, whatever the transport: typed commands in, typed
//! replies out, and the events of its rooms and topics in the transport's encoding.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use weir_auth::Access;
use weir_pubsub::{Message, PresenceChange, StartFrom, TopicName};

use crate::feed_key::FeedKey;
use crate::feeds::Feeds;
use crate::render::Encoding;
use crate::{ChatContext, ChatError, Command, Reply};

/// What running a command gave: its reply, or (a publish to a durable topic, handled with
/// [`Session::handle_pipelined`]) the reply to come once the message is committed.
pub enum Handled {
    /// The reply, known now.
    Now(Result<Reply, ChatError>),
    /// The reply, once the store has committed the message.
    Later(Pin<Box<dyn Future<Output = Result<Reply, ChatError>> + Send>>),
}

impl std::fmt::Debug for Handled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handled::Now(reply) => f.debug_tuple("Now").field(reply).finish(),
            Handled::Later(_) => f.write_str("Later"),
        }
    }
}

/// The reply to a publish of `message` on `topic`.
fn published(topic: String, message: &Message) -> Reply {
    Reply::Published {
        topic,
        offset: message.offset(),
        epoch: message.epoch(),
    }
}

/// One client's session. A transport makes one per connection, feeds it commands with
/// [`Session::handle`], writes what [`Session::next_events`] yields, and ends it with
/// [`Session::close`].
pub struct Session {
    id: u64,
    /// The transport and peer address (`line 127.0.0.1:5555`), shared with the
    /// subscriptions as their label in the slow-subscriber report.
    peer: Arc<str>,
    encoding: Encoding,
    nick: Option<String>,
    feeds: Feeds,
    ctx: Arc<ChatContext>,
    /// The scopes this client holds: all on an open server, none until it authenticates.
    access: Access,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("nick", &self.nick)
            .field("feeds", &self.feeds.len())
            .finish()
    }
}

impl Session {
    /// A session for connection `id` (from [`ChatContext::connection_id`]) whose events
    /// are written in `encoding`, holding `access`.
    pub fn new(
        id: u64,
        peer: Arc<str>,
        encoding: Encoding,
        ctx: Arc<ChatContext>,
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

    /// When the client's access ends (a signed token's expiry): the transport ends the
    /// session then.
    pub fn expires_at(&self) -> Option<std::time::SystemTime> {
        self.access.expires_at()
    }

    /// Whether the client holds any scope: always on an open server, after `AUTH` else.
    pub fn is_authenticated(&self) -> bool {
        self.access.is_authenticated()
    }

    /// Events ready on this client's subscriptions, up to `max`, in its encoding; waits
    /// for the next when none is ready. Cancel-safe.
    pub async fn next_events(&mut self, max: usize) -> Vec<Bytes> {
        let encoding = self.encoding;
        poll_fn(|cx| self.feeds.poll_batch(cx, encoding, max)).await
    }

    /// Runs one command. One that needs a scope the client lacks ([`Command::scope`]) is
    /// refused with [`ChatError::Denied`] and changes nothing.
    pub async fn handle(&mut self, command: Command) -> Result<Reply, ChatError> {
        if let Some(scope) = command.scope() {
            self.access.require(scope).map_err(ChatError::Denied)?;
        }
        match command {
            Command::Help => Ok(Reply::Help),
            Command::Quit => Ok(Reply::Quit),
            Command::Auth(token) => self.authenticate(&token),
            Command::Nick(_) if !self.access.is_authenticated() => {
                Err(ChatError::AuthenticateFirst)
            }
            Command::Nick(nick) => self.nick(nick).await,
            Command::Join(room) => self.join(room).await,
            Command::Part(room) => self.part(room).await,
            Command::Say { room, text } => self.say(&room, &text).await,
            Command::Who(room) => {
                let nicks = self.members(&room).await?;
                Ok(Reply::Members { room, nicks })
            }
            Command::Subscribe { pattern, from } => {
                self.access.may_subscribe(&pattern).map_err(denied)?;
                self.subscribe(&pattern, from).await?;
                Ok(Reply::Subscribed(pattern))
            }
            Command::Unsubscribe(pattern) => {
                if !self.feeds.remove(&FeedKey::Topic(pattern.clone())) {
                    return Err(ChatError::NotSubscribed(pattern));
                }
                Ok(Reply::Unsubscribed(pattern))
            }
            Command::Publish { topic, payload } => {
                self.access.may_publish(&topic).map_err(denied)?;
                let message = self.publish(&topic, payload).await?;
                Ok(published(topic, &message))
            }
        }
    }

    /// Runs one command as [`Session::handle`] does, except that a publish to a durable
    /// topic returns once it is queued for its commit, its reply to come: a transport
    /// that reads pipelined commands goes on with the next (and its publishes share the
    /// commit) and writes the replies in order as they come.
    pub async fn handle_pipelined(&mut self, command: Command) -> Handled {
        let Command::Publish { topic, payload } = command else {
            return Handled::Now(self.handle(command).await);
        };
        if let Err(error) = self.access.may_publish(&topic).map_err(denied) {
            return Handled::Now(Err(error));
        }
        let answer = match self.ctx.hub.publish_submit(&topic, payload).await {
            Ok(answer) => answer,
            Err(error) => return Handled::Now(Err(ChatError::Publish(error))),
        };
        match answer.into_ready() {
            Ok(result) => Handled::Now(
                result
                    .map(|message| published(topic, &message))
                    .map_err(ChatError::Publish),
            ),
            Err(committing) => Handled::Later(Box::pin(async move {
                committing
                    .await
                    .map(|message| published(topic, &message))
                    .map_err(ChatError::Publish)
            })),
        }
    }

    fn authenticate(&mut self, token: &str) -> Result<Reply, ChatError> {
        if self.ctx.config.tokens.is_open() {
            return Ok(Reply::Open);
        }
        match self.ctx.config.tokens.check(Some(token)) {
            Ok(access) if access.is_authenticated() => {
                self.access = access;
                Ok(Reply::Authenticated)
            }
            Ok(_) => Err(ChatError::InvalidToken("the token grants no scope".into())),
            Err(why) => Err(ChatError::InvalidToken(why)),
        }
    }

    /// Refuses one more room or subscription past the per-connection limit.
    fn check_subscription_limit(&self) -> Result<(), ChatError> {
        let limit = self.ctx.config.max_subscriptions;
        if self.feeds.len() >= limit {
            return Err(ChatError::SubscriptionLimit(limit));
        }
        Ok(())
    }

    /// Subscribes this client to a topic or pattern; its events are forwarded in the
    /// session's encoding.
    async fn subscribe(&mut self, pattern: &str, start: StartFrom) -> Result<(), ChatError> {
        let key = FeedKey::Topic(pattern.to_string());
        if self.feeds.contains(&key) {
            return Err(ChatError::AlreadySubscribed(pattern.to_string()));
        }
        self.check_subscription_limit()?;
        let subscription = self
            .ctx
            .hub
            .subscribe_ready(pattern, start, self.peer.clone())
            .await
            .map_err(ChatError::Subscribe)?;
        self.feeds.insert(key, subscription);
        Ok(())
    }

    /// Publishes `payload` to `topic`; for a durable topic, once the store has it.
    async fn publish(&self, topic: &str, payload: Bytes) -> Result<Message, ChatError> {
        self.ctx
            .hub
            .publish_wait(topic, payload)
            .await
            .map_err(ChatError::Publish)
    }

    async fn nick(&mut self, nick: String) -> Result<Reply, ChatError> {
        if self.nick.as_deref() == Some(nick.as_str()) {
            return Ok(Reply::Nick(nick));
        }
        if self.feeds.has_rooms() {
            return Err(ChatError::PartRoomsFirst);
        }
        if !self.ctx.nicks.claim(&nick, self.id) {
            return Err(ChatError::NicknameTaken(nick));
        }
        // Then across the cluster: a connection of another node may hold it.
        if let Some(directory) = &self.ctx.directory {
            let claimed = directory.claim(&nick, self.id).await;
            if !matches!(claimed, Ok(true)) {
                self.ctx.nicks.release(&nick, self.id);
                return Err(match claimed {
                    Err(why) => ChatError::Directory(why),
                    Ok(_) => ChatError::NicknameTaken(nick),
                });
            }
        }
        if let Some(old) = self.nick.replace(nick.clone()) {
            self.release_nick(&old).await;
        }
        Ok(Reply::Nick(nick))
    }

    /// Gives `nick` back, here and across the cluster.
    async fn release_nick(&self, nick: &str) {
        self.ctx.nicks.release(nick, self.id);
        if let Some(directory) = &self.ctx.directory {
            directory.release(nick, self.id).await;
        }
    }

    /// Who is in `room`: on every node of the cluster, or on this one without a cluster.
    async fn members(&self, room: &str) -> Result<Vec<String>, ChatError> {
        match &self.ctx.directory {
            Some(directory) => directory.members(room).await.map_err(ChatError::Directory),
            None => Ok(self.ctx.presence.members(room)),
        }
    }

    /// A room's topic, `$chat.{room}`: a system topic, so that only the session writes
    /// there (as `SAY` under the speaker's own nickname) and only members read it.
    fn room_topic(room: &str) -> Option<TopicName> {
        if room.contains('.') {
            return None;
        }
        TopicName::new(&format!("{ROOM_TOPIC_PREFIX}{room}")).ok()
    }

    async fn join(&mut self, room: String) -> Result<Reply, ChatError> {
        let nick = self.nick.clone().ok_or(ChatError::NoNickname)?;
        let topic = Self::room_topic(&room).ok_or_else(|| ChatError::BadRoom(room.clone()))?;
        self.access.may_join(topic.as_str()).map_err(denied)?;
        if self.feeds.contains(&FeedKey::Room(room.clone())) {
            return Ok(Reply::AlreadyIn(room));
        }
        self.check_subscription_limit()?;
        let subscription = self
            .ctx
            .hub
            .subscribe(
                topic.as_str(),
                StartFrom::Last(self.ctx.config.history),
                self.peer.clone(),
            )
            .map_err(ChatError::Subscribe)?;
        self.feeds.insert(FeedKey::Room(room.clone()), subscription);
        if let Some(directory) = &self.ctx.directory {
            directory.joined(&room, &nick, self.id).await;
        }
        if self.ctx.presence.join(&room, &nick, self.id) == PresenceChange::Joined {
            let _ = announce(&self.ctx, topic.as_str(), "join", &nick, "").await;
        }
        let here = match self.members(&room).await {
            Ok(members) => members.len(),
            Err(_) => self.ctx.presence.members(&room).len(),
        };
        Ok(Reply::Joined { room, here })
    }

    async fn part(&mut self, room: String) -> Result<Reply, ChatError> {
        if !self.feeds.remove(&FeedKey::Room(room.clone())) {
            return Err(ChatError::NotInRoom(room));
        }
        let nick = self.nick.clone().unwrap_or_default();
        if let Some(directory) = &self.ctx.directory {
            directory.parted(&room, self.id).await;
        }
        if self.ctx.presence.part(&room, &nick, self.id) == PresenceChange::Left {
            if let Some(topic) = Self::room_topic(&room) {
                let _ = announce(&self.ctx, topic.as_str(), "part", &nick, "").await;
            }
        }
        Ok(Reply::Left(room))
    }

    async fn say(&mut self, room: &str, text: &str) -> Result<Reply, ChatError> {
        if !self.feeds.contains(&FeedKey::Room(room.to_string())) {
            return Err(ChatError::SayOutsideRoom(room.to_string()));
        }
        let (Some(nick), Some(topic)) = (self.nick.clone(), Self::room_topic(room)) else {
            return Err(ChatError::NoNickname);
        };
        self.access.may_say(topic.as_str()).map_err(denied)?;
        announce(&self.ctx, topic.as_str(), "say", &nick, text)
            .await
            .map_err(ChatError::Publish)?;
        Ok(Reply::Said)
    }

    /// Leaves everything: rooms are told the user left (if this was their last connection).
    pub async fn close(mut self) {
        if let Some(nick) = self.nick.take() {
            let rooms = self.feeds.rooms();
            for room in self.ctx.presence.disconnect(&nick, self.id) {
                if let Some(topic) = Self::room_topic(&room) {
                    let _ = announce(&self.ctx, topic.as_str(), "part", &nick, "").await;
                }
            }
            if let Some(directory) = &self.ctx.directory {
                for room in &rooms {
                    directory.parted(room, self.id).await;
                }
            }
            self.release_nick(&nick).await;
        }
    }
}

/// Rooms' topics start with this.
pub const ROOM_TOPIC_PREFIX: &str = "$chat.";

/// A refusal to publish or subscribe, as the client is told it.
fn denied(error: weir_auth::TopicDenied) -> ChatError {
    match error {
        weir_auth::TopicDenied::SystemTopic(why) => ChatError::SystemTopic(why),
        other => ChatError::Denied(other.to_string()),
    }
}

/// Publishes a chat event (`{"kind","nick","text"}`) on a room's topic.
async fn announce(
    ctx: &ChatContext,
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

/// Sleeps until `expires_at` (a signed token's expiry, from [`Session::expires_at`]), or
/// for ever without one: a transport ends the session when this returns.
pub async fn until_expired(expires_at: Option<std::time::SystemTime>) {
    match expires_at {
        Some(at) => {
            let left = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(left).await;
        }
        None => std::future::pending().await,
    }
}
