//! Every setting of `weir serve` in one table (flag, variable, `weir.toml` key, default,
//! help), where a value came from, and what is wrong with one.

use std::fmt;
use std::path::PathBuf;

/// One configurable value.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The key in `weir.toml` (dotted for tables: `http.addr` is `[http] addr`).
    pub key: &'static str,
    /// The long flag, without `--`.
    pub flag: &'static str,
    /// The environment variable (`WEIR_…`), used when the flag is not given.
    pub env: &'static str,
    /// The default, in the same syntax as a user would write it.
    pub default: &'static str,
    /// One line of help.
    pub help: &'static str,
}

/// Every setting of `weir serve`. The CLI, the environment, the file and the docs
/// (docs/configuration.md, checked by a test) all come from this table.
pub const SETTINGS: &[Setting] = &[
    Setting { key: "http.addr", flag: "http-addr", env: "WEIR_HTTP_ADDR", default: "127.0.0.1:7070", help: "Address for the HTTP API and dashboard (loopback unless you mean otherwise)" },
    Setting { key: "line.addr", flag: "line-addr", env: "WEIR_LINE_ADDR", default: "127.0.0.1:7071", help: "Address for the TCP line protocol (chat and pub/sub by hand with nc)" },
    Setting { key: "line.max_connections", flag: "line-max-connections", env: "WEIR_LINE_MAX_CONNECTIONS", default: "10000", help: "Line-protocol connections served at once; more wait in the accept backlog" },
    Setting { key: "line.max_connections_per_address", flag: "line-max-connections-per-address", env: "WEIR_LINE_MAX_CONNECTIONS_PER_ADDRESS", default: "1000", help: "Line-protocol connections one client address may hold (0: no limit); past it a new one is told and closed" },
    Setting { key: "line.auth_timeout", flag: "line-auth-timeout", env: "WEIR_LINE_AUTH_TIMEOUT", default: "10s", help: "With tokens set, time a line-protocol connection has to AUTH before it is closed" },
    Setting { key: "data_dir", flag: "data-dir", env: "WEIR_DATA_DIR", default: "./weir-data", help: "Directory for the embedded database and other state (created if missing)" },
    Setting { key: "log.format", flag: "log-format", env: "WEIR_LOG_FORMAT", default: "human", help: "Log format: human, or json for log collectors" },
    Setting { key: "log.level", flag: "log-level", env: "WEIR_LOG", default: "info", help: "Log filter: a level (error, warn, info, debug, trace) or per-target, e.g. info,weir_http=debug" },
    Setting { key: "runtime.worker_threads", flag: "worker-threads", env: "WEIR_WORKER_THREADS", default: "0", help: "Tokio worker threads; 0 means one per CPU core" },
    Setting { key: "http.max_connections", flag: "max-connections", env: "WEIR_HTTP_MAX_CONNECTIONS", default: "10000", help: "Connections served at once; more wait in the accept backlog" },
    Setting { key: "http.max_connections_per_address", flag: "max-connections-per-address", env: "WEIR_HTTP_MAX_CONNECTIONS_PER_ADDRESS", default: "1000", help: "HTTP connections one client address may hold (0: no limit); past it a new one is closed. Behind a proxy on this machine, raise it" },
    Setting { key: "http.max_head_bytes", flag: "max-head-bytes", env: "WEIR_HTTP_MAX_HEAD_BYTES", default: "32KiB", help: "Largest request head (request line and headers); larger gets 431" },
    Setting { key: "http.max_headers", flag: "max-headers", env: "WEIR_HTTP_MAX_HEADERS", default: "100", help: "Most header fields in a request (at most 256); more gets 431" },
    Setting { key: "http.max_target_bytes", flag: "max-target-bytes", env: "WEIR_HTTP_MAX_TARGET_BYTES", default: "8KiB", help: "Longest request-target (path and query); longer gets 414" },
    Setting { key: "http.max_body_bytes", flag: "max-body-bytes", env: "WEIR_HTTP_MAX_BODY_BYTES", default: "16MiB", help: "Largest request body; larger gets 413 without being read" },
    Setting { key: "http.header_read_timeout", flag: "header-read-timeout", env: "WEIR_HTTP_HEADER_READ_TIMEOUT", default: "10s", help: "Time allowed for a request head to arrive; slower gets 408" },
    Setting { key: "http.idle_timeout", flag: "idle-timeout", env: "WEIR_HTTP_IDLE_TIMEOUT", default: "60s", help: "Time a keep-alive connection may sit idle before it is closed" },
    Setting { key: "http.body_read_timeout", flag: "body-read-timeout", env: "WEIR_HTTP_BODY_READ_TIMEOUT", default: "30s", help: "Time one read of a request body may wait; slower gets 408" },
    Setting { key: "http.write_timeout", flag: "write-timeout", env: "WEIR_HTTP_WRITE_TIMEOUT", default: "30s", help: "Time one write of a response may wait for the client before the connection is closed" },
    Setting { key: "http.sse_heartbeat", flag: "sse-heartbeat", env: "WEIR_HTTP_SSE_HEARTBEAT", default: "15s", help: "Interval of keep-alive comments on quiet Server-Sent Events streams" },
    Setting { key: "http.allowed_hosts", flag: "allowed-hosts", env: "WEIR_HTTP_ALLOWED_HOSTS", default: "", help: "Host names the HTTP API answers to besides IP addresses and localhost (against DNS rebinding), comma-separated; * for any. Others get 421" },
    Setting { key: "http.cors_origins", flag: "cors-origins", env: "WEIR_HTTP_CORS_ORIGINS", default: "", help: "Origins of browser apps allowed to use the API (CORS, state-changing requests, WebSocket), comma-separated, e.g. https://app.example.com; * for any. None: Weir's own pages only" },
    Setting { key: "pubsub.max_payload", flag: "max-payload", env: "WEIR_PUBSUB_MAX_PAYLOAD", default: "1MiB", help: "Largest message a client may publish; larger gets 413" },
    Setting { key: "pubsub.max_topic_bytes", flag: "max-topic-bytes", env: "WEIR_PUBSUB_MAX_TOPIC_BYTES", default: "64MiB", help: "Bytes one topic retains at most (payloads plus 320 bytes a message); past it its oldest messages go, whatever the count retention" },
    Setting { key: "pubsub.max_retained_bytes", flag: "max-retained-bytes", env: "WEIR_PUBSUB_MAX_RETAINED_BYTES", default: "512MiB", help: "Bytes all topics together retain at most; past it the oldest messages of all topics go first, down to nine tenths of it" },
    Setting { key: "pubsub.topic_idle", flag: "topic-idle", env: "WEIR_PUBSUB_TOPIC_IDLE", default: "60s", help: "A topic with no subscriber and nothing retained is let go after this long without a message, freeing its place under max_topics" },
    Setting { key: "pubsub.retention_messages", flag: "retention-messages", env: "WEIR_PUBSUB_RETENTION_MESSAGES", default: "1000", help: "Messages each topic keeps for replay (0: live only)" },
    Setting { key: "pubsub.retention_age", flag: "retention-age", env: "WEIR_PUBSUB_RETENTION_AGE", default: "1h", help: "Age past which a message is no longer replayed" },
    Setting { key: "pubsub.max_lag_bytes", flag: "max-lag-bytes", env: "WEIR_PUBSUB_MAX_LAG_BYTES", default: "16MiB", help: "Bytes a subscriber may fall behind a topic's newest message (payloads plus 320 bytes a message) before the slow-subscriber policy applies; each topic holds that much of its newest messages for subscribers catching up" },
    Setting { key: "pubsub.slow_policy", flag: "slow-policy", env: "WEIR_PUBSUB_SLOW_POLICY", default: "drop-oldest", help: "For a subscriber past max_lag_bytes: drop-oldest (skip ahead, with a lagged notice) or disconnect" },
    Setting { key: "pubsub.max_topics", flag: "max-topics", env: "WEIR_PUBSUB_MAX_TOPICS", default: "100000", help: "Topics held at most; publishing to a new topic past it gets 503" },
    Setting { key: "pubsub.retention", flag: "retention", env: "WEIR_PUBSUB_RETENTION", default: "", help: "Retention by topic pattern, first match wins: PATTERN=COUNT/AGE[,...], e.g. chat.>=200/24h,ticks.*=10/1m" },
    Setting { key: "pubsub.durable", flag: "durable", env: "WEIR_PUBSUB_DURABLE", default: "", help: "Topic patterns kept in the store across restarts (data_dir/weir.db; with database set, PostgreSQL, one log for every node), comma-separated, e.g. orders.>,audit.*; a publish to them is answered once committed" },
    Setting { key: "pubsub.max_subscribers", flag: "max-subscribers", env: "WEIR_PUBSUB_MAX_SUBSCRIBERS", default: "100000", help: "Subscribers one topic (or one wildcard pattern) may have; past it a subscribe is refused" },
    Setting { key: "pubsub.max_subscriptions", flag: "max-subscriptions", env: "WEIR_PUBSUB_MAX_SUBSCRIPTIONS", default: "128", help: "Topics and rooms one WebSocket or line-protocol connection may follow at once; past it a subscribe or join is refused" },
    Setting { key: "auth.tokens", flag: "tokens", env: "WEIR_AUTH_TOKENS", default: "", help: "Access tokens with scopes: TOKEN:SCOPES[,...], scopes publish, subscribe, enqueue, work, admin joined by +. None: open access, loopback only" },
    Setting { key: "auth.jwt_secret", flag: "jwt-secret", env: "WEIR_AUTH_JWT_SECRET", default: "", help: "Secret (at least 32 bytes) of HS256 tokens an application's backend signs for its users, with an expiry (exp), scopes (scope) and topic patterns (publish, subscribe)" },
    Setting { key: "auth.jwt_public_key", flag: "jwt-public-key", env: "WEIR_AUTH_JWT_PUBLIC_KEY", default: "", help: "PEM file of the P-256 public key that checks ES256 tokens an application's backend signs (instead of auth.jwt_secret)" },
    Setting { key: "database", flag: "database", env: "WEIR_DATABASE", default: "", help: "PostgreSQL URL (postgres://user:password@host:port/db) for jobs shared by several nodes. None: the embedded SQLite file data_dir/jobs.db" },
    Setting { key: "cluster.route_addr", flag: "route-addr", env: "WEIR_CLUSTER_ROUTE_ADDR", default: "", help: "With database set: address to listen on for routes, direct TCP links that carry pub/sub messages between nodes that have them (faster than relaying through PostgreSQL; authenticated by a secret kept in the database, not encrypted: keep it on a private network). None: relay through PostgreSQL" },
    Setting { key: "cluster.route_advertise", flag: "route-advertise", env: "WEIR_CLUSTER_ROUTE_ADVERTISE", default: "", help: "HOST:PORT other nodes dial to reach this node's routes. None: route_addr itself (which must then not be 0.0.0.0 or ::)" },
    Setting { key: "sqlite.synchronous", flag: "sqlite-synchronous", env: "WEIR_SQLITE_SYNCHRONOUS", default: "full", help: "How hard a SQLite commit (jobs.db, weir.db) waits for the disk: full (an answered write survives a power cut) or normal (it survives kill -9; a power cut may lose the last ones)" },
    Setting { key: "jobs.lease_ttl", flag: "lease-ttl", env: "WEIR_JOBS_LEASE_TTL", default: "10s", help: "A leased job whose worker sends no heartbeat for this long runs again elsewhere (workers beat every third of it)" },
    Setting { key: "jobs.retry_base", flag: "retry-base", env: "WEIR_JOBS_RETRY_BASE", default: "1s", help: "Backoff after a job's first failed attempt; doubles per attempt, with ±25% jitter" },
    Setting { key: "jobs.retry_max", flag: "retry-max", env: "WEIR_JOBS_RETRY_MAX", default: "1h", help: "Longest backoff between attempts" },
    Setting { key: "jobs.max_payload", flag: "max-job-payload", env: "WEIR_JOBS_MAX_PAYLOAD", default: "1MiB", help: "Largest job payload (JSON); larger gets 413 naming the field" },
    Setting { key: "jobs.queue_limits", flag: "queue-limits", env: "WEIR_JOBS_QUEUE_LIMITS", default: "", help: "Most jobs running at once per queue, across all workers and nodes: QUEUE=N[,...], e.g. email=4,crawl=2" },
    Setting { key: "jobs.queue_kinds", flag: "queue-kinds", env: "WEIR_JOBS_QUEUE_KINDS", default: "", help: "Kinds a queue accepts, others refused with 400: QUEUE=KIND|KIND[,...], e.g. email=send_welcome|send_reset. Unlisted queues take any kind" },
    Setting { key: "jobs.schedules", flag: "schedules", env: "WEIR_JOBS_SCHEDULES", default: "", help: "Periodic jobs, separated by ';': NAME CRON QUEUE/KIND [PAYLOAD], e.g. 'cleanup */10 * * * * maintenance/echo {\"all\":true}' (cron in UTC unless CRON_TZ=ZONE comes first, e.g. CRON_TZ=Europe/Berlin 0 9 * * *; also @hourly, @daily)" },
    Setting { key: "jobs.keep_completed", flag: "keep-completed", env: "WEIR_JOBS_KEEP_COMPLETED", default: "24h", help: "How long a completed job stays readable (with its result) before it is deleted; forever keeps it" },
    Setting { key: "jobs.keep_cancelled", flag: "keep-cancelled", env: "WEIR_JOBS_KEEP_CANCELLED", default: "24h", help: "How long a cancelled job stays readable before it is deleted; forever keeps it" },
    Setting { key: "jobs.keep_discarded", flag: "keep-discarded", env: "WEIR_JOBS_KEEP_DISCARDED", default: "7d", help: "How long a discarded job (one that failed its last attempt) stays readable, with its errors, before it is deleted; forever keeps it" },
    Setting { key: "shutdown.drain_timeout", flag: "drain-timeout", env: "WEIR_DRAIN_TIMEOUT", default: "10s", help: "On Ctrl-C or SIGTERM, time in-flight requests get to finish before connections are closed" },
];

