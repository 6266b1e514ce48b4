//! The accept loop: the connection limit, one task per connection, graceful shutdown.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::conn::{serve_connection, ConnContext};
use crate::{ConnectionsPerAddress, Handler, HttpMetrics, ServerConfig};

/// After an accept error that is not about one connection (out of file descriptors, say),
/// the loop pauses this long instead of spinning on the error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// An HTTP/1.1 server: a handler, its configuration and its metrics.
///
/// [`Server::serve`] runs on a listener the caller bound (port 0 in tests) until the
/// shutdown token is cancelled.
#[derive(Debug)]
pub struct Server<H> {
    handler: Arc<H>,
    config: Arc<ServerConfig>,
    metrics: Arc<HttpMetrics>,
}

impl<H: Handler> Server<H> {
    /// A server that answers with `handler`.
    pub fn new(handler: H, config: ServerConfig) -> Self {
        Self {
            handler: Arc::new(handler),
            config: Arc::new(config),
            metrics: Arc::default(),
        }
    }

    /// Records into `metrics` (shared, for instance, with a `/metrics` route).
    pub fn with_metrics(mut self, metrics: Arc<HttpMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The metrics this server records into.
    pub fn metrics(&self) -> &Arc<HttpMetrics> {
        &self.metrics
    }

    /// Serves connections from `listener` until `shutdown` is cancelled, then shuts down
    /// gracefully: stops accepting, closes idle connections at once, lets in-flight requests
    /// finish within [`ServerConfig::drain_timeout`], and closes what is left after that.
    ///
    /// Returns when every connection task has ended.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> io::Result<()> {
        let local = listener.local_addr()?;
        let slots = Arc::new(Semaphore::new(self.config.max_connections.get()));
        // Places past the limit for the operator's paths (health, metrics), one request each.
        let reserved = Arc::new(Semaphore::new(if self.config.reserved_paths.is_empty() {
            0
        } else {
            self.config.reserved_connections
        }));
        let per_address = ConnectionsPerAddress::new(self.config.max_connections_per_address);
        let connections = TaskTracker::new();
        // Cancelled when the drain deadline passes: every connection task stops at its next
        // await point.
        let force_close = CancellationToken::new();
        let ctx = Arc::new(ConnContext {
            handler: self.handler,
            config: self.config.clone(),
            metrics: self.metrics,
            shutdown: shutdown.clone(),
            draining: AtomicBool::new(false),
        });
        tracing::info!(%local, "accepting HTTP connections");

        loop {
            // Take a slot before accepting: past the limit, clients wait in the backlog.
            let (slot, is_reserved) = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => (slot.expect("the semaphore is never closed"), false),
                slot = reserved.clone().acquire_owned() => (slot.expect("the semaphore is never closed"), true),
            };
            let (stream, peer) = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) if is_per_connection_error(&error) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed; pausing");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                },
            };
            // Small responses must not wait for Nagle's algorithm.
            let Some(address_slot) = per_address.claim(peer.ip()) else {
                tracing::debug!(%peer, limit = per_address.limit(), "too many connections from one address; closed");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let ctx = ctx.clone();
            let force_close = force_close.clone();
            let span = tracing::info_span!("http.conn", %peer);
            let tracker = connections.clone();
            connections.spawn(
                async move {
                    let upgraded = tokio::select! {
                        upgraded = serve_connection(stream, peer, ctx, is_reserved) => upgraded,
                        _ = force_close.cancelled() => {
                            tracing::debug!("closed at the drain deadline");
                            None
                        }
                    };
                    // An upgraded connection (a WebSocket) goes on in a task of its own,
                    // holding its connection slot: this task's HTTP state is freed.
                    if let Some((session, open)) = upgraded {
                        tracker.spawn(
                            async move {
                                let _slot = slot;
                                let _address_slot = address_slot;
                                let _open = open;
                                tokio::select! {
                                    _ = session => {}
                                    _ = force_close.cancelled() => {
                                        tracing::debug!("upgraded connection closed at the drain deadline");
                                    }
                                }
                            }
                            .in_current_span(),
                        );
                    }
                }
                .instrument(span),
            );
        }

        ctx.draining.store(true, Ordering::Relaxed);
        drop(listener);
        connections.close();
        tracing::info!(
            open = connections.len(),
            "stopped accepting; draining connections"
        );
        if tokio::time::timeout(self.config.drain_timeout, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = connections.len(),
                "drain deadline passed; closing the remaining connections"
            );
            force_close.cancel();
            connections.wait().await;
        }
        tracing::info!("HTTP server stopped");
        Ok(())
    }
}

/// Errors that concern one connection that failed during accept, not the listener.
fn is_per_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
