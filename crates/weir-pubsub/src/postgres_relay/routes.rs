//! Routes: with a route address set, a node sends its messages straight to every other node
//! that has one too, over a TCP connection per pair and direction, instead of through
//! PostgreSQL's `NOTIFY` (which holds a cluster to what one database connection can
//! commit: bench/pubsub/cluster.sh).
//!
//! ```text
//!  publish on node A ─► hub A ─► Relay::forward ─► link to B (bounded queue) ─► TCP ─► acceptor on B ─► hub B
//! ```
//!
//! - **PostgreSQL still introduces the nodes.** Each node writes its route address beside
//!   its interest in `pubsub_node`; a node opens a link to each live peer that has one,
//!   and closes it when the peer's row goes. The cluster's route secret is kept there too
//!   ([`super::route_wire`] says how a connection proves it holds it).
//! - **Mixed clusters.** A node without a route address relays through PostgreSQL as before;
//!   a node with one sends to such nodes through PostgreSQL on another channel
//!   (`weir_pubsub_routed`), which only nodes without routes listen to, so no node gets
//!   a message both ways.
//! - **At most once, and counted,** as through PostgreSQL: what a link cannot send (its
//!   peer unreachable, the connection failing or stalled for [`DEADLINE`], the queue
//!   full) is dropped and counted; a publisher never waits for a link.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::counts::{worth_logging, Counts};
use super::queue::{bounded, OutboundQueue, QueueReceiver, QUEUE_BYTES, QUEUE_MESSAGES};
use super::route_wire::{self, Opener, RouteError, RouteKey, Sealer, WRITE_BATCH};
use crate::Hub;

/// Where a node's routes listen, and the address other nodes dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOptions {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// `host:port` other nodes dial; `None`: the address listened on (which must then not
    /// be `0.0.0.0` or `::`).
    pub advertise: Option<String>,
}

/// Deadline for connecting to a peer, and for each write to it.
const DEADLINE: Duration = Duration::from_secs(10);
/// Wait before connecting again after a failure.
const RETRY: Duration = Duration::from_secs(1);
/// Room an acceptor reads into at a time.
const READ_BUFFER: usize = 256 << 10;
/// Connections still proving themselves, at most; more are closed at once, so that
/// strangers cannot hold a node's memory with half-open handshakes.
const MAX_HANDSHAKES: usize = 64;
/// Of those, from one address at most: one stranger cannot take every place and keep the
/// cluster's own nodes out.
const MAX_HANDSHAKES_PER_ADDRESS: usize = 4;
/// With data unacknowledged this long, the kernel gives up on a route connection (a peer
/// that vanished without closing it); with none, keepalive probes find it.
const USER_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);

/// This node's links to the other nodes' routes.
#[derive(Debug)]
pub(crate) struct Routes {
    key: RouteKey,
    node: u64,
    /// What this node writes as its route address.
    pub(crate) advertise: String,
    links: Mutex<HashMap<u64, Link>>,
    counts: Arc<Counts>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// The link to one peer: its queue, while the peer is at `addr`.
#[derive(Debug)]
struct Link {
    addr: String,
    queue: Arc<OutboundQueue>,
}

impl Routes {
    pub(crate) fn new(
        key: RouteKey,
        node: u64,
        advertise: String,
        counts: Arc<Counts>,
        stop: CancellationToken,
        tasks: TaskTracker,
    ) -> Routes {
        Routes {
            key,
            node,
            advertise,
            links: Mutex::default(),
            counts,
            stop,
            tasks,
        }
    }

