//! Installing the tracing subscriber: human or JSON lines on stderr.
//!
//! Only the binary installs a subscriber; libraries just emit spans and events.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Plain text lines for people, coloured only on a terminal and without `NO_COLOR`.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Parses a filter such as `info` or `info,weir_http=debug`.
pub fn parse_filter(text: &str) -> Result<Targets, String> {
    Targets::from_str(text.trim()).map_err(|_| {
        "a level (error, warn, info, debug, trace) or comma-separated target=level pairs, e.g. info,weir_http=debug"
            .to_string()
    })
}

/// Installs the global subscriber. `filter` must have passed [`parse_filter`].
pub fn init(format: LogFormat, filter: &str) {
    let targets = parse_filter(filter).unwrap_or_default();
    let registry = tracing_subscriber::registry().with(targets);
    let result = match format {
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    // Colours for a terminal only: a log file or a pipe gets plain text.
                    .with_ansi(
                        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                    )
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // Already installed (a second call in one process, as in tests): keep the first.
    let _ = result;
}
