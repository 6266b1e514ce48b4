//! Several nodes as one hub: with `--database postgres://…`, a message published on one
//! node reaches subscribers on every node, through PostgreSQL's `LISTEN/NOTIFY`.
//!
//! ```text
//!  publish on node A ─► hub A ─► Relay::forward ──(bounded queue)──► sender task ─► pg_notify('weir_pubsub', …)
//!                                                                                         │
//!  subscriber on B ◄── hub B ◄── Hub::publish_relayed ◄── reassembler ◄── listener task ◄─┘
//! ```
//!
//! - **Only what is wanted travels.** Each node keeps the topics and patterns its
//!   subscribers want in the table `pubsub_node` and says `NOTIFY weir_pubsub_interest`
//!   when that changes; the others reload it. A node sends a message only when some other
//!   node wants its topic, so a cluster whose subscribers are all on the publishing node
//!   (or a jobs-only cluster) sends nothing.
//! - **At most once, and counted.** Like Redis's pub/sub, a notification reaches the nodes
//!   listening at the time. Messages lost while a node's listening connection was down are
//!   counted from the gap in the sender's numbers (`weir_pubsub_relay_lost_total`); local
//!   messages that could not be sent (the queue of [`OUTBOUND_QUEUE`] full, or the
//!   database failing) are counted as dropped. A publish never waits for other nodes.
//! - **Offsets are per node.** Each node appends what it receives to its own logs, so a
//!   message has a different offset (and epoch) on each node; a client that reconnects to
//!   another node resumes with a gap notice, as after a restart.
//! - Messages of any size up to `pubsub.max_payload` travel: the wire format
//!   ([`wire`]) cuts them into notifications sent in one transaction.

mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification};
use tokio_util::sync::CancellationToken;
use weir_pubsub::{Hub, Interest, Relay, RelayStats, TopicName, TopicPattern};

use wire::{encode, Outbound, Reassembler};

/// The channel messages travel on.
const MESSAGES: &str = "weir_pubsub";
/// The channel on which a node says its interest changed.
const INTEREST: &str = "weir_pubsub_interest";
/// Local messages waiting to be sent; past it they are dropped and counted.
pub const OUTBOUND_QUEUE: usize = 16_384;
/// Messages sent in one statement (one transaction) at most.
const BATCH: u64 = 256;
/// How often a node refreshes its row and reloads the others'.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A node whose row was not refreshed for this long is taken to be gone.
const PEER_TIMEOUT_SECS: i32 = 15;
/// Deadline for connecting, and for the goodbye at shutdown.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait before connecting again after a failure.
const RETRY: Duration = Duration::from_secs(1);

/// The relay of one node. Set on the hub with [`start`]; its counts go to `/metrics`.
#[derive(Debug)]
pub struct PostgresRelay {
    node: u64,
    outbound: mpsc::Sender<Outbound>,
    /// What the other nodes want.
    peers: RwLock<PeerInterest>,
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
}

#[derive(Debug, Default)]
struct PeerInterest {
    interest: Interest,
    nodes: u64,
}

