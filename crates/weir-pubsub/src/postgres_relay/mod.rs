//! Several nodes as one hub: with `--database postgres://…`, a message published on one
//! node reaches subscribers on every node, through PostgreSQL's `LISTEN/NOTIFY`, or, between
//! nodes that have a route address, over direct TCP links ([`routes`]) that PostgreSQL
//! introduces.
//!
//! ```text
//!  publish on node A ─► hub A ─► Relay::forward ──(bounded queue)──► sender task ─► pg_notify('weir_pubsub', …)
//!                                                                                         │
//!  subscriber on B ◄── hub B ◄── Hub::publish_relayed ◄── reassembler ◄── listener task ◄─┘
//! ```
//!
//! - **Only what is wanted is sent.** Each node keeps the topics and patterns its
//!   subscribers want in the table `pubsub_node` and says `NOTIFY weir_pubsub_interest`
//!   when that changes; the others reload it. A node sends a message only when some other
//!   node wants its topic, so a cluster whose subscribers are all on the publishing node
//!   (or a jobs-only cluster) sends nothing. What is sent reaches every listening node
//!   (that is how `NOTIFY` works); a node that does not want it drops it on arrival.
//! - **At most once, and counted.** Like Redis's pub/sub, a notification reaches the nodes
//!   listening at the time. Messages lost while a node's listening connection was down are
//!   counted from the gap in the sender's numbers (`weir_pubsub_relay_lost_total`); local
//!   messages that could not be sent (the queue full, the message larger than
//!   [`wire::MAX_PAYLOAD`], the database failing) are counted as dropped. A publish never
//!   waits for other nodes.
//! - **A silent connection is noticed.** TCP keepalives on both connections, a deadline on
//!   every statement, and a ping the sender sends to its own listener on every heartbeat:
//!   a listener that hears no ping for three heartbeats connects again.
//! - **Offsets are per node.** Each node appends what it receives to its own logs, so a
//!   message has a different offset (and epoch) on each node; a client that reconnects to
//!   another node with a position is told with a reset notice, as after a restart.
//!   Durable topics are not relayed: they are one log in PostgreSQL
//!   ([`crate::postgres_store`]), and this task's listening connection also hears their
//!   commits (`weir_pubsub_durable`) and has the hub read them.

mod counts;
mod queue;
mod route_wire;
mod routes;
mod wire;

pub use routes::RouteOptions;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_postgres::{Client, Statement};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_db::postgres::{migrate, within, Connector};
use weir_db::{DbError, Migrations};

use crate::postgres_store::DURABLE_CHANNEL;
use crate::{Hub, Interest, Relay, RelayStats, TopicName, TopicPattern};

use counts::Counts;
use queue::{bounded, OutboundQueue, QueueReceiver, QUEUE_BYTES, QUEUE_MESSAGES};
use route_wire::RouteKey;
use routes::Routes;
use wire::{Encoder, Outbound, Reassembler};

/// The channel messages travel on.
const MESSAGES: &str = "weir_pubsub";
/// The channel a node with routes sends on, for the nodes without: those listen to both,
/// nodes with routes to [`MESSAGES`] only (their peers with routes reach them directly).
const ROUTED: &str = "weir_pubsub_routed";
/// The channel on which a node says its interest changed.
const INTEREST: &str = "weir_pubsub_interest";
/// One statement (one transaction) carries at most this many messages, and stops taking
/// more once its notifications reach [`BATCH_BYTES`]. A transaction's notifications are
/// written under PostgreSQL's one notify lock, so a batch stays small enough not to hold
/// up everyone else's (the job store's wake-ups included).
const BATCH_MESSAGES: u64 = 256;
const BATCH_BYTES: usize = 4 << 20;
/// Statements of messages sent and not yet answered, at most. One at a time held the relay
/// to one round trip and commit per batch (bench/pubsub/cluster.sh).
const PIPELINE: usize = 4;
/// A statement of messages on its way.
struct InFlight {
    /// Messages it carries.
    messages: u64,
    /// Its answer, once it comes.
    answer: Pin<Box<dyn Future<Output = Result<(), DbError>> + Send>>,
}