    /// The links to `peers` (node, route address), opened where new (or where a peer moved
    /// to another address); links to nodes not among them are closed.
    pub(crate) fn links(&self, peers: &[(u64, String)]) -> Vec<Arc<OutboundQueue>> {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        // A link whose queue is dropped here (and by the relay's next peer list) ends.
        links.retain(|node, link| peers.iter().any(|(n, a)| n == node && *a == link.addr));
        peers
            .iter()
            .map(|(node, addr)| {
                let link = links.entry(*node).or_insert_with(|| {
                    let (queue, receiver) = bounded(QUEUE_MESSAGES, QUEUE_BYTES);
                    let target = Target {
                        node: *node,
                        addr: addr.clone(),
                    };
                    self.tasks.spawn(run_link(
                        target,
                        receiver,
                        self.key.clone(),
                        self.node,
                        self.counts.clone(),
                        self.stop.clone(),
                    ));
                    Link {
                        addr: addr.clone(),
                        queue: Arc::new(queue),
                    }
                });
                link.queue.clone()
            })
            .collect()
    }
}

/// A peer a link dials.
#[derive(Debug)]
struct Target {
    node: u64,
    addr: String,
}

/// Keepalives and a bound on unacknowledged data, so that a peer gone without a word is
/// noticed in seconds rather than the kernel's quarter of an hour.
fn tune(stream: &TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(Duration::from_secs(1));
    let _ = socket.set_tcp_keepalive(&keepalive);
    #[cfg(target_os = "linux")]
    let _ = socket.set_tcp_user_timeout(Some(USER_TIMEOUT));
    let _ = stream.set_nodelay(true);
}

async fn connect(
    target: &Target,
    key: &RouteKey,
    own: u64,
) -> Result<(TcpStream, Sealer), RouteError> {
    let mut stream = tokio::time::timeout(DEADLINE, TcpStream::connect(&target.addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    tune(&stream);
    let sealer = route_wire::dial(&mut stream, key, own, target.node).await?;
    Ok((stream, sealer))
}

/// One link's task: connects to its peer and sends what is queued for it, connecting again
/// after a failure, until the link is closed or the relay stops.
async fn run_link(
    target: Target,
    mut queue: QueueReceiver,
    key: RouteKey,
    own: u64,
    counts: Arc<Counts>,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        let connected = tokio::select! {
            () = stop.cancelled() => {
                counts.dropped(queue.drain(), "the relay stopped before it could send them");
                return;
            }
            connected = connect(&target, &key, own) => connected,
        };
        match connected {
            Ok((mut stream, mut sealer)) => {
                if failing {
                    tracing::info!(node = %format!("{:x}", target.node), addr = target.addr, "route to another node open again");
                    failing = false;
                }
                match send(&mut stream, &mut sealer, &mut queue, &counts, &stop).await {
                    Ok(()) => return,
                    Err(error) => tracing::warn!(
                        node = %format!("{:x}", target.node), addr = target.addr, %error,
                        "route to another node lost; connecting again"
                    ),
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(
                        node = %format!("{:x}", target.node), addr = target.addr, %error,
                        "cannot open the route to another node; its messages are dropped until it can"
                    );
                    failing = true;
                }
                counts.dropped(queue.drain(), "the route to their node is down");
                if queue.is_closed() {
                    return; // the link was closed: its peer is gone
                }
                tokio::select! {
                    () = stop.cancelled() => {
                        counts.dropped(queue.drain(), "the relay stopped before it could send them");
                        return;
                    }
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}

/// Sends what is queued until the link is closed or the relay stops (`Ok`), or the
/// connection fails.
async fn send(
    stream: &mut TcpStream,
    sealer: &mut Sealer,
    queue: &mut QueueReceiver,
    counts: &Counts,
    stop: &CancellationToken,
) -> Result<(), RouteError> {
    let mut buffer = Vec::with_capacity(WRITE_BATCH);
    loop {
        let first = tokio::select! {
            first = queue.recv() => match first {
                Some(first) => first,
                None => return Ok(()), // the link was closed: its peer is gone
            },
            // The server has drained: send what is left, within the deadline.
            () = stop.cancelled() => match queue.try_recv() {
                Some(first) => first,
                None => return Ok(()),
            },
            // The acceptor never speaks after its handshake: anything readable is its end
            // (or garbage), noticed now rather than at a later write, whose messages the
            // kernel would take and then lose.
            readable = stream.readable() => {
                readable?;
                let mut probe = [0u8; 1];
                match stream.try_read(&mut probe) {
                    Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into()),
                    Ok(_) => return Err(RouteError::Frame("the acceptor spoke after its handshake")),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(error) => return Err(error.into()),
                }
            }
        };
        Sealer::begin(&mut buffer);
        route_wire::encode(&mut buffer, &first);
        let mut messages = 1u64;
        while buffer.len() < WRITE_BATCH {
            let Some(next) = queue.try_recv() else { break };
            route_wire::encode(&mut buffer, &next);
            messages += 1;
        }
        sealer.seal(&mut buffer);
        let written = tokio::time::timeout(DEADLINE, stream.write_all(&buffer)).await;
        if buffer.capacity() > 2 * WRITE_BATCH {
            // After one large message: not kept for the link's life.
            buffer = Vec::with_capacity(WRITE_BATCH);
        }
        match written {
            Ok(Ok(())) => {
                counts.sent(messages);
            }
            Ok(Err(error)) => {
                counts.dropped(messages, "the route to their node failed");
                return Err(error.into());
            }
            Err(_) => {
                counts.dropped(messages, "the route to their node stalled");
                return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
            }
        }
    }
}

/// Accepts other nodes' links on `listener` and publishes what they carry on `hub`, until
/// the relay stops.
pub(crate) async fn accept(
    listener: TcpListener,
    key: RouteKey,
    own: u64,
    hub: Hub,
    counts: Arc<Counts>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let by_address: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let refused = Arc::new(AtomicU64::new(0));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, from) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, usually: wait rather than spin.
                tracing::warn!(%error, "route listener cannot accept");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
        };
        let Some(place) = HandshakePlace::take(&by_address, from.ip()) else {
            count_refused(
                &refused,
                from,
                "too many handshakes from that address at once",
            );
            continue;
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            count_refused(&refused, from, "too many handshakes at once");
            continue;
        };
        let (key, hub, counts, stop, refused) = (
            key.clone(),
            hub.clone(),
            counts.clone(),
            stop.clone(),
            refused.clone(),
        );
        tasks.spawn(async move {
            let mut stream = stream;
            let opener = match route_wire::accept(&mut stream, &key, own).await {
                Ok((_, opener)) => opener,
                Err(error) => {
                    count_refused(&refused, from, &error.to_string());
                    return;
                }
            };
            drop((permit, place));
            tune(&stream);
            if let Err(error) = receive(stream, opener, &hub, &counts, &stop).await {
                tracing::warn!(%from, %error, "route from another node closed");
            }
        });
    }
}

/// Counts a refused route connection, logging as [`worth_logging`] says.
fn count_refused(refused: &AtomicU64, from: SocketAddr, why: &str) {
    let before = refused.fetch_add(1, Ordering::Relaxed);
    if worth_logging(before, 1) {
        tracing::warn!(%from, why, refused = before + 1, "route connection refused");
    }
}

/// A place among the handshakes from one address, given back when dropped.
struct HandshakePlace {
    by_address: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl HandshakePlace {
    fn take(by_address: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<HandshakePlace> {
        let mut counts = by_address.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(ip).or_default();
        if *count >= MAX_HANDSHAKES_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(HandshakePlace {
            by_address: by_address.clone(),
            ip,
        })
    }
}

impl Drop for HandshakePlace {
    fn drop(&mut self) {
        let mut counts = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Publishes the frames of one authenticated link until it closes or the relay stops.
async fn receive(
    mut stream: TcpStream,
    mut opener: Opener,
    hub: &Hub,
    counts: &Counts,
    stop: &CancellationToken,
) -> Result<(), RouteError> {
    let mut buffer = BytesMut::with_capacity(READ_BUFFER);
    loop {
        while let Some(mut frames) = opener.open(&mut buffer)? {
            while let Some(message) = route_wire::decode(&mut frames)? {
                counts.received(1);
                let published = hub
                    .publish_relayed(&message.topic, message.payload, message.only_if_exists)
                    .await;
                if let Err(error) = published {
                    tracing::debug!(topic = message.topic, %error, "message from another node not published");
                }
            }
            if !frames.is_empty() {
                return Err(RouteError::Frame("a batch ends inside a frame"));
            }
        }
        if buffer.capacity() - buffer.len() < READ_BUFFER / 4 {
            buffer.reserve(READ_BUFFER);
        }
        let read = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            read = stream.read_buf(&mut buffer) => read?,
        };
        if read == 0 {
            return Ok(()); // the peer closed it
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HubConfig;

    /// Whether the acceptor closes `stream` at once (it reads nothing, not even the hello).
    async fn closed_at_once(stream: &mut TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn one_address_holds_at_most_four_handshakes_and_gets_them_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        tasks.spawn(accept(
            listener,
            RouteKey::new(b"secret"),
            7,
            Hub::new(HubConfig::default()),
            Arc::default(),
            stop.clone(),
            tasks.clone(),
        ));
        // Four strangers that connect and say nothing each get the hello and a place.
        let mut silent = Vec::new();
        for _ in 0..MAX_HANDSHAKES_PER_ADDRESS {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut hello = [0u8; 40];
            stream.read_exact(&mut hello).await.unwrap();
            silent.push(stream);
        }
        // A fifth from the same address is closed at once.
        let mut fifth = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_at_once(&mut fifth).await,
            "a fifth handshake from one address"
        );
        // One of the four gives up: its place comes back.
        drop(silent.pop());
        let mut again = None;
        for _ in 0..50 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut hello = [0u8; 40];
            if stream.read_exact(&mut hello).await.is_ok() {
                again = Some(stream);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(again.is_some(), "the place was given back");
        stop.cancel();
    }
}