impl Relay for PostgresRelay {
    fn forward(&self, topic: &TopicName, payload: &Bytes, only_if_exists: bool) {
        let wanted = self
            .peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .interest
            .wants(topic);
        if !wanted {
            return;
        }
        let message = Outbound {
            topic: topic.clone(),
            payload: payload.clone(),
            only_if_exists,
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.outbound.try_send(message) {
            self.count_dropped(1, "the queue to other nodes is full");
        }
    }

    fn stats(&self) -> RelayStats {
        RelayStats {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            peers: self.peers.read().unwrap_or_else(|e| e.into_inner()).nodes,
        }
    }
}

impl PostgresRelay {
    /// Counts `n` dropped messages, logging at the first and then at every power of two
    /// (a full queue under load would otherwise log once per message).
    fn count_dropped(&self, n: u64, why: &str) {
        let before = self.dropped.fetch_add(n, Ordering::Relaxed);
        if (before + n).next_power_of_two() != before.next_power_of_two() || before == 0 {
            tracing::warn!(
                dropped = before + n,
                why,
                "messages for other nodes dropped"
            );
        }
    }
}

/// Starts relaying `hub`'s messages through the PostgreSQL at `url`, whose schema `schema`
/// holds the `pubsub_node` table (the job store's migrations create it). Connects in the
/// background, and again after any failure, until `shutdown`.
pub fn start(
    url: &str,
    schema: &str,
    hub: Hub,
    shutdown: CancellationToken,
) -> Result<Arc<PostgresRelay>, String> {
    let config: Config = url.parse().map_err(|error| format!("{error}"))?;
    let (outbound, queue) = mpsc::channel(OUTBOUND_QUEUE);
    let relay = Arc::new(PostgresRelay {
        node: fastrand::u64(..),
        outbound,
        peers: RwLock::default(),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        lost: AtomicU64::new(0),
    });
    if !hub.set_relay(relay.clone()) {
        return Err("the hub already has a relay".into());
    }
    let reload = Arc::new(Notify::new());
    let sender = Sender {
        config: config.clone(),
        tables: Tables::new(schema),
        relay: relay.clone(),
        hub: hub.clone(),
        reload: reload.clone(),
        shutdown: shutdown.clone(),
    };
    tokio::spawn(sender.run(queue));
    tokio::spawn(listen(config, relay.clone(), hub, reload, shutdown));
    Ok(relay)
}

/// The statements, with the schema in place.
#[derive(Debug)]
struct Tables {
    announce: String,
    peers: String,
    goodbye: String,
}

impl Tables {
    fn new(schema: &str) -> Tables {
        Tables {
            announce: format!(
                "INSERT INTO {schema}.pubsub_node (node, interest, seen_at) VALUES ($1, $2, now())
                 ON CONFLICT (node) DO UPDATE SET interest = excluded.interest, seen_at = now()"
            ),
            peers: format!(
                "SELECT interest FROM {schema}.pubsub_node
                 WHERE node <> $1 AND seen_at > now() - make_interval(secs => $2)"
            ),
            goodbye: format!(
                "DELETE FROM {schema}.pubsub_node
                 WHERE node = $1 OR seen_at < now() - interval '1 hour'"
            ),
        }
    }
}

/// The task that owns the sending connection: it sends the queued messages, keeps this
/// node's interest in the table, and reloads the other nodes'.
struct Sender {
    config: Config,
    tables: Tables,
    relay: Arc<PostgresRelay>,
    hub: Hub,
    reload: Arc<Notify>,
    shutdown: CancellationToken,
}

impl Sender {
    async fn run(self, mut queue: mpsc::Receiver<Outbound>) {
        let mut interest_changes = self.hub.interest_changes();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        let mut seq = 0u64;
        let mut client: Option<Client> = None;
        loop {
            let Some(connected) = &client else {
                match connect(&self.config, None).await {
                    Ok(connected) => {
                        // A fresh connection tells the others this node's interest at once.
                        interest_changes.mark_changed();
                        client = Some(connected);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "pub/sub relay cannot connect to PostgreSQL");
                        tokio::select! {
                            () = self.shutdown.cancelled() => return,
                            () = tokio::time::sleep(RETRY) => {}
                        }
                    }
                }
                continue;
            };
            let outcome = tokio::select! {
                () = self.shutdown.cancelled() => {
                    let _ = tokio::time::timeout(CONNECT_TIMEOUT, self.goodbye(connected)).await;
                    return;
                }
                first = queue.recv() => match first {
                    Some(first) => self.send(connected, first, &mut queue, &mut seq).await,
                    None => return,
                },
                changed = interest_changes.changed() => match changed {
                    Ok(()) => self.announce(connected, true).await,
                    Err(_) => return,
                },
                () = self.reload.notified() => self.load_peers(connected).await,
                _ = heartbeat.tick() => match self.announce(connected, false).await {
                    Ok(()) => self.load_peers(connected).await,
                    failed => failed,
                },
            };
            if let Err(error) = outcome {
                tracing::warn!(%error, "pub/sub relay lost its PostgreSQL connection");
                client = None;
            }
        }
    }

