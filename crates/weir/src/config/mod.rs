//! Configuration of `weir serve`: one table of settings, four layers, validation up front.
//!
//! Every setting has a key (as in `weir.toml`), a flag and a `WEIR_*` environment variable.
//! The value comes from the first layer that has it: flag > environment > file > default.
//! The whole configuration is parsed and checked before anything is bound or created, and
//! every invalid value is reported at once, each naming its key, where it came from, the
//! value and what is allowed.

mod file;
pub mod values;

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;
use weir_http::ServerConfig;

pub use file::ConfigFile;
use values::{
    parse_count, parse_duration, parse_keep, parse_queue_kinds, parse_queue_limits,
    parse_retention_rules, parse_schedules, parse_size, parse_socket_addr,
};

use crate::auth::Tokens;

/// One configurable value.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The key in `weir.toml` (dotted for tables: `http.addr` is `[http] addr`).
    pub key: &'static str,
    /// The long flag, without `--`.
    pub flag: &'static str,
    /// The environment variable.
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
    Setting { key: "data_dir", flag: "data-dir", env: "WEIR_DATA_DIR", default: "./weir-data", help: "Directory for the embedded database and other state (created if missing)" },
    Setting { key: "log.format", flag: "log-format", env: "WEIR_LOG_FORMAT", default: "human", help: "Log format: human, or json for log collectors" },
    Setting { key: "log.level", flag: "log-level", env: "WEIR_LOG", default: "info", help: "Log filter: a level (error, warn, info, debug, trace) or per-target, e.g. info,weir_http=debug" },
    Setting { key: "runtime.worker_threads", flag: "worker-threads", env: "WEIR_WORKER_THREADS", default: "0", help: "Tokio worker threads; 0 means one per CPU core" },
    Setting { key: "http.max_connections", flag: "max-connections", env: "WEIR_HTTP_MAX_CONNECTIONS", default: "10000", help: "Connections served at once; more wait in the accept backlog" },
    Setting { key: "http.max_head_bytes", flag: "max-head-bytes", env: "WEIR_HTTP_MAX_HEAD_BYTES", default: "32KiB", help: "Largest request head (request line and headers); larger gets 431" },
    Setting { key: "http.max_headers", flag: "max-headers", env: "WEIR_HTTP_MAX_HEADERS", default: "100", help: "Most header fields in a request (at most 256); more gets 431" },
    Setting { key: "http.max_target_bytes", flag: "max-target-bytes", env: "WEIR_HTTP_MAX_TARGET_BYTES", default: "8KiB", help: "Longest request-target (path and query); longer gets 414" },
    Setting { key: "http.max_body_bytes", flag: "max-body-bytes", env: "WEIR_HTTP_MAX_BODY_BYTES", default: "16MiB", help: "Largest request body; larger gets 413 without being read" },
    Setting { key: "http.header_read_timeout", flag: "header-read-timeout", env: "WEIR_HTTP_HEADER_READ_TIMEOUT", default: "10s", help: "Time allowed for a request head to arrive; slower gets 408" },
    Setting { key: "http.idle_timeout", flag: "idle-timeout", env: "WEIR_HTTP_IDLE_TIMEOUT", default: "60s", help: "Time a keep-alive connection may sit idle before it is closed" },
    Setting { key: "http.body_read_timeout", flag: "body-read-timeout", env: "WEIR_HTTP_BODY_READ_TIMEOUT", default: "30s", help: "Time one read of a request body may wait; slower gets 408" },
    Setting { key: "http.write_timeout", flag: "write-timeout", env: "WEIR_HTTP_WRITE_TIMEOUT", default: "30s", help: "Time one write of a response may wait for the client before the connection is closed" },
    Setting { key: "http.sse_heartbeat", flag: "sse-heartbeat", env: "WEIR_HTTP_SSE_HEARTBEAT", default: "15s", help: "Interval of keep-alive comments on quiet Server-Sent Events streams" },
    Setting { key: "pubsub.max_payload", flag: "max-payload", env: "WEIR_PUBSUB_MAX_PAYLOAD", default: "1MiB", help: "Largest message a client may publish; larger gets 413" },
    Setting { key: "pubsub.retention_messages", flag: "retention-messages", env: "WEIR_PUBSUB_RETENTION_MESSAGES", default: "1000", help: "Messages each topic keeps for replay (0: live only)" },
    Setting { key: "pubsub.retention_age", flag: "retention-age", env: "WEIR_PUBSUB_RETENTION_AGE", default: "1h", help: "Age past which a message is no longer replayed" },
    Setting { key: "pubsub.lag_limit", flag: "lag-limit", env: "WEIR_PUBSUB_LAG_LIMIT", default: "1024", help: "Messages a subscriber may fall behind before the slow-subscriber policy applies" },
    Setting { key: "pubsub.slow_policy", flag: "slow-policy", env: "WEIR_PUBSUB_SLOW_POLICY", default: "drop-oldest", help: "For a subscriber past the lag limit: drop-oldest (skip ahead, with a lagged notice) or disconnect" },
    Setting { key: "pubsub.max_topics", flag: "max-topics", env: "WEIR_PUBSUB_MAX_TOPICS", default: "100000", help: "Topics held at most; publishing to a new topic past it gets 503" },
    Setting { key: "pubsub.retention", flag: "retention", env: "WEIR_PUBSUB_RETENTION", default: "", help: "Retention by topic pattern, first match wins: PATTERN=COUNT/AGE[,...], e.g. chat.>=200/24h,ticks.*=10/1m" },
    Setting { key: "pubsub.durable", flag: "durable", env: "WEIR_PUBSUB_DURABLE", default: "", help: "Topic patterns kept in the store (data_dir/weir.db) across restarts, comma-separated, e.g. orders.>,audit.*; a publish to them is answered once committed" },
    Setting { key: "pubsub.max_subscribers", flag: "max-subscribers", env: "WEIR_PUBSUB_MAX_SUBSCRIBERS", default: "100000", help: "Subscribers one topic (or one wildcard pattern) may have; past it a subscribe is refused" },
    Setting { key: "pubsub.max_subscriptions", flag: "max-subscriptions", env: "WEIR_PUBSUB_MAX_SUBSCRIPTIONS", default: "128", help: "Topics and rooms one WebSocket or line-protocol connection may follow at once; past it a subscribe or join is refused" },
    Setting { key: "auth.tokens", flag: "tokens", env: "WEIR_AUTH_TOKENS", default: "", help: "Access tokens with scopes: TOKEN:SCOPES[,...], scopes publish, subscribe, enqueue, work, admin joined by +. None: open access, loopback only" },
    Setting { key: "database", flag: "database", env: "WEIR_DATABASE", default: "", help: "PostgreSQL URL (postgres://user:password@host:port/db) for jobs shared by several nodes. None: the embedded SQLite file data_dir/jobs.db" },
    Setting { key: "jobs.lease_ttl", flag: "lease-ttl", env: "WEIR_JOBS_LEASE_TTL", default: "10s", help: "A leased job whose worker sends no heartbeat for this long runs again elsewhere (workers beat every third of it)" },
    Setting { key: "jobs.retry_base", flag: "retry-base", env: "WEIR_JOBS_RETRY_BASE", default: "1s", help: "Backoff after a job's first failed attempt; doubles per attempt, with ±25% jitter" },
    Setting { key: "jobs.retry_max", flag: "retry-max", env: "WEIR_JOBS_RETRY_MAX", default: "1h", help: "Longest backoff between attempts" },
    Setting { key: "jobs.max_payload", flag: "max-job-payload", env: "WEIR_JOBS_MAX_PAYLOAD", default: "1MiB", help: "Largest job payload (JSON); larger gets 413 naming the field" },
    Setting { key: "jobs.queue_limits", flag: "queue-limits", env: "WEIR_JOBS_QUEUE_LIMITS", default: "", help: "Most jobs running at once per queue, across all workers and nodes: QUEUE=N[,...], e.g. email=4,crawl=2" },
    Setting { key: "jobs.queue_kinds", flag: "queue-kinds", env: "WEIR_JOBS_QUEUE_KINDS", default: "", help: "Kinds a queue accepts, others refused with 400: QUEUE=KIND|KIND[,...], e.g. email=send_welcome|send_reset. Unlisted queues take any kind" },
    Setting { key: "jobs.schedules", flag: "schedules", env: "WEIR_JOBS_SCHEDULES", default: "", help: "Periodic jobs, separated by ';': NAME CRON QUEUE/KIND [PAYLOAD], e.g. 'cleanup */10 * * * * maintenance/echo {\"all\":true}' (cron in UTC, also @hourly, @daily)" },
    Setting { key: "jobs.keep_completed", flag: "keep-completed", env: "WEIR_JOBS_KEEP_COMPLETED", default: "24h", help: "How long a completed job stays readable (with its result) before it is deleted; forever keeps it" },
    Setting { key: "jobs.keep_cancelled", flag: "keep-cancelled", env: "WEIR_JOBS_KEEP_CANCELLED", default: "24h", help: "How long a cancelled job stays readable before it is deleted; forever keeps it" },
    Setting { key: "jobs.keep_discarded", flag: "keep-discarded", env: "WEIR_JOBS_KEEP_DISCARDED", default: "7d", help: "How long a discarded job (one that failed its last attempt) stays readable, with its errors, before it is deleted; forever keeps it" },
    Setting { key: "shutdown.drain_timeout", flag: "drain-timeout", env: "WEIR_DRAIN_TIMEOUT", default: "10s", help: "On Ctrl-C or SIGTERM, time in-flight requests get to finish before connections are closed" },
];

