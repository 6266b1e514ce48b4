//! The TCP line protocol (docs/protocol.md): chat rooms and pub/sub over plain text, usable
//! by hand with `nc 127.0.0.1 7071`.
//!
//! One task per connection reads commands, polls the connection's subscriptions (rooms and
//! topics, see `feeds`) and writes replies and events; the hub never waits for a slow
//! client: the connection's cursors fall behind and the hub's slow-subscriber policy
//! applies.

mod config;
mod connection;
mod parse;
mod reader;

pub use config::LineConfig;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use weir_http::ConnectionsPerAddress;

use crate::ChatContext;

/// Serves the line protocol on `listener` until the context's shutdown; then tells every
/// client and closes.
pub async fn serve_lines(
    listener: TcpListener,
    ctx: Arc<ChatContext>,
    config: LineConfig,
) -> std::io::Result<()> {
    let shutdown = ctx.shutdown().clone();
    let config = Arc::new(config);
    let local = listener.local_addr()?;
    tracing::info!(%local, "weir line protocol on {local} (try: nc {} {})", local.ip(), local.port());
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let per_address = ConnectionsPerAddress::new(config.max_connections_per_address);
    let sessions = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
        };
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "line protocol accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(address_slot) = per_address.claim(peer.ip()) else {
            tracing::debug!(%peer, "too many line connections from one address; closed");
            refuse(stream, config.max_connections_per_address);
            continue;
        };
        let id = ctx.connection_id();
        // Spawned as it is, with no `async` block around it: a wrapper would keep its own
        // copies of the arguments beside the session, for every connection's life.
        sessions.spawn(
            connection::run(
                stream,
                peer,
                id,
                ctx.clone(),
                config.clone(),
                (slot, address_slot),
            )
            .instrument(tracing::info_span!("line.conn", %peer, conn = id)),
        );
    }
    sessions.close();
    sessions.wait().await;
    Ok(())
}

/// Tells a connection past its address's limit why it is closed, without waiting for it.
fn refuse(stream: tokio::net::TcpStream, limit: usize) {
    let line = format!("-ERR too many connections from your address (limit {limit}); closing\r\n");
    // Best effort and never blocking: a fresh socket's send buffer takes one line.
    let _ = stream.try_write(line.as_bytes());
}
