//! `weir serve`: builds the HTTP API and runs it until shutdown.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weir_http::{HttpMetrics, Router, Server};

use crate::config::ServeConfig;
use crate::dashboard::add_dashboard_routes;
use crate::line::{serve_lines, LineConfig, LineContext};
use crate::routes::add_operational_routes;
use crate::topic_store::SqliteTopicStore;
use crate::topics::add_topic_routes;
use crate::ws::add_ws_route;
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
    /// The store of durable topics could not be opened or loaded.
    #[error("cannot open the topic store {path}: {source}")]
    Store {
        /// The database file.
        path: std::path::PathBuf,
        /// The cause.
        source: weir_pubsub::StoreError,
    },
    /// The server failed while running.
    #[error("the HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
}

/// The routes of the HTTP API.
pub fn router(
    config: &ServeConfig,
    metrics: Arc<HttpMetrics>,
    hub: Hub,
    chat: Arc<LineContext>,
) -> Router {
    let tokens = Arc::new(config.tokens.clone());
    let router = add_operational_routes(Router::new(), metrics, hub.clone(), tokens.clone());
    let router = add_topic_routes(router, hub, tokens, config.sse_heartbeat);
    let router = add_ws_route(router, chat);
    add_dashboard_routes(router)
}

/// The bound listeners of `weir serve`.
#[derive(Debug)]
pub struct Listeners {
    /// The HTTP API and dashboard.
    pub http: TcpListener,
    /// The TCP line protocol.
    pub line: TcpListener,
}

impl Listeners {
    /// Both on loopback with ports the system picks, for tests.
    pub async fn ephemeral() -> std::io::Result<Listeners> {
        Ok(Listeners {
            http: TcpListener::bind("127.0.0.1:0").await?,
            line: TcpListener::bind("127.0.0.1:0").await?,
        })
    }
}

/// Prepares the data directory and binds the listeners: everything that can fail before
/// serving, so that failures are reported before the server says it is up.
pub async fn bind(config: &ServeConfig) -> Result<Listeners, ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let http = TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.http_addr,
            source,
        })?;
    let line = TcpListener::bind(config.line_addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.line_addr,
            source,
        })?;
    Ok(Listeners { http, line })
}

/// The hub, with the SQLite store under the data directory when any topic is durable.
fn open_hub(config: &ServeConfig) -> Result<Hub, ServeError> {
    if config.pubsub.durable.is_empty() {
        return Ok(Hub::new(config.pubsub.clone()));
    }
    let path = config.data_dir.join("weir.db");
    let store = SqliteTopicStore::open(&path).map_err(|source| ServeError::Store {
        path: path.clone(),
        source,
    })?;
    Hub::with_store(config.pubsub.clone(), Box::new(store))
        .map_err(|source| ServeError::Store { path, source })
}

/// Serves the HTTP API and the line protocol until `shutdown` is cancelled, then drains.
pub async fn run(
    config: ServeConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let metrics = Arc::new(HttpMetrics::new());
    let hub = open_hub(&config)?;
    let line_config = LineConfig {
        max_subscriptions: config.max_subscriptions,
        max_connections: config.line_max_connections,
        tokens: config.tokens.clone(),
        ..LineConfig::default()
    };
    let chat = Arc::new(LineContext::new(hub.clone(), line_config, shutdown.clone()));
    let router = router(&config, metrics.clone(), hub.clone(), chat.clone());
    let local = listeners.http.local_addr()?;
    tracing::info!(
        addr = %local,
        data_dir = %config.data_dir.display(),
        "weir is serving HTTP on http://{local}/"
    );
    let http = Server::new(router, config.http)
        .with_metrics(metrics)
        .serve(listeners.http, shutdown.clone());
    let line = serve_lines(listeners.line, chat);
    // Both run in this task until shutdown; `join!` waits for both to drain.
    let (http, line) = tokio::join!(http, line);
    http?;
    line?;
    Ok(())
}
