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
//!
//! What a run may touch is its [`Tree`]: [`Tree::anywhere`] follows paths and links
//! wherever they lead (the operator's own `weir files`); [`Tree::beneath`] opens every
//! directory and file beneath one of a set of [`Roots`] (`openat2(RESOLVE_BENEATH)`, with a
//! component-by-component fallback for kernels before 5.6), for runs on someone else's
//! behalf. (Linux only: both rest on `O_PATH`.)
//! Its output file goes in an [`OutDir`], created new and never through a link. A run stops
//! at its [`Limits`] (files, bytes) and at its caller's stop, within one buffer.

mod beneath;
mod budget;
mod found;
mod lock;
mod options;
mod process;
mod report;
mod roots;
mod run_async;
mod run_sync;
mod split;
mod walk;
mod walk_beneath;

pub use budget::{Limit, Limits};
pub use options::{HashKind, Options};
pub use process::process_file;
pub use report::{FileReport, Match, Totals};
pub use roots::{DirError, OutDir, OutError, OutFile, OutsideRoots, Roots, Tree};
pub use run_async::run_async;
pub use run_sync::run_sync;