/// A statement's answer, with the messages it carried.
type Answer = (u64, Result<(), DbError>);

/// The answer of the oldest statement in flight (answers come in the order sent).
async fn front(in_flight: &mut VecDeque<InFlight>) -> Answer {
    match in_flight.front_mut() {
        Some(statement) => (statement.messages, statement.answer.as_mut().await),
        None => std::future::pending().await,
    }
}

/// Polls `statement` once (sending it); its answer if it already has one.
async fn poll_once(statement: &mut InFlight) -> Option<Answer> {
    std::future::poll_fn(|cx| match statement.answer.as_mut().poll(cx) {
        Poll::Ready(answer) => Poll::Ready(Some((statement.messages, answer))),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// How often a node refreshes its row, reloads the others', and pings its listener.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A node whose row was not refreshed for this long is taken to be gone.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(15);
/// Deadline for connecting, for each statement, and for the goodbye at shutdown.
const DEADLINE: Duration = Duration::from_secs(10);
/// Wait before connecting again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// Why the relay could not start or lost its connection.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The hub already relays elsewhere.
    #[error("the hub already has a relay")]
    HubHasRelay,
    /// The database could not be reached, failed, or did not answer in time.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The route address could not be listened on, or cannot be dialled as given.
    #[error("route address {addr}: {reason}")]
    Route {
        /// The address asked for.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

impl From<tokio_postgres::Error> for RelayError {
    fn from(error: tokio_postgres::Error) -> RelayError {
        RelayError::Database(error.into())
    }
}

impl RelayError {
    /// Whether the connection is unusable (else only the statement failed).
    fn lost_connection(&self) -> bool {
        match self {
            RelayError::Database(error) => error.lost_connection(),
            RelayError::HubHasRelay | RelayError::Route { .. } => true,
        }
    }
}

/// The relay's table: what each node's subscribers want, so that other nodes send only
/// that. A step is never removed or edited: databases count them.
const MIGRATIONS: Migrations = Migrations {
    component: "pubsub_relay",
    steps: &[
        // 1: each node's interest. `IF NOT EXISTS`: the job store's step 3 made this table
        // before the relay had migrations of its own.
        "CREATE TABLE IF NOT EXISTS pubsub_node (
            node BIGINT PRIMARY KEY,
            interest TEXT[] NOT NULL,
            seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );",
        // 2: routes. Each node's route address (NULL: it relays through PostgreSQL), and
        // the cluster's route secret, made by the first node that needs it.
        "ALTER TABLE pubsub_node ADD COLUMN IF NOT EXISTS route TEXT;
        CREATE TABLE pubsub_route_secret (
            only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
            secret BYTEA NOT NULL
        );",
    ],
};

/// The relay of one node, set on the hub by [`start`]; its counts go to `/metrics`.
#[derive(Debug)]
pub struct PostgresRelay {
    node: u64,
    /// Messages for the nodes reached through PostgreSQL.
    outbound: OutboundQueue,
    /// What the other nodes want, and the way to each.
    peers: RwLock<Arc<Peers>>,
    counts: Arc<Counts>,
}

/// The other live nodes, as the sender last loaded them.
#[derive(Debug, Default)]
struct Peers {
    /// What the nodes reached through PostgreSQL want, together (one notification reaches
    /// them all).
    through_database: Interest,
    /// The nodes reached by a route, each with what it wants.
    routed: Vec<RoutedPeer>,
    nodes: u64,
}

#[derive(Debug)]
struct RoutedPeer {
    interest: Interest,
    link: Arc<OutboundQueue>,
}

impl Relay for PostgresRelay {
    fn forward(&self, topic: &TopicName, payload: &Bytes, only_if_exists: bool) {
        let peers = Arc::clone(&self.peers.read().unwrap_or_else(|e| e.into_inner()));
        let by_database = peers.through_database.wants(topic);
        let mut routed = peers
            .routed
            .iter()
            .filter(|peer| peer.interest.wants(topic))
            .peekable();
        if !by_database && routed.peek().is_none() {
            return;
        }
        if payload.len() > wire::MAX_PAYLOAD {
            self.counts.dropped(1, "larger than the relay carries");
            return;
        }
        let message = Outbound {
            topic: topic.clone(),
            payload: payload.clone(),
            only_if_exists,
        };
        for peer in routed {
            if let Err(why) = peer.link.push(message.clone()) {
                self.counts.dropped(1, why);
            }
        }
        if by_database {
            if let Err(why) = self.outbound.push(message) {
                self.counts.dropped(1, why);
            }
        }
    }

    fn stats(&self) -> RelayStats {
        RelayStats {
            sent: self.counts.sent.load(Ordering::Relaxed),
            received: self.counts.received.load(Ordering::Relaxed),
            dropped: self.counts.dropped.load(Ordering::Relaxed),
            lost: self.counts.lost.load(Ordering::Relaxed),
            peers: self.peers.read().unwrap_or_else(|e| e.into_inner()).nodes,
        }
    }
}

impl PostgresRelay {
    fn new(outbound: OutboundQueue) -> PostgresRelay {
        PostgresRelay {
            node: fastrand::u64(..),
            outbound,
            peers: RwLock::default(),
            counts: Arc::default(),
        }
    }
}

/// A running relay: its counts, and its tasks to stop.
#[derive(Debug)]
pub struct RelayHandle {
    node: u64,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl RelayHandle {
    /// This node's id among the nodes (random at each start): what its row in
    /// `pubsub_node` is keyed by, refreshed while the relay runs.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// Stops relaying once the server has drained (messages published while it drained
    /// still go out): says goodbye to the other nodes and waits for the tasks.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tasks.close();
        // Each step inside has its own deadline; this bounds their sum (a database that
        // answers slowly at every step), so a stop never holds the exit for long.
        let _ = tokio::time::timeout(DEADLINE, self.tasks.wait()).await;
    }
}

impl Drop for RelayHandle {
    /// A handle dropped without `stop` (the server failed, or its future was dropped)
    /// stops the tasks all the same: they have no owner left.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts relaying `hub`'s messages through the PostgreSQL at `url`, keeping the relay's
/// table in `schema` (created and migrated here, so a database that cannot be used is
/// reported at start), and with `routes`, straight to the other nodes that have routes
/// too (its address is listened on here, so one that is taken is reported at start).
/// Then connects in the background, and again after any failure, until
/// [`RelayHandle::stop`].
pub async fn start(
    url: &str,
    schema: &str,
    hub: Hub,
    routes: Option<RouteOptions>,
) -> Result<RelayHandle, RelayError> {
    let connector = Connector::parse(url)?.in_schema(schema)?;
    connector.create_schema().await?;
    let mut setup = connector.connect().await?;
    migrate(&mut setup, &MIGRATIONS).await?;
    let route_listener = match &routes {
        Some(options) => Some(listen_for_routes(options, &setup, schema).await?),
        None => None,
    };
    drop(setup);
    // Both bounded (QUEUE_MESSAGES and QUEUE_BYTES): past them `forward` drops and counts.
    let (outbound, queue) = bounded(QUEUE_MESSAGES, QUEUE_BYTES);
    let relay = Arc::new(PostgresRelay::new(outbound));
    if !hub.set_relay(relay.clone()) {
        return Err(RelayError::HubHasRelay);
    }
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let reload = Arc::new(Notify::new());
    let routes = route_listener.map(|(listener, key, advertise)| {
        tracing::info!(listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), advertise, "pub/sub routes listening");
        tasks.spawn(routes::accept(
            listener,
            key.clone(),
            relay.node,
            hub.clone(),
            relay.counts.clone(),
            stop.clone(),
            tasks.clone(),
        ));
        Arc::new(Routes::new(
            key,
            relay.node,
            advertise,
            relay.counts.clone(),
            stop.clone(),
            tasks.clone(),
        ))
    });
    let has_routes = routes.is_some();
    let sender = Sender {
        connector: connector.clone(),
        schema: schema.to_owned(),
        relay: relay.clone(),
        hub: hub.clone(),
        reload: reload.clone(),
        stop: stop.clone(),
        channel: if has_routes { ROUTED } else { MESSAGES },
        routes,
    };
    tasks.spawn(sender.run(queue));
    let node = relay.node;
    tasks.spawn(listen(
        connector,
        relay,
        hub,
        reload,
        has_routes,
        stop.clone(),
    ));
    Ok(RelayHandle { node, stop, tasks })
}

/// Listens on the route address, works out the address to advertise, and reads the
/// cluster's route secret (making it if this is the first node with routes).
async fn listen_for_routes(
    options: &RouteOptions,
    client: &Client,
    schema: &str,
) -> Result<(tokio::net::TcpListener, RouteKey, String), RelayError> {
    let refused = |reason: String| RelayError::Route {
        addr: options.listen.to_string(),
        reason,
    };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|error| refused(format!("cannot listen: {error}")))?;
    let bound = listener
        .local_addr()
        .map_err(|error| refused(error.to_string()))?;
    let advertise = match &options.advertise {
        Some(advertise) => advertise.clone(),
        None if bound.ip().is_unspecified() => {
            return Err(refused(
                "listening on every interface, other nodes need the address to dial: set the route advertise address".into(),
            ))
        }
        None => bound.to_string(),
    };
    let made = route_wire::new_secret();
    within(client.execute(
        &format!(
            "INSERT INTO {schema}.pubsub_route_secret (secret) VALUES ($1) ON CONFLICT DO NOTHING"
        ),
        &[&&made[..]],
    ))
    .await?;
    let row = within(client.query_one(
        &format!("SELECT secret FROM {schema}.pubsub_route_secret"),
        &[],
    ))
    .await?;
    let secret: Vec<u8> = row.try_get(0)?;
    Ok((listener, RouteKey::new(&secret), advertise))
}

/// The channel on which node `node`'s sender pings its own listener.
fn ping_channel(node: u64) -> String {
    format!("weir_pubsub_ping_{node:x}")
}

/// The sending connection's statements, with the schema in place. Prepared once per
/// connection: `execute` with SQL text prepares it again on every call, a second round trip
/// for each batch of messages.
#[derive(Debug)]
struct Statements {
    notify_batch: Statement,
    notify: Statement,
    announce: Statement,
    refresh: Statement,
    peers: Statement,
    goodbye: Statement,
}

impl Statements {
    async fn prepare(client: &Client, schema: &str) -> Result<Statements, RelayError> {
        let prepare = |sql: String| async move {
            within(client.prepare(&sql)).await.map_err(RelayError::from)
        };
        Ok(Statements {
            notify_batch: prepare(
                "SELECT pg_notify($1, n) FROM unnest($2::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i"
                    .into(),
            )
            .await?,
            notify: prepare("SELECT pg_notify($1, $2)".into()).await?,
            announce: prepare(format!(
                "INSERT INTO {schema}.pubsub_node (node, interest, route, seen_at) VALUES ($1, $2, $3, now())
                 ON CONFLICT (node) DO UPDATE
                 SET interest = excluded.interest, route = excluded.route, seen_at = now()"
            ))
            .await?,
            refresh: prepare(format!(
                "UPDATE {schema}.pubsub_node SET seen_at = now() WHERE node = $1"
            ))
            .await?,
            peers: prepare(format!(
                "SELECT node, interest, route FROM {schema}.pubsub_node
                 WHERE node <> $1 AND seen_at > now() - make_interval(secs => $2)"
            ))
            .await?,
            goodbye: prepare(format!(
                "DELETE FROM {schema}.pubsub_node
                 WHERE node = $1 OR seen_at < now() - interval '1 hour'"
            ))
            .await?,
        })
    }
}

/// The sending connection and what belongs to it.
struct Sending {
    /// Shared with the statements in flight, which outlive a turn of the sender's loop.
    client: Arc<Client>,
    statements: Statements,
    /// The database's encoding is not UTF-8: only ASCII may go as text.
    ascii_only: bool,
}

impl Sending {
    async fn connect(connector: &Connector, schema: &str) -> Result<Sending, RelayError> {
        let client = connector.connect().await?;
        let encoding = within(client.query_one("SHOW server_encoding", &[])).await?;
        let utf8 = encoding
            .try_get::<_, String>(0)
            .is_ok_and(|e| e.eq_ignore_ascii_case("UTF8"));
        let statements = Statements::prepare(&client, schema).await?;
        Ok(Sending {
            client: Arc::new(client),
            statements,
            ascii_only: !utf8,
        })
    }
}

/// The task that owns the sending connection: it sends the queued messages, keeps this
/// node's interest in the table, reloads the other nodes', and pings its own listener.
struct Sender {
    connector: Connector,
    schema: String,
    relay: Arc<PostgresRelay>,
    hub: Hub,
    reload: Arc<Notify>,
    stop: CancellationToken,
    /// The channel its notifications of messages go on.
    channel: &'static str,
    /// This node's routes, if it has any.
    routes: Option<Arc<Routes>>,
}

impl Sender {
    async fn run(self, mut queue: QueueReceiver) {
        let mut interest_changes = self.hub.interest_changes();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        // After a stall, one heartbeat, not a burst of them.
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut seq = 0u64;
        let mut sending: Option<Sending> = None;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        loop {
            let Some(connected) = &sending else {
                match Sending::connect(&self.connector, &self.schema).await {
                    Ok(connected) => {
                        // A fresh connection tells the others this node's interest at once.
                        interest_changes.mark_changed();
                        sending = Some(connected);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "pub/sub relay cannot connect to PostgreSQL");
                        tokio::select! {
                            () = self.stop.cancelled() => return,
                            () = tokio::time::sleep(RETRY) => {}
                        }
                    }
                }
                continue;
            };
            let outcome = tokio::select! {
                () = self.stop.cancelled() => {
                    self.finish_in_flight(&mut in_flight).await;
                    self.send_what_is_left(connected, &mut queue, &mut seq).await;
                    let _ = self.goodbye(connected).await;
                    return;
                }
                answer = front(&mut in_flight), if !in_flight.is_empty() => {
                    in_flight.pop_front();
                    self.answered(answer)
                }
                first = queue.recv(), if in_flight.len() < PIPELINE => match first {
                    Some(first) => {
                        let mut statement = self.dispatch(connected, first, &mut queue, &mut seq);
                        // Polled once now, so that it goes out behind the ones before it
                        // (a statement is sent when first polled); its answer is taken in
                        // turn, from the front.
                        match poll_once(&mut statement).await {
                            Some(answer) => self.answered(answer),
                            None => {
                                in_flight.push_back(statement);
                                Ok(())
                            }
                        }
                    }
                    None => return,
                },
                changed = interest_changes.changed() => match changed {
                    Ok(()) => self.announce(connected).await,
                    Err(_) => return,
                },
                () = self.reload.notified() => self.load_peers(connected).await,
                _ = heartbeat.tick() => self.heartbeat(connected).await,
            };
            if let Err(error) = outcome {
                if error.lost_connection() {
                    tracing::warn!(%error, "pub/sub relay lost its PostgreSQL connection");
                    // What was in flight on it is lost with it: its answers would only be
                    // this same error. (The receivers count it too, from the gap.)
                    for statement in in_flight.drain(..) {
                        self.relay
                            .counts
                            .dropped(statement.messages, "the database connection was lost");
                    }
                    sending = None;
                } else {
                    tracing::warn!(%error, "pub/sub relay statement failed");
                }
            }
        }
    }

    /// `first` and whatever else is queued, up to [`BATCH_MESSAGES`] and [`BATCH_BYTES`],
    /// as one statement (one transaction, so a message cut into parts arrives in one
    /// piece), not yet sent: it goes when first polled.
    fn dispatch(
        &self,
        sending: &Sending,
        first: Outbound,
        queue: &mut QueueReceiver,
        seq: &mut u64,
    ) -> InFlight {
        let mut encoder = Encoder::new(self.relay.node, sending.ascii_only);
        encoder.push(*seq, &first);
        let mut messages = 1u64;
        while messages < BATCH_MESSAGES && encoder.bytes() < BATCH_BYTES {
            let Some(next) = queue.try_recv() else { break };
            encoder.push(*seq + messages, &next);
            messages += 1;
        }
        // The numbers are used up whatever happens to the statement: one whose answer was
        // lost may have committed, and numbers used twice would make receivers skip the
        // later messages as repeats. What did not go out shows on the receivers as lost.
        *seq += messages;
        let notifications = encoder.finish();
        let (client, statement, channel) = (
            sending.client.clone(),
            sending.statements.notify_batch.clone(),
            self.channel,
        );
        InFlight {
            messages,
            answer: Box::pin(async move {
                within(client.execute(&statement, &[&channel, &notifications]))
                    .await
                    .map(drop)
            }),
        }
    }

    /// Counts a statement's answer: its messages sent, or dropped.
    fn answered(&self, (messages, sent): Answer) -> Result<(), RelayError> {
        match sent {
            Ok(()) => {
                self.relay.counts.sent(messages);
                Ok(())
            }
            Err(error) => {
                self.relay.counts.dropped(messages, "the database failed");
                Err(error.into())
            }
        }
    }

    /// At stop: waits (within half of [`DEADLINE`]) for the statements in flight.
    async fn finish_in_flight(&self, in_flight: &mut VecDeque<InFlight>) {
        let until = Instant::now() + DEADLINE / 2;
        while let Some(statement) = in_flight.pop_front() {
            let messages = statement.messages;
            match tokio::time::timeout_at(until, statement.answer).await {
                Ok(sent) => {
                    let _ = self.answered((messages, sent));
                }
                Err(_) => {
                    let left = messages + in_flight.drain(..).map(|s| s.messages).sum::<u64>();
                    self.relay.counts.dropped(
                        left,
                        "the relay stopped before their statements were answered",
                    );
                    return;
                }
            }
        }
    }

    /// Sends `first` and whatever else is queued, up to [`BATCH_MESSAGES`] and
    /// [`BATCH_BYTES`], in one statement, and waits for it.
    async fn send(
        &self,
        sending: &Sending,
        first: Outbound,
        queue: &mut QueueReceiver,
        seq: &mut u64,
    ) -> Result<(), RelayError> {
        let statement = self.dispatch(sending, first, queue, seq);
        let sent = statement.answer.await;
        self.answered((statement.messages, sent))
    }

    /// At stop: sends what is still queued (published while the server drained), for at
    /// most half of [`DEADLINE`]; counts what could not go as dropped.
    async fn send_what_is_left(&self, sending: &Sending, queue: &mut QueueReceiver, seq: &mut u64) {
        let until = Instant::now() + DEADLINE / 2;
        while let Some(first) = queue.try_recv() {
            let sent = tokio::time::timeout_at(until, self.send(sending, first, queue, seq)).await;
            if !matches!(sent, Ok(Ok(()))) {
                self.relay
                    .counts
                    .dropped(queue.drain(), "the relay stopped before it could send them");
                return;
            }
        }
    }

    /// Writes this node's interest and tells the others it changed.
    async fn announce(&self, sending: &Sending) -> Result<(), RelayError> {
        let interest = self.hub.interest_names();
        let route = self.routes.as_ref().map(|routes| routes.advertise.as_str());
        within(sending.client.execute(
            &sending.statements.announce,
            &[&(self.relay.node as i64), &interest, &route],
        ))
        .await?;
        self.notify(sending, INTEREST).await
    }

    /// Pings this node's listener, refreshes this node's row (writing the whole interest
    /// only when the row is gone), and reloads the other nodes'.
    async fn heartbeat(&self, sending: &Sending) -> Result<(), RelayError> {
        // The ping first: the listener's watchdog must not depend on the statements below.
        self.notify(sending, &ping_channel(self.relay.node)).await?;
        let refresh = &sending.statements.refresh;
        let refreshed = within(
            sending
                .client
                .execute(refresh, &[&(self.relay.node as i64)]),
        )
        .await?;
        if refreshed == 0 {
            self.announce(sending).await?;
        }
        self.load_peers(sending).await
    }

    /// Says `NOTIFY channel` with this node's id.
    async fn notify(&self, sending: &Sending, channel: &str) -> Result<(), RelayError> {
        let node = format!("{:x}", self.relay.node);
        within(
            sending
                .client
                .execute(&sending.statements.notify, &[&channel, &node]),
        )
        .await?;
        Ok(())
    }

    /// Removes this node's row (and any left by nodes gone for an hour), and tells the
    /// others, so that they stop sending to it at once rather than at their next reload.
    async fn goodbye(&self, sending: &Sending) -> Result<(), RelayError> {
        let goodbye = &sending.statements.goodbye;
        within(
            sending
                .client
                .execute(goodbye, &[&(self.relay.node as i64)]),
        )
        .await?;
        self.notify(sending, INTEREST).await
    }

    /// Reloads what the other nodes (those seen within [`PEER_TIMEOUT`]) want.
    async fn load_peers(&self, sending: &Sending) -> Result<(), RelayError> {
        let rows = within(sending.client.query(
            &sending.statements.peers,
            &[&(self.relay.node as i64), &PEER_TIMEOUT.as_secs_f64()],
        ))
        .await?;
        let nodes = rows.len() as u64;
        let mut database_patterns = Vec::new();
        let mut routed = Vec::new();
        for row in &rows {
            let patterns = row
                .try_get::<_, Vec<Option<String>>>(1)
                .unwrap_or_default()
                .into_iter()
                .flatten()
                .filter_map(|pattern| TopicPattern::new(&pattern).ok());
            // A peer with a route is reached by it when this node has routes too.
            match row.try_get::<_, Option<String>>(2).ok().flatten() {
                Some(route) if self.routes.is_some() => {
                    let node = row.try_get::<_, i64>(0).unwrap_or_default() as u64;
                    routed.push((node, route, Interest::new(patterns)));
                }
                _ => database_patterns.extend(patterns),
            }
        }
        let links = match &self.routes {
            Some(routes) => {
                let targets: Vec<(u64, String)> = routed
                    .iter()
                    .map(|(node, route, _)| (*node, route.clone()))
                    .collect();
                routes.links(&targets)
            }
            None => Vec::new(),
        };
        let peers = Peers {
            through_database: Interest::new(database_patterns),
            routed: routed
                .into_iter()
                .zip(links)
                .map(|((_, _, interest), link)| RoutedPeer { interest, link })
                .collect(),
            nodes,
        };
        *self.relay.peers.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(peers);
        Ok(())
    }
}

/// The task that listens for other nodes' messages and interest, and publishes their
/// messages on `hub`. Listens again after any failure, or when its own sender's pings stop
/// arriving (a connection that died silently).
async fn listen(
    connector: Connector,
    relay: Arc<PostgresRelay>,
    hub: Hub,
    reload: Arc<Notify>,
    has_routes: bool,
    stop: CancellationToken,
) {
    // Nodes with routes send to this node through PostgreSQL only if it has none.
    let routed = if has_routes {
        String::new()
    } else {
        format!(" LISTEN {ROUTED};")
    };
    let mut reassembler = Reassembler::new(relay.node);
    let own = format!("{:x}", relay.node);
    let ping = ping_channel(relay.node);
    let silence = HEARTBEAT * 3;
    loop {
        // Bounded (1,024): while it is full the connection is not read and PostgreSQL
        // holds the notifications in its queue, shared by the whole database; handling one
        // only decodes it and appends to in-memory logs, so it never stays full for long.
        let (sender, mut notifications) = mpsc::channel(1024);
        let listening = match connector.connect_listening(sender).await {
            Ok(client) => within(client.batch_execute(&format!(
                "LISTEN {MESSAGES};{routed} LISTEN {INTEREST}; LISTEN {ping}; LISTEN {DURABLE_CHANNEL}"
            )))
            .await
            .map(|()| client),
            Err(error) => Err(error),
        };
        match listening {
            Ok(_client) => {
                // The others' interest may have changed while this node was not listening,
                // and durable topics in a shared store may have grown.
                reload.notify_one();
                hub.catch_up_all().await;
                let mut heard = Instant::now();
                loop {
                    let notification = tokio::select! {
                        // What has arrived is handled before the watchdog may fire.
                        biased;
                        notification = notifications.recv() => notification,
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep_until(heard + silence) => {
                            tracing::warn!(?silence, "pub/sub relay heard nothing from PostgreSQL; listening again");
                            break;
                        }
                    };
                    let Some(notification) = notification else {
                        tracing::warn!("pub/sub relay stopped listening; listening again");
                        break;
                    };
                    heard = Instant::now();
                    match notification.channel() {
                        MESSAGES | ROUTED => {
                            receive(&mut reassembler, &relay, &hub, notification.payload()).await;
                            // A durable topic's commit may take a while: not silence.
                            heard = Instant::now();
                        }
                        INTEREST if notification.payload() != own => reload.notify_one(),
                        DURABLE_CHANNEL => {
                            // `NAME NEXT_OFFSET`: a durable topic grew (here too: then the
                            // catch-up finds nothing to do).
                            if let Some((topic, next)) = notification.payload().split_once(' ') {
                                if let Ok(next) = next.parse() {
                                    hub.catch_up(topic, next).await;
                                }
                            }
                        }
                        _ => {} // its own interest, or its ping: heard is enough
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "pub/sub relay cannot listen"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Handles one notification on the message channel.
async fn receive(reassembler: &mut Reassembler, relay: &PostgresRelay, hub: &Hub, payload: &str) {
    let fed = reassembler.feed(payload);
    if fed.lost > 0 {
        let total = relay
            .counts
            .lost
            .fetch_add(fed.lost, Ordering::Relaxed)
            .saturating_add(fed.lost);
        tracing::warn!(
            lost = fed.lost,
            total,
            "messages from other nodes lost on the way (this node was not listening)"
        );
    }
    if fed.malformed {
        tracing::debug!(
            payload,
            "pub/sub relay ignored a notification it cannot read"
        );
    }
    relay.counts.received(fed.messages.len() as u64);
    for message in fed.messages {
        let published = hub
            .publish_relayed(&message.topic, message.payload, message.only_if_exists)
            .await;
        if let Err(error) = published {
            tracing::debug!(topic = message.topic, %error, "message from another node not published");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_wanting_everything(queue: usize) -> (PostgresRelay, QueueReceiver) {
        let (outbound, receiver) = bounded(queue, QUEUE_BYTES);
        let relay = PostgresRelay::new(outbound);
        let everything = Interest::new([TopicPattern::new(">").unwrap()]);
        *relay.peers.write().unwrap() = Arc::new(Peers {
            through_database: everything,
            routed: Vec::new(),
            nodes: 1,
        });
        (relay, receiver)
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_a_publisher_never_waits() {
        let topic = TopicName::new("a").unwrap();
        // The count bound.
        let (relay, mut queue) = relay_wanting_everything(2);
        for _ in 0..3 {
            relay.forward(&topic, &Bytes::from("x"), false);
        }
        assert_eq!(relay.stats().dropped, 1);
        // Taken off the queue, the bytes are given back.
        assert_eq!(queue.drain(), 2);
        assert_eq!(relay.outbound.bytes(), 0);

        // The byte bound: 16 MiB messages, the fifth past 64 MiB.
        let (relay, _queue) = relay_wanting_everything(QUEUE_MESSAGES);
        // Each just under 16 MiB with its topic and the queue's own share.
        let big = Bytes::from(vec![b'x'; wire::MAX_PAYLOAD - 1 - size_of::<Outbound>()]);
        for _ in 0..5 {
            relay.forward(&topic, &big, false);
        }
        assert_eq!(relay.stats().dropped, 1);
        assert!(relay.outbound.bytes() <= QUEUE_BYTES);
        // Larger than the relay carries.
        relay.forward(
            &topic,
            &Bytes::from(vec![0u8; wire::MAX_PAYLOAD + 1]),
            false,
        );
        assert_eq!(relay.stats().dropped, 2);

        // A closed queue (the sender stopped): dropped, and its bytes not kept.
        let (relay, queue) = relay_wanting_everything(2);
        drop(queue);
        relay.forward(&topic, &Bytes::from("x"), false);
        assert_eq!(relay.stats().dropped, 1);
        assert_eq!(relay.outbound.bytes(), 0);

        // What no other node wants is not queued at all.
        let (outbound, mut queue) = bounded(2, QUEUE_BYTES);
        let relay = PostgresRelay::new(outbound);
        relay.forward(&topic, &Bytes::from("x"), false);
        assert!(queue.try_recv().is_none());
        assert_eq!(relay.stats().dropped, 0);
    }
}