impl Setting {
    /// Whether the value may hold a secret (tokens, a database password): never printed.
    pub fn secret(&self) -> bool {
        matches!(self.key, "auth.tokens" | "database")
    }
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag(&'static str),
    /// An environment variable.
    Env(&'static str),
    /// The configuration file.
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
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The configuration file has a key that is not a setting.
    #[error("configuration file {path}: unknown key {key:?}; known keys: {known}")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The unknown key.
        key: String,
        /// The keys that exist.
        known: String,
    },
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Lines for people.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The validated configuration of `weir serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address of the HTTP listener.
    pub http_addr: SocketAddr,
    /// Address of the line-protocol listener.
    pub line_addr: SocketAddr,
    /// Line-protocol connections served at once.
    pub line_max_connections: usize,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter directives, already checked to parse.
    pub log_filter: String,
    /// Tokio worker threads; `None` for one per core.
    pub worker_threads: Option<NonZeroUsize>,
    /// HTTP server limits and timeouts (the drain deadline included).
    pub http: ServerConfig,
    /// Heartbeat interval of Server-Sent Events streams.
    pub sse_heartbeat: Duration,
    /// The pub/sub hub's limits and retention.
    pub pubsub: weir_pubsub::HubConfig,
    /// Topics and rooms one connection may follow at once.
    pub max_subscriptions: usize,
    /// Access tokens; empty for open access on loopback.
    pub tokens: Tokens,
    /// PostgreSQL URL for the job store; `None` for SQLite under the data directory.
    pub database: Option<String>,
    /// The job service's limits, timings and schedules.
    pub jobs: weir_jobs::JobsConfig,
    /// The job store's retry policy and queue limits.
    pub job_store: weir_jobs::StoreOptions,
}

impl ServeConfig {
    /// The configuration with every setting at its default, as a test starts from.
    pub fn defaults() -> ServeConfig {
        Layers::default().resolve().expect("the defaults are valid")
    }
}

/// The layers a configuration is read from.
#[derive(Debug, Default)]
pub struct Layers<'a> {
    matches: Option<&'a ArgMatches>,
    file: Option<ConfigFile>,
}

impl<'a> Layers<'a> {
    /// Layers from parsed command-line arguments (which include the environment, through
    /// clap) and an optional configuration file.
    pub fn new(matches: &'a ArgMatches, file: Option<ConfigFile>) -> Self {
        Self {
            matches: Some(matches),
            file,
        }
    }

    /// The value for `setting` and where it came from.
    fn lookup(&self, setting: &Setting) -> (String, Source) {
        if let Some(matches) = self.matches {
            if let Some(value) = matches.get_one::<String>(setting.key) {
                let source = match matches.value_source(setting.key) {
                    Some(ValueSource::EnvVariable) => Source::Env(setting.env),
                    _ => Source::Flag(setting.flag),
                };
                return (value.clone(), source);
            }
        }
        if let Some(file) = &self.file {
            if let Some(value) = file.get(setting.key) {
                return (value.to_string(), Source::File(file.path().to_path_buf()));
            }
        }
        (setting.default.to_string(), Source::Default)
    }

    /// Reads and validates every setting; returns all the errors found.
    pub fn resolve(&self) -> Result<ServeConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut get =
            |key: &'static str, parse: &dyn Fn(&str) -> Result<Parsed, String>| -> Parsed {
                let setting = SETTINGS.iter().find(|s| s.key == key).expect("a known key");
                let (value, source) = self.lookup(setting);
                match parse(&value) {
                    Ok(parsed) => parsed,
                    Err(allowed) => {
                        errors.push(ConfigError::InvalidValue {
                            key,
                            // Tokens are secrets: an error names the key, not the value.
                            value: if setting.secret() {
                                "(hidden)".to_string()
                            } else {
                                value
                            },
                            origin: source,
                            allowed,
                        });
                        Parsed::Invalid
                    }
                }
            };
        let duration = |text: &str| parse_duration(text).map(Parsed::Duration);
        let positive_duration = |text: &str| match parse_duration(text)? {
            d if d.is_zero() => Err("a duration above zero, such as 500ms, 10s or 2m".to_string()),
            d => Ok(Parsed::Duration(d)),
        };
        let size = |min: u64| {
            move |text: &str| match parse_size(text)? {
                n if n < min => Err(format!(
                    "a size of at least {min} bytes, such as 64KiB or 16MiB"
                )),
                n => Ok(Parsed::Number(n)),
            }
        };

        let http_addr = get("http.addr", &|t| parse_socket_addr(t).map(Parsed::Addr));
        let line_addr = get("line.addr", &|t| parse_socket_addr(t).map(Parsed::Addr));
        let line_max_connections = get("line.max_connections", &|t| {
            parse_count(t, 1, 1_000_000).map(Parsed::Number)
        });
        let data_dir = get("data_dir", &|t| {
            if t.trim().is_empty() {
                Err("a directory path".to_string())
            } else {
                Ok(Parsed::Text(t.to_string()))
            }
        });
        let log_format = get("log.format", &|t| match t {
            "human" => Ok(Parsed::Text(t.into())),
            "json" => Ok(Parsed::Text(t.into())),
            _ => Err("human or json".to_string()),
        });
        let log_filter = get("log.level", &|t| {
            crate::logging::parse_filter(t).map(|_| Parsed::Text(t.to_string()))
        });
        let worker_threads = get("runtime.worker_threads", &|t| {
            parse_count(t, 0, 1024).map(Parsed::Number)
        });
        let max_connections = get("http.max_connections", &|t| {
            parse_count(t, 1, 1_000_000).map(Parsed::Number)
        });
        let max_head_bytes = get("http.max_head_bytes", &size(256));
        let max_headers = get("http.max_headers", &|t| {
            parse_count(t, 1, ServerConfig::MAX_HEADERS_CEILING as u64).map(Parsed::Number)
        });
        let max_target_bytes = get("http.max_target_bytes", &size(16));
        let max_body_bytes = get("http.max_body_bytes", &size(0));
        let header_read_timeout = get("http.header_read_timeout", &positive_duration);
        let idle_timeout = get("http.idle_timeout", &positive_duration);
        let body_read_timeout = get("http.body_read_timeout", &positive_duration);
        let write_timeout = get("http.write_timeout", &positive_duration);
        let sse_heartbeat = get("http.sse_heartbeat", &positive_duration);
        let drain_timeout = get("shutdown.drain_timeout", &duration);
        let max_payload = get("pubsub.max_payload", &size(1));
        let retention_messages = get("pubsub.retention_messages", &|t| {
            parse_count(t, 0, 10_000_000).map(Parsed::Number)
        });
        let retention_age = get("pubsub.retention_age", &duration);
        let lag_limit = get("pubsub.lag_limit", &|t| {
            parse_count(t, 1, 1_000_000).map(Parsed::Number)
        });
        let slow_policy = get("pubsub.slow_policy", &|t| match t {
            "drop-oldest" | "disconnect" => Ok(Parsed::Text(t.into())),
            _ => Err("drop-oldest or disconnect".to_string()),
        });
        let max_topics = get("pubsub.max_topics", &|t| {
            parse_count(t, 1, 100_000_000).map(Parsed::Number)
        });
        let retention_rules = get("pubsub.retention", &|t| {
            parse_retention_rules(t).map(Parsed::Retention)
        });
        let durable = get("pubsub.durable", &|t| {
            t.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    weir_pubsub::TopicPattern::new(p).map_err(|e| {
                        format!(
                            "topic patterns separated by commas, such as orders.>,audit.* ({e})"
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Parsed::Patterns)
        });
        let max_subscribers = get("pubsub.max_subscribers", &|t| {
            parse_count(t, 1, 100_000_000).map(Parsed::Number)
        });
        let max_subscriptions = get("pubsub.max_subscriptions", &|t| {
            parse_count(t, 1, 1_000_000).map(Parsed::Number)
        });
        let tokens = get("auth.tokens", &|t| Tokens::parse(t).map(Parsed::Tokens));
        let database = get("database", &|t| match t.trim() {
            "" => Ok(Parsed::Text(String::new())),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                weir_jobs::PostgresStore::check_url(url)
                    .map(|()| Parsed::Text(url.to_string()))
                    .map_err(|e| {
                        format!(
                            "a PostgreSQL URL such as postgres://weir@127.0.0.1:5432/weir ({e})"
                        )
                    })
            }
            _ => Err("empty (SQLite) or a PostgreSQL URL starting postgres://".to_string()),
        });
        let lease_ttl = get("jobs.lease_ttl", &|t| match parse_duration(t)? {
            d if d < Duration::from_secs(1) => {
                Err("a duration of at least 1s, such as 10s".to_string())
            }
            d => Ok(Parsed::Duration(d)),
        });
        let retry_base = get("jobs.retry_base", &positive_duration);
        let retry_max = get("jobs.retry_max", &positive_duration);
        let job_payload = get("jobs.max_payload", &size(2));
        let queue_limits = get("jobs.queue_limits", &|t| {
            parse_queue_limits(t).map(Parsed::Limits)
        });
        let queue_kinds = get("jobs.queue_kinds", &|t| {
            parse_queue_kinds(t).map(Parsed::Kinds)
        });
        let keep = |t: &str| parse_keep(t).map(Parsed::Keep);
        let keep_completed = get("jobs.keep_completed", &keep);
        let keep_cancelled = get("jobs.keep_cancelled", &keep);
        let keep_discarded = get("jobs.keep_discarded", &keep);
        let schedules = get("jobs.schedules", &|t| {
            parse_schedules(t).map(Parsed::Schedules)
        });
        // An open server listens on loopback only: with no token, anyone who can reach the
        // port could publish and read everything.
        if let (Parsed::Tokens(tokens), Parsed::Addr(http), Parsed::Addr(line)) =
            (&tokens, &http_addr, &line_addr)
        {
            for (key, addr) in [("http.addr", http), ("line.addr", line)] {
                if tokens.is_open() && !addr.ip().is_loopback() {
                    let setting = SETTINGS.iter().find(|s| s.key == key).expect("a known key");
                    let (value, origin) = self.lookup(setting);
                    errors.push(ConfigError::InvalidValue {
                        key,
                        value,
                        origin,
                        allowed: "a loopback address (127.0.0.1 or ::1) while auth.tokens is empty; set tokens to listen beyond this machine".to_string(),
                    });
                }
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        let defaults = ServerConfig::default();
        Ok(ServeConfig {
            http_addr: http_addr.addr(),
            line_addr: line_addr.addr(),
            line_max_connections: line_max_connections.number() as usize,
            data_dir: PathBuf::from(data_dir.text()),
            log_format: if log_format.text() == "json" {
                LogFormat::Json
            } else {
                LogFormat::Human
            },
            log_filter: log_filter.text(),
            worker_threads: NonZeroUsize::new(worker_threads.number() as usize),
            http: ServerConfig {
                max_connections: nonzero(max_connections.number()),
                max_head_bytes: nonzero(max_head_bytes.number()),
                max_headers: nonzero(max_headers.number()),
                max_target_bytes: nonzero(max_target_bytes.number()),
                max_body_bytes: max_body_bytes.number(),
                header_read_timeout: header_read_timeout.duration(),
                idle_timeout: idle_timeout.duration(),
                body_read_timeout: body_read_timeout.duration(),
                write_timeout: write_timeout.duration(),
                drain_timeout: drain_timeout.duration(),
                ..defaults
            },
            sse_heartbeat: sse_heartbeat.duration(),
            pubsub: weir_pubsub::HubConfig {
                default_retention: weir_pubsub::Retention {
                    max_messages: retention_messages.number() as usize,
                    max_age: retention_age.duration(),
                },
                retention_rules: retention_rules.retention(),
                lag_limit: nonzero(lag_limit.number()),
                slow_policy: if slow_policy.text() == "disconnect" {
                    weir_pubsub::SlowSubscriberPolicy::Disconnect
                } else {
                    weir_pubsub::SlowSubscriberPolicy::DropOldest
                },
                max_topics: max_topics.number() as usize,
                max_payload: usize::try_from(max_payload.number()).unwrap_or(usize::MAX),
                max_subscribers_per_topic: max_subscribers.number() as usize,
                durable: durable.patterns(),
            },
            max_subscriptions: max_subscriptions.number() as usize,
            tokens: tokens.tokens(),
            database: Some(database.text()).filter(|url| !url.is_empty()),
            jobs: weir_jobs::JobsConfig {
                lease_ttl: lease_ttl.duration(),
                max_payload: usize::try_from(job_payload.number()).unwrap_or(usize::MAX),
                schedules: schedules.schedules(),
                queue_kinds: queue_kinds.kinds(),
                retention: weir_jobs::Retention {
                    completed: keep_completed.keep(),
                    cancelled: keep_cancelled.keep(),
                    discarded: keep_discarded.keep(),
                },
                ..weir_jobs::JobsConfig::default()
            },
            job_store: weir_jobs::StoreOptions {
                retry: weir_jobs::RetryPolicy {
                    base: retry_base.duration(),
                    cap: retry_max.duration(),
                },
                queue_limits: queue_limits.limits(),
            },
        })
    }
}

fn nonzero(n: u64) -> NonZeroUsize {
    NonZeroUsize::new(usize::try_from(n).unwrap_or(usize::MAX)).unwrap_or(NonZeroUsize::MIN)
}

/// A parsed value, before it is put in its typed field.
enum Parsed {
    Addr(SocketAddr),
    Text(String),
    Number(u64),
    Duration(Duration),
    Keep(Option<Duration>),
    Retention(Vec<(weir_pubsub::TopicPattern, weir_pubsub::Retention)>),
    Tokens(Tokens),
    Patterns(Vec<weir_pubsub::TopicPattern>),
    Limits(std::collections::BTreeMap<String, u32>),
    Schedules(Vec<weir_jobs::Schedule>),
    Kinds(std::collections::BTreeMap<String, std::collections::BTreeSet<String>>),
    Invalid,
}

impl Parsed {
    fn addr(self) -> SocketAddr {
        match self {
            Parsed::Addr(addr) => addr,
            _ => unreachable!("validated as an address"),
        }
    }
    fn text(self) -> String {
        match self {
            Parsed::Text(text) => text,
            _ => unreachable!("validated as text"),
        }
    }
    fn number(self) -> u64 {
        match self {
            Parsed::Number(n) => n,
            _ => unreachable!("validated as a number"),
        }
    }
    fn duration(self) -> Duration {
        match self {
            Parsed::Duration(d) => d,
            _ => unreachable!("validated as a duration"),
        }
    }
    fn keep(self) -> Option<Duration> {
        match self {
            Parsed::Keep(keep) => keep,
            _ => unreachable!("validated as a retention"),
        }
    }
    fn retention(self) -> Vec<(weir_pubsub::TopicPattern, weir_pubsub::Retention)> {
        match self {
            Parsed::Retention(rules) => rules,
            _ => unreachable!("validated as retention rules"),
        }
    }
    fn patterns(self) -> Vec<weir_pubsub::TopicPattern> {
        match self {
            Parsed::Patterns(patterns) => patterns,
            _ => unreachable!("validated as patterns"),
        }
    }
    fn limits(self) -> std::collections::BTreeMap<String, u32> {
        match self {
            Parsed::Limits(limits) => limits,
            _ => unreachable!("validated as queue limits"),
        }
    }
    fn kinds(self) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
        match self {
            Parsed::Kinds(kinds) => kinds,
            _ => unreachable!("validated as queue kinds"),
        }
    }
    fn schedules(self) -> Vec<weir_jobs::Schedule> {
        match self {
            Parsed::Schedules(schedules) => schedules,
            _ => unreachable!("validated as schedules"),
        }
    }
    fn tokens(self) -> Tokens {
        match self {
            Parsed::Tokens(tokens) => tokens,
            _ => unreachable!("validated as tokens"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = ServeConfig::defaults();
        assert_eq!(config.http_addr, "127.0.0.1:7070".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("./weir-data"));
        assert_eq!(config.log_format, LogFormat::Human);
        assert_eq!(config.http.drain_timeout, Duration::from_secs(10));
        assert_eq!(config.http.max_head_bytes.get(), 32 * 1024);
        assert_eq!(config.worker_threads, None);
    }

    #[test]
    fn every_key_is_unique() {
        for (i, a) in SETTINGS.iter().enumerate() {
            for b in &SETTINGS[i + 1..] {
                assert!(
                    a.key != b.key && a.flag != b.flag && a.env != b.env,
                    "{a:?} / {b:?}"
                );
            }
            assert!(a.env.starts_with("WEIR_"));
        }
    }

    #[test]
    fn documented_in_configuration_md() {
        let docs = include_str!("../../../../docs/configuration.md");
        for setting in SETTINGS {
            let parts = [setting.key, setting.flag, setting.env, setting.default];
            for part in parts.into_iter().filter(|part| !part.is_empty()) {
                assert!(
                    docs.contains(&format!("`{part}`")),
                    "docs/configuration.md lacks `{part}`"
                );
            }
        }
    }
}
