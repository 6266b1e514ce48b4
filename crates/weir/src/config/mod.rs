//! Configuration of `weir serve`: one table of settings, four layers, validation up front.
//!
//! Every setting has a key (as in `weir.toml`), a flag and a `WEIR_*` environment variable.
//! The value comes from the first layer that has it: flag > environment > file > default.
//! The whole configuration is parsed and checked before anything is bound or created, and
//! every invalid value is reported at once, each naming its key, where it came from, the
//! value and what is allowed.

mod file;
mod settings;
pub mod values;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;
use weir_http::ServerConfig;

pub use file::ConfigFile;
pub use settings::{ConfigError, Setting, Source, SETTINGS};
use values::{
    parse_count, parse_duration, parse_host_list, parse_keep, parse_origin_list, parse_queue_kinds,
    parse_queue_limits, parse_retention_rules, parse_schedules, parse_size, parse_socket_addr,
};

use weir_auth::{SignedTokens, Tokens};

use crate::logging::parse_filter;
pub use crate::logging::LogFormat;

/// The validated configuration of `weir serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address of the HTTP listener.
    pub http_addr: SocketAddr,
    /// Address of the line-protocol listener.
    pub line_addr: SocketAddr,
    /// Line-protocol connections one client address may hold (0: no limit).
    pub line_max_connections_per_address: usize,
    /// With tokens set, time a line-protocol connection has to authenticate.
    pub line_auth_timeout: Duration,
    /// Line-protocol connections served at once.
    pub line_max_connections: usize,
    /// Where state is kept, created if missing: `jobs.db` when no `database` is set, and
    /// `weir.db` when a topic is durable.
    pub data_dir: PathBuf,
    /// How log lines are written to standard error: for people, or JSON for collectors.
    pub log_format: LogFormat,
    /// Log filter directives, already checked to parse.
    pub log_filter: String,
    /// Tokio worker threads; `None` for one per core.
    pub worker_threads: Option<NonZeroUsize>,
    /// HTTP server limits and timeouts (the drain deadline included).
    pub http: ServerConfig,
    /// Heartbeat interval of Server-Sent Events streams.
    pub sse_heartbeat: Duration,
    /// Which hosts and browser origins may use the HTTP API.
    pub edge: weir_http::EdgePolicy,
    /// The pub/sub hub's limits and retention.
    pub pubsub: weir_pubsub::HubConfig,
    /// Topics and rooms one connection may follow at once.
    pub max_subscriptions: usize,
    /// Access tokens; empty for open access on loopback.
    pub tokens: Tokens,
    /// PostgreSQL URL for the job store; `None` for SQLite under the data directory.
    pub database: Option<String>,
    /// With `database`: where this node's pub/sub routes listen, and the address other
    /// nodes dial; `None` relays through PostgreSQL.
    pub routes: Option<weir_pubsub::postgres_relay::RouteOptions>,
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
        let mut r = Resolver {
            layers: self,
            errors: Vec::new(),
        };
        let positive_duration = |text: &str| match parse_duration(text)? {
            d if d.is_zero() => Err("a duration above zero, such as 500ms, 10s or 2m".to_string()),
            d => Ok(d),
        };
        let size = |min: u64| {
            move |text: &str| match parse_size(text)? {
                n if n < min => Err(format!(
                    "a size of at least {min} bytes, such as 64KiB or 16MiB"
                )),
                n => Ok(n),
            }
        };
        let count = |min: u64, max: u64| move |text: &str| parse_count(text, min, max);

        let http_addr = r.get("http.addr", parse_socket_addr);
        let line_addr = r.get("line.addr", parse_socket_addr);
        let line_max_connections = r.get("line.max_connections", count(1, 1_000_000));
        let line_per_address = r.get("line.max_connections_per_address", count(0, 1_000_000));
        let line_auth_timeout = r.get("line.auth_timeout", positive_duration);
        let http_per_address = r.get("http.max_connections_per_address", count(0, 1_000_000));
        let data_dir = r.get("data_dir", |t| {
            if t.trim().is_empty() {
                Err("a directory path".to_string())
            } else {
                Ok(PathBuf::from(t))
            }
        });
        let log_format = r.get("log.format", |t| match t {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            _ => Err("human or json".to_string()),
        });
        let log_filter = r.get("log.level", |t| parse_filter(t).map(|_| t.to_string()));
        let worker_threads = r.get("runtime.worker_threads", count(0, 1024));
        let max_connections = r.get("http.max_connections", count(1, 1_000_000));
        let max_head_bytes = r.get("http.max_head_bytes", size(256));
        let max_headers = r.get(
            "http.max_headers",
            count(1, ServerConfig::MAX_HEADERS_CEILING as u64),
        );
        let max_target_bytes = r.get("http.max_target_bytes", size(16));
        let max_body_bytes = r.get("http.max_body_bytes", size(0));
        let header_read_timeout = r.get("http.header_read_timeout", positive_duration);
        let idle_timeout = r.get("http.idle_timeout", positive_duration);
        let body_read_timeout = r.get("http.body_read_timeout", positive_duration);
        let write_timeout = r.get("http.write_timeout", positive_duration);
        let sse_heartbeat = r.get("http.sse_heartbeat", positive_duration);
        let allowed_hosts = r.get("http.allowed_hosts", parse_host_list);
        let cors_origins = r.get("http.cors_origins", parse_origin_list);
        let drain_timeout = r.get("shutdown.drain_timeout", parse_duration);
        let max_payload = r.get("pubsub.max_payload", size(1));
        let max_topic_bytes = r.get("pubsub.max_topic_bytes", size(1024));
        let max_retained_bytes = r.get("pubsub.max_retained_bytes", size(1024));
        let topic_idle = r.get("pubsub.topic_idle", positive_duration);
        let retention_messages = r.get("pubsub.retention_messages", count(0, 10_000_000));
        let retention_age = r.get("pubsub.retention_age", parse_duration);
        let max_lag_bytes = r.get("pubsub.max_lag_bytes", size(1024));
        let slow_policy = r.get("pubsub.slow_policy", |t| match t {
            "drop-oldest" => Ok(weir_pubsub::SlowSubscriberPolicy::DropOldest),
            "disconnect" => Ok(weir_pubsub::SlowSubscriberPolicy::Disconnect),
            _ => Err("drop-oldest or disconnect".to_string()),
        });
        let max_topics = r.get("pubsub.max_topics", count(1, 100_000_000));
        let retention_rules = r.get("pubsub.retention", parse_retention_rules);
        let durable = r.get("pubsub.durable", |t| {
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
        });
        let max_subscribers = r.get("pubsub.max_subscribers", count(1, 100_000_000));
        let max_subscriptions = r.get("pubsub.max_subscriptions", count(1, 1_000_000));
        let listed = r.get("auth.tokens", Tokens::parse);
        let jwt_secret = r.get("auth.jwt_secret", |t| {
            (!t.is_empty())
                .then(|| SignedTokens::hs256(t.as_bytes()))
                .transpose()
        });
        let jwt_public_key = r.get("auth.jwt_public_key", |t| {
            (!t.trim().is_empty())
                .then(|| {
                    let pem = std::fs::read(t.trim())
                        .map_err(|error| format!("a readable PEM file ({error})"))?;
                    SignedTokens::es256(&pem)
                })
                .transpose()
        });
        let tokens = match (listed, jwt_secret, jwt_public_key) {
            (Some(listed), Some(None), Some(None)) => Some(listed),
            (Some(listed), Some(Some(signed)), Some(None))
            | (Some(listed), Some(None), Some(Some(signed))) => Some(listed.with_signed(signed)),
            (Some(_), Some(Some(_)), Some(Some(_))) => {
                r.refuse(
                    "auth.jwt_public_key",
                    "empty while auth.jwt_secret is set: signed tokens use one key".to_string(),
                );
                None
            }
            _ => None,
        };
        let database = r.get("database", |t| match t.trim() {
            "" => Ok(None),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                weir_jobs::PostgresStore::check_url(url)
                    .map(|()| Some(url.to_string()))
                    .map_err(|e| {
                        format!(
                            "a PostgreSQL URL such as postgres://weir@127.0.0.1:5432/weir ({e})"
                        )
                    })
            }
            _ => Err("empty (SQLite) or a PostgreSQL URL starting postgres://".to_string()),
        });
        let route_addr = r.get("cluster.route_addr", |t| match t.trim() {
            "" => Ok(None),
            addr => parse_socket_addr(addr).map(Some),
        });
        let route_advertise = r.get("cluster.route_advertise", |t| match t.trim() {
            "" => Ok(None),
            addr => match addr.rsplit_once(':') {
                Some((host, port))
                    if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) =>
                {
                    Ok(Some(addr.to_string()))
                }
                _ => Err("HOST:PORT that other nodes can dial, such as 10.0.0.5:7072".to_string()),
            },
        });
        let routes = match (&database, route_addr, route_advertise) {
            (_, Some(None), Some(Some(_))) => {
                r.refuse(
                    "cluster.route_advertise",
                    "empty while cluster.route_addr is empty: set the address to listen on"
                        .to_string(),
                );
                None
            }
            (Some(None), Some(Some(_)), _) => {
                r.refuse(
                    "cluster.route_addr",
                    "empty without database: routes join the nodes of one PostgreSQL".to_string(),
                );
                None
            }
            (_, Some(None), _) => Some(None),
            (_, Some(Some(listen)), Some(advertise)) => {
                if advertise.is_none() && listen.ip().is_unspecified() {
                    r.refuse(
                        "cluster.route_advertise",
                        "set while cluster.route_addr listens on every interface: other nodes need an address they can dial".to_string(),
                    );
                    None
                } else {
                    Some(Some(weir_pubsub::postgres_relay::RouteOptions {
                        listen,
                        advertise,
                    }))
                }
            }
            _ => None,
        };
        let lease_ttl = r.get("jobs.lease_ttl", |t| match parse_duration(t)? {
            d if d < Duration::from_secs(1) => {
                Err("a duration of at least 1s, such as 10s".to_string())
            }
            d => Ok(d),
        });
        let retry_base = r.get("jobs.retry_base", positive_duration);
        let retry_max = r.get("jobs.retry_max", positive_duration);
        let job_payload = r.get("jobs.max_payload", size(2));
        let queue_limits = r.get("jobs.queue_limits", parse_queue_limits);
        let synchronous = r.get("sqlite.synchronous", str::parse);
        let queue_kinds = r.get("jobs.queue_kinds", parse_queue_kinds);
        let keep_completed = r.get("jobs.keep_completed", parse_keep);
        let keep_cancelled = r.get("jobs.keep_cancelled", parse_keep);
        let keep_discarded = r.get("jobs.keep_discarded", parse_keep);
        let schedules = r.get("jobs.schedules", parse_schedules);
        // An open server listens on loopback only: with no token, anyone who can reach the
        // port could publish and read everything.
        if let (Some(tokens), Some(http), Some(line)) = (&tokens, &http_addr, &line_addr) {
            for (key, addr) in [("http.addr", http), ("line.addr", line)] {
                if tokens.is_open() && !addr.ip().is_loopback() {
                    r.refuse(key, "a loopback address (127.0.0.1 or ::1) while auth.tokens is empty; set tokens to listen beyond this machine".to_string());
                }
            }
        }

        // Every value is here exactly when no error was found: `?` stops at the first
        // missing one, and then the errors say why.
        let config = (|| {
            let defaults = ServerConfig::default();
            Some(ServeConfig {
                http_addr: http_addr?,
                line_addr: line_addr?,
                line_max_connections: line_max_connections? as usize,
                line_max_connections_per_address: line_per_address? as usize,
                line_auth_timeout: line_auth_timeout?,
                data_dir: data_dir?,
                log_format: log_format?,
                log_filter: log_filter?,
                worker_threads: NonZeroUsize::new(worker_threads? as usize),
                http: ServerConfig {
                    max_connections: nonzero(max_connections?),
                    max_head_bytes: nonzero(max_head_bytes?),
                    max_headers: nonzero(max_headers?),
                    max_target_bytes: nonzero(max_target_bytes?),
                    max_body_bytes: max_body_bytes?,
                    header_read_timeout: header_read_timeout?,
                    idle_timeout: idle_timeout?,
                    body_read_timeout: body_read_timeout?,
                    write_timeout: write_timeout?,
                    drain_timeout: drain_timeout?,
                    max_connections_per_address: http_per_address? as usize,
                    // Health checks and metrics are answered even when every connection is
                    // taken by long-lived streams.
                    reserved_paths: vec!["/healthz".into(), "/metrics".into()],
                    ..defaults
                },
                sse_heartbeat: sse_heartbeat?,
                edge: weir_http::EdgePolicy {
                    allowed_hosts: allowed_hosts?,
                    cors_origins: cors_origins?,
                },
                pubsub: weir_pubsub::HubConfig {
                    default_retention: weir_pubsub::Retention {
                        max_messages: retention_messages? as usize,
                        max_age: retention_age?,
                    },
                    retention_rules: retention_rules?,
                    max_lag_bytes: usize::try_from(max_lag_bytes?).unwrap_or(usize::MAX),
                    slow_policy: slow_policy?,
                    max_topics: max_topics? as usize,
                    max_payload: usize::try_from(max_payload?).unwrap_or(usize::MAX),
                    max_topic_bytes: usize::try_from(max_topic_bytes?).unwrap_or(usize::MAX),
                    max_retained_bytes: usize::try_from(max_retained_bytes?).unwrap_or(usize::MAX),
                    topic_idle: topic_idle?,
                    max_subscribers_per_topic: max_subscribers? as usize,
                    durable: durable?,
                },
                max_subscriptions: max_subscriptions? as usize,
                tokens: tokens?,
                database: database?,
                routes: routes?,
                jobs: weir_jobs::JobsConfig {
                    lease_ttl: lease_ttl?,
                    max_payload: usize::try_from(job_payload?).unwrap_or(usize::MAX),
                    schedules: schedules?,
                    queue_kinds: queue_kinds?,
                    retention: weir_jobs::Retention {
                        completed: keep_completed?,
                        cancelled: keep_cancelled?,
                        discarded: keep_discarded?,
                    },
                    ..weir_jobs::JobsConfig::default()
                },
                job_store: weir_jobs::StoreOptions {
                    retry: weir_jobs::RetryPolicy {
                        base: retry_base?,
                        cap: retry_max?,
                    },
                    queue_limits: queue_limits?,
                    synchronous: synchronous?,
                },
            })
        })();
        match config {
            Some(config) if r.errors.is_empty() => Ok(config),
            _ => Err(r.errors),
        }
    }
}