    /// Sends `first` and whatever else is queued (up to [`BATCH`]) in one statement: one
    /// transaction, so a message cut into parts arrives in one piece.
    async fn send(
        &self,
        client: &Client,
        first: Outbound,
        queue: &mut mpsc::Receiver<Outbound>,
        seq: &mut u64,
    ) -> Result<(), tokio_postgres::Error> {
        let mut notifications = encode(self.relay.node, *seq, &first);
        let mut messages = 1u64;
        while messages < BATCH {
            let Ok(next) = queue.try_recv() else { break };
            notifications.extend(encode(self.relay.node, *seq + messages, &next));
            messages += 1;
        }
        let sent = client
            .execute(
                "SELECT pg_notify($1, n) FROM unnest($2::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i",
                &[&MESSAGES, &notifications],
            )
            .await;
        // The numbers are used up either way: a statement that failed may still have
        // committed (the connection broke before the answer), and numbers used twice would
        // make receivers skip the later messages as repeats. Failed ones show as a gap.
        *seq += messages;
        match sent {
            Ok(_) => {
                self.relay.sent.fetch_add(messages, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.relay
                    .count_dropped(messages, "the database refused them");
                Err(error)
            }
        }
    }

    /// Removes this node's row (and any left by nodes gone for an hour), and tells the
    /// others, so that they stop sending to it at once rather than at their next reload.
    async fn goodbye(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        client
            .execute(&self.tables.goodbye, &[&(self.relay.node as i64)])
            .await?;
        self.say_interest_changed(client).await
    }

    async fn say_interest_changed(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        client
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&INTEREST, &format!("{:x}", self.relay.node)],
            )
            .await
            .map(drop)
    }

    /// Writes this node's interest (refreshing its row), and tells the others when it
    /// `changed`.
    async fn announce(&self, client: &Client, changed: bool) -> Result<(), tokio_postgres::Error> {
        let interest = self.hub.interest_names();
        client
            .execute(
                &self.tables.announce,
                &[&(self.relay.node as i64), &interest],
            )
            .await?;
        if changed {
            self.say_interest_changed(client).await?;
        }
        Ok(())
    }

    /// Reloads what the other nodes (those seen within [`PEER_TIMEOUT_SECS`]) want.
    async fn load_peers(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let rows = client
            .query(
                &self.tables.peers,
                &[&(self.relay.node as i64), &f64::from(PEER_TIMEOUT_SECS)],
            )
            .await?;
        let nodes = rows.len() as u64;
        let patterns = rows
            .iter()
            .flat_map(|row| row.get::<_, Vec<String>>(0))
            .filter_map(|pattern| TopicPattern::new(&pattern).ok());
        let interest = Interest::new(patterns);
        *self.relay.peers.write().unwrap_or_else(|e| e.into_inner()) =
            PeerInterest { interest, nodes };
        Ok(())
    }
}

/// Connects to PostgreSQL. Notifications, when `notifications` is given, are handed to it in
/// order; the connection ends when the client is dropped or the server goes away.
async fn connect(
    config: &Config,
    notifications: Option<mpsc::Sender<Notification>>,
) -> Result<Client, String> {
    let (client, mut connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| "connecting to PostgreSQL timed out".to_owned())?
        .map_err(|error| error.to_string())?;
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    let Some(notifications) = &notifications else {
                        continue;
                    };
                    // Waiting here holds back reading the connection, and PostgreSQL keeps
                    // the notifications meanwhile: backpressure, not loss.
                    if notifications.send(notification).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "pub/sub relay connection ended");
                    break;
                }
            }
        }
    });
    Ok(client)
}

/// The task that listens for other nodes' messages and interest, and publishes their
/// messages on `hub`. Listens again after any failure.
async fn listen(
    config: Config,
    relay: Arc<PostgresRelay>,
    hub: Hub,
    reload: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut reassembler = Reassembler::new(relay.node);
    let own = format!("{:x}", relay.node);
    loop {
        let (sender, mut notifications) = mpsc::channel(1024);
        let listening = match connect(&config, Some(sender)).await {
            Ok(client) => client
                .batch_execute(&format!("LISTEN {MESSAGES}; LISTEN {INTEREST}"))
                .await
                .map(|()| client)
                .map_err(|error| error.to_string()),
            Err(error) => Err(error),
        };
        match listening {
            Ok(_client) => {
                // The others' interest may have changed while this node was not listening.
                reload.notify_one();
                loop {
                    let notification = tokio::select! {
                        () = shutdown.cancelled() => return,
                        notification = notifications.recv() => notification,
                    };
                    let Some(notification) = notification else {
                        break;
                    };
                    if notification.channel() == INTEREST {
                        if notification.payload() != own {
                            reload.notify_one();
                        }
                        continue;
                    }
                    receive(&mut reassembler, &relay, &hub, notification.payload()).await;
                }
                tracing::warn!("pub/sub relay stopped listening; listening again");
            }
            Err(error) => tracing::warn!(%error, "pub/sub relay cannot listen"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Handles one notification on the message channel.
async fn receive(reassembler: &mut Reassembler, relay: &PostgresRelay, hub: &Hub, payload: &str) {
    let fed = reassembler.feed(payload);
    if fed.lost > 0 {
        let total = relay.lost.fetch_add(fed.lost, Ordering::Relaxed) + fed.lost;
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
    let Some(message) = fed.message else { return };
    relay.received.fetch_add(1, Ordering::Relaxed);
    let published = hub
        .publish_relayed(&message.topic, message.payload, message.only_if_exists)
        .await;
    if let Err(error) = published {
        tracing::debug!(topic = message.topic, %error, "message from another node not published");
    }
}
