//! `weir serve`: builds the HTTP API and runs it until shutdown.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weir_chat::line::{serve_lines, LineConfig};
use weir_chat::postgres_directory::PostgresDirectory;
use weir_chat::{ChatConfig, ChatContext};
use weir_http::{Edge, HttpMetrics, Server};
use weir_jobs::{EventTopic, Jobs, PostgresStore, SqliteStore, Store};
use weir_pubsub::postgres_store::PostgresTopicStore;
use weir_pubsub::sqlite_store::SqliteTopicStore;
use weir_pubsub::Hub;

use crate::api::router;
use crate::config::ServeConfig;

/// Why `weir serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The data directory as configured (`data_dir`).
        path: std::path::PathBuf,
        /// Why creating it, or one of its parents, failed.
        source: std::io::Error,
    },
    /// The HTTP or the line-protocol address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another weir running? choose another with --http-addr)")]
    Bind {
        /// The address that failed: `http.addr`, or `line.addr` (bound second).
        addr: std::net::SocketAddr,
        /// Why binding failed (most often: the address is in use).
        source: std::io::Error,
    },
    /// The store of durable topics could not be opened or loaded.
    #[error("cannot open the topic store {path}: {source}")]
    Store {
        /// The SQLite file of durable topics: `weir.db` in the data directory.
        path: std::path::PathBuf,
        /// Why the file could not be opened, or its topics loaded.
        source: weir_pubsub::StoreError,
    },
    /// The shared store of durable topics (PostgreSQL) could not be opened or loaded.
    #[error("cannot open the durable topics in PostgreSQL: {0}")]
    SharedStore(String),
    /// The cluster's directory of nicknames and rooms (PostgreSQL) could not be opened.
    #[error("cannot open the chat directory in PostgreSQL: {0}")]
    Directory(String),
    /// The job store could not be opened.
    #[error("cannot open the job store ({location}): {source}")]
    JobStore {
        /// The SQLite file, or "PostgreSQL".
        location: String,
        /// Why the store could not be opened (a database that cannot be reached or migrated,
        /// say).
        source: weir_jobs::StoreError,
    },
    /// The pub/sub relay between nodes could not start.
    #[error("cannot start the pub/sub relay: {0}")]
    Relay(#[from] weir_pubsub::postgres_relay::RelayError),
    /// The server failed while running.
    #[error("the HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
}

/// The PostgreSQL schema of the job store's and the relay's tables.
const JOBS_SCHEMA: &str = "weir";

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

/// The hub, with a store when any topic is durable: PostgreSQL's, shared by the nodes,
/// when `database` is set; else SQLite under the data directory.
async fn open_hub(config: &ServeConfig) -> Result<Hub, ServeError> {
    if config.pubsub.durable.is_empty() {
        return Ok(Hub::new(config.pubsub.clone()));
    }
    if let Some(url) = &config.database {
        let retention = |name: &weir_pubsub::TopicName| config.pubsub.retention_for(name);
        let store = PostgresTopicStore::open(url, JOBS_SCHEMA, &retention)
            .await
            .map_err(|source| ServeError::SharedStore(source.to_string()))?;
        return Hub::with_store(config.pubsub.clone(), Box::new(store))
            .map_err(|source| ServeError::SharedStore(source.0));
    }
    let path = config.data_dir.join("weir.db");
    let store = SqliteTopicStore::open(&path, config.job_store.synchronous).map_err(|source| {
        ServeError::Store {
            path: path.clone(),
            source,
        }
    })?;
    Hub::with_store(config.pubsub.clone(), Box::new(store))
        .map_err(|source| ServeError::Store { path, source })
}

