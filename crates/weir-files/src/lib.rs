//! Process every file of a tree: line, word and byte counts, a BLAKE3 or SHA-256 hash, and
//! the lines matching a regular expression.
//!
//! Two programs do the same work side by side, so the conversion can be read:
//!
//! - [`run_sync`]: the original, single-threaded and synchronous: walk the tree, and for
//!   each file in turn read it and compute what was asked.
//! - [`run_async`]: the async version. The walk runs on a blocking thread (the `ignore`
//!   crate's parallel walker) and feeds a bounded channel; `jobs` blocking workers read
//!   and process the files with large buffers, a large file cut into pieces they share
//!   when the work merges exactly (counts, BLAKE3). It does not call `tokio::fs` per
//!   read: every such call is a trip to the blocking pool, which is what makes naive async
//!   file code tens of times slower (tokio issue 3664).
//!
//! Both share the per-file work ([`process_file`]), which streams: memory per file is one
//! buffer, whatever the file's size.

mod lock;
mod options;
mod process;
mod report;
mod run_async;
mod run_sync;
mod split;
mod walk;

pub use options::{HashKind, Options};
pub use process::process_file;
pub use report::{FileReport, Match, Totals};
pub use run_async::run_async;
pub use run_sync::run_sync;
