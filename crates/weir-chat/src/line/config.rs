//! The line protocol's limits.

use std::time::Duration;

/// Limits of the line protocol.
#[derive(Debug, Clone)]
pub struct LineConfig {
    /// Bytes in one line. Past it: `-ERR line too long`, the line is discarded, the
    /// connection goes on. 4 KiB: a long chat message, not a file.
    pub max_line_bytes: usize,
    /// Chat lines per second a client may send on average, and in a burst (`PUB`, `SUB`
    /// and `UNSUB` are not counted). Past them: `-ERR flood`, the line is not run. 10 per second with bursts of 20: a fast typist
    /// or a paste of a few lines, not a script.
    pub flood_rate: u32,
    /// See `flood_rate`.
    pub flood_burst: u32,
    /// Refused lines in a row after which a flooding client is disconnected.
    pub flood_strikes: u32,
    /// Connections served at once; more wait in the accept backlog.
    pub max_connections: usize,
    /// Time a client may stay silent before it is disconnected. 15 minutes.
    pub idle_timeout: Duration,
    /// Connections one client address may hold at once (0: no limit); past it a new one
    /// is told and closed. 1,000: a tenth of `max_connections`.
    pub max_connections_per_address: usize,
    /// With tokens set, time a connection has to `AUTH` before it is closed: a client that
    /// never authenticates holds no slot for long. 10 s.
    pub auth_timeout: Duration,
}

impl Default for LineConfig {
    fn default() -> Self {
        Self {
            max_line_bytes: 4096,
            flood_rate: 10,
            flood_burst: 20,
            flood_strikes: 20,
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(15 * 60),
            max_connections_per_address: 1_000,
            auth_timeout: Duration::from_secs(10),
        }
    }
}
