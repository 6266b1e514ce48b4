//! Every limit and timeout of the server, in one validated place.

use std::num::NonZeroUsize;
use std::time::Duration;

/// Limits and timeouts for a [`Server`](crate::Server).
///
/// Every field is a bound with a stated behaviour when it is reached; the defaults carry
/// their reasons. Build one with [`ServerConfig::default`] and change the fields you need.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Connections served at once. Past it, new connections wait in the kernel's accept
    /// backlog until a slot frees: the server never accepts a socket it cannot serve.
    /// Default 10,000: far above what one node needs for API traffic, low enough that a
    /// flood cannot exhaust file descriptors (the usual `ulimit -n` is 1,048,576 here).
    pub max_connections: NonZeroUsize,
    /// Bytes of request head (request line plus headers). Past it: 431, or 414 when the
    /// request line alone is too long, then close. Default 32 KiB: four times nginx's 8 KiB
    /// header buffer, enough for large cookies.
    pub max_head_bytes: NonZeroUsize,
    /// Header fields in one request. Past it: 431 and close. Default 100, as hyper.
    /// At most [`ServerConfig::MAX_HEADERS_CEILING`].
    pub max_headers: NonZeroUsize,
    /// Bytes of request-target. Past it: 414 and close. Default 8 KiB, as nginx.
    pub max_target_bytes: NonZeroUsize,
    /// Bytes of request body. A Content-Length above it gets 413 before the body is read;
    /// a chunked body that passes it gets 413 as soon as it does. Either way the connection
    /// closes. Default 16 MiB.
    pub max_body_bytes: u64,
    /// Unread request body the server will read and discard after the handler answered,
    /// to keep the connection alive. Larger leftovers close the connection instead.
    /// Default 64 KiB: cheaper to drain than a new TCP handshake, small enough to be quick.
    pub max_drain_bytes: u64,
    /// Time from the first byte of a request head to its last. Past it: 408 and close.
    /// Default 10 s: a slowloris client holds a slot for at most 10 s, while a slow mobile
    /// client still gets its head through.
    pub header_read_timeout: Duration,
    /// Time a keep-alive connection may sit with no request. Past it: close, silently,
    /// as RFC 9112 section 9.8 allows. Default 60 s, a little above common proxy pools.
    pub idle_timeout: Duration,
    /// Time one read of a request body may wait for bytes. Past it: the handler's read fails,
    /// the answer is 408 and the connection closes. Default 30 s.
    pub body_read_timeout: Duration,
    /// Time one write of a response may wait for the client. Past it: close. Default 30 s:
    /// NATS uses 10 s for its write deadline; HTTP bodies are larger.
    pub write_timeout: Duration,
    /// Time that in-flight requests get to finish after shutdown starts; then the remaining
    /// connections are closed. Default 10 s.
    pub drain_timeout: Duration,
    /// Connections one client address may hold at once; 0 for no limit. Past it a new
    /// connection from that address is closed at once, so one client cannot take every
    /// slot. Default 1,000: a tenth of the default `max_connections`. Behind a proxy on
    /// the same machine every client shares its address: raise it (or set 0) there.
    pub max_connections_per_address: usize,
    /// Connections accepted past `max_connections` for the paths in `reserved_paths` only
    /// (health checks and metrics), one request each: a server full of long-lived streams
    /// still answers its operator. Other requests on them get 503. Default 4.
    pub reserved_connections: usize,
    /// The paths that reserved connections serve. Default none (then no connection is
    /// reserved).
    pub reserved_paths: Vec<String>,
}

impl ServerConfig {
    /// The largest allowed [`max_headers`](Self::max_headers): the head parser keeps that
    /// many header slots on the stack.
    pub const MAX_HEADERS_CEILING: usize = 256;

    /// Limits for the head parser taken from this configuration.
    pub fn head_limits(&self) -> crate::HeadLimits {
        crate::HeadLimits {
            max_head_bytes: self.max_head_bytes.get(),
            max_headers: self.max_headers.get().min(Self::MAX_HEADERS_CEILING),
            max_target_bytes: self.max_target_bytes.get(),
            max_body_bytes: self.max_body_bytes,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: NonZeroUsize::new(10_000).expect("non-zero"),
            max_head_bytes: NonZeroUsize::new(32 * 1024).expect("non-zero"),
            max_headers: NonZeroUsize::new(100).expect("non-zero"),
            max_target_bytes: NonZeroUsize::new(8 * 1024).expect("non-zero"),
            max_body_bytes: 16 * 1024 * 1024,
            max_drain_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            max_connections_per_address: 1_000,
            reserved_connections: 4,
            reserved_paths: Vec::new(),
        }
    }
}