/// The job service on the configured store (PostgreSQL when `database` is set, else SQLite
/// at `data_dir/jobs.db`), publishing lifecycle events on `hub`.
pub async fn open_jobs(config: &ServeConfig, hub: &Hub) -> Result<Jobs, ServeError> {
    let store: Arc<dyn Store> = match &config.database {
        Some(url) => Arc::new(
            PostgresStore::open(url, JOBS_SCHEMA, 16, config.job_store.clone())
                .await
                .map_err(|source| ServeError::JobStore {
                    location: "PostgreSQL".into(),
                    source,
                })?,
        ),
        None => {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
            let path = config.data_dir.join("jobs.db");
            Arc::new(
                SqliteStore::open(&path, config.job_store.clone()).map_err(|source| {
                    ServeError::JobStore {
                        location: path.display().to_string(),
                        source,
                    }
                })?,
            )
        }
    };
    let events_hub = hub.clone();
    let events: weir_jobs::EventSink = Arc::new(move |topic: EventTopic<'_>, json: String| {
        // A topic per queue always; a topic per job only while someone subscribed to it
        // (else one topic per job ever run would pile up). Job events are live
        // notifications: a topic made durable by a broad pattern refuses the synchronous
        // publish, which is logged, not fatal.
        let name = topic.to_string();
        let published = match topic {
            EventTopic::Job(_) => events_hub.publish_if_exists(&name, json.into()).map(drop),
            EventTopic::Queue(_) => events_hub.publish(&name, json.into()).map(drop),
        };
        if let Err(error) = published {
            tracing::debug!(%topic, %error, "job event not published");
        }
    });
    Ok(Jobs::new(store, config.jobs.clone(), Some(events)))
}

/// Serves the HTTP API and the line protocol until `shutdown` is cancelled, then drains.
pub async fn run(
    config: ServeConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let metrics = Arc::new(HttpMetrics::new());
    let hub = open_hub(&config).await?;
    let chat_config = ChatConfig {
        max_subscriptions: config.max_subscriptions,
        tokens: config.tokens.clone(),
        ..ChatConfig::default()
    };
    let line_config = LineConfig {
        max_connections: config.line_max_connections,
        max_connections_per_address: config.line_max_connections_per_address,
        auth_timeout: config.line_auth_timeout,
        ..LineConfig::default()
    };
    let jobs = open_jobs(&config, &hub).await?;
    let relay = match &config.database {
        Some(url) => Some(
            weir_pubsub::postgres_relay::start(
                url,
                JOBS_SCHEMA,
                hub.clone(),
                config.routes.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let mut chat = ChatContext::new(hub.clone(), chat_config, shutdown.clone());
    if let (Some(url), Some(relay)) = (&config.database, &relay) {
        // Nicknames and rooms across the cluster: a node is live while its relay is.
        let directory = PostgresDirectory::open(url, JOBS_SCHEMA, relay.node())
            .await
            .map_err(|error| ServeError::Directory(error.to_string()))?;
        chat = chat.with_directory(Arc::new(directory));
    }
    let chat = Arc::new(chat);
    let maintenance = tokio::spawn({
        let jobs = jobs.clone();
        let stop = shutdown.clone();
        async move { jobs.maintain(stop).await }
    });
    let hub_upkeep = tokio::spawn(hub_upkeep(hub.clone(), shutdown.clone()));
    let router = router(
        &config,
        metrics.clone(),
        hub.clone(),
        chat.clone(),
        jobs,
        shutdown.clone(),
    );
    let local = listeners.http.local_addr()?;
    tracing::info!(
        addr = %local,
        data_dir = %config.data_dir.display(),
        "weir is serving HTTP on http://{local}/"
    );
    let http = Server::new(Edge::new(router, config.edge.clone()), config.http)
        .with_metrics(metrics)
        .serve(listeners.http, shutdown.clone());
    let line = serve_lines(listeners.line, chat, line_config);
    // Both run in this task until shutdown; `join!` waits for both to drain.
    let (http, line) = tokio::join!(http, line);
    let _ = maintenance.await;
    let _ = hub_upkeep.await;
    // Last: what was published while the server drained still reaches the other nodes.
    if let Some(relay) = relay {
        relay.stop().await;
    }
    http?;
    line?;
    Ok(())
}

/// How often the hub drops expired messages, keeps its byte budget and lets idle topics go:
/// a fraction of the shortest idle time worth setting, and cheap (a pass over the topics).
const HUB_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the hub's upkeep until `stop`.
async fn hub_upkeep(hub: Hub, stop: CancellationToken) {
    let mut every = tokio::time::interval(HUB_UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let done = hub.upkeep();
        if done != weir_pubsub::Upkeep::default() {
            tracing::debug!(expired = done.expired, removed = done.removed, "hub upkeep");
        }
    }
}