impl Setting {
    /// Whether the value may hold a secret (tokens, a database password): never printed.
    pub fn secret(&self) -> bool {
        matches!(self.key, "auth.tokens" | "auth.jwt_secret" | "database")
    }
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The command-line flag the value was given with (its long name, without `--`).
    Flag(&'static str),
    /// The environment variable the value was read from.
    Env(&'static str),
    /// The configuration file the value was read from.
    File(PathBuf),
    /// The built-in default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag --{flag}"),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Default => f.write_str("the default"),
        }
    }
}

/// A configuration that cannot be used. `weir` exits with code 64 (EX_USAGE) on any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("invalid value {value:?} for {key} (from {origin}): expected {allowed}")]
    InvalidValue {
        /// The setting's key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// Where it came from.
        origin: Source,
        /// What is allowed.
        allowed: String,
    },
    /// The configuration file cannot be read or is not valid TOML.
    #[error("configuration file {path}: {message}")]
    File {
        /// The configuration file: the one given with `--config` (or `WEIR_CONFIG`), else
        /// `weir.toml`.
        path: PathBuf,
        /// What is wrong, worded to follow the path (`cannot be read: …`, `is not valid TOML: …`).
        message: String,
    },
    /// The configuration file has a key that is not a setting.
    #[error("configuration file {path}: unknown key {key:?}; known keys: {known}")]
    UnknownKey {
        /// The configuration file that has the key.
        path: PathBuf,
        /// The key, dotted as in [`Setting::key`] (`[http] adress` is `http.adress`).
        key: String,
        /// The keys that exist.
        known: String,
    },
}
