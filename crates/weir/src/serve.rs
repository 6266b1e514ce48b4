//! `weir serve`: builds the HTTP API and runs it until shutdown.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weir_http::{HttpMetrics, Router, Server};

use crate::config::ServeConfig;
use crate::routes::add_operational_routes;
use crate::topics::add_topic_routes;
use weir_pubsub::Hub;

/// Why `weir serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another weir running? choose another with --http-addr)")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("the HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
}

/// The routes of the HTTP API.
pub fn router(config: &ServeConfig, metrics: Arc<HttpMetrics>, hub: Hub) -> Router {
    let router = add_operational_routes(Router::new(), metrics);
    add_topic_routes(router, hub, config.sse_heartbeat)
}

/// Prepares the data directory and binds the listener: everything that can fail before
/// serving, so that failures are reported before the server says it is up.
pub async fn bind(config: &ServeConfig) -> Result<TcpListener, ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.http_addr,
            source,
        })
}

/// Serves the HTTP API on `listener` until `shutdown` is cancelled, then drains.
pub async fn run(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let metrics = Arc::new(HttpMetrics::new());
    let hub = Hub::new(config.pubsub.clone());
    let router = router(&config, metrics.clone(), hub);
    let local = listener.local_addr()?;
    tracing::info!(
        addr = %local,
        data_dir = %config.data_dir.display(),
        "weir is serving HTTP on http://{local}/"
    );
    Server::new(router, config.http)
        .with_metrics(metrics)
        .serve(listener, shutdown)
        .await?;
    Ok(())
}