/// Reads settings from the layers into typed values, collecting every error.
struct Resolver<'l, 'a> {
    layers: &'l Layers<'a>,
    errors: Vec<ConfigError>,
}

impl Resolver<'_, '_> {
    /// The value of setting `key` read by `parse`, or `None` after recording why it is not
    /// valid.
    fn get<T>(
        &mut self,
        key: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let setting = SETTINGS.iter().find(|s| s.key == key).expect("a known key");
        let (value, _) = self.layers.lookup(setting);
        match parse(&value) {
            Ok(parsed) => Some(parsed),
            Err(allowed) => {
                self.refuse(key, allowed);
                None
            }
        }
    }

    /// Records that setting `key`'s value is not allowed, and what is.
    fn refuse(&mut self, key: &'static str, allowed: String) {
        let setting = SETTINGS.iter().find(|s| s.key == key).expect("a known key");
        let (value, origin) = self.layers.lookup(setting);
        self.errors.push(ConfigError::InvalidValue {
            key,
            // Tokens are secrets: an error names the key, not the value.
            value: if setting.secret() {
                "(hidden)".to_string()
            } else {
                value
            },
            origin,
            allowed,
        });
    }
}

fn nonzero(n: u64) -> NonZeroUsize {
    NonZeroUsize::new(usize::try_from(n).unwrap_or(usize::MAX)).unwrap_or(NonZeroUsize::MIN)
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
