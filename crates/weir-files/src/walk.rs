//! The walk, set up the same way for both programs: the `ignore` crate's walker for a tree
//! anywhere (`weir files`), the confined walk (`walk_beneath.rs`) for a tree beneath roots.
//!
//! Symbolic links are followed, and a link back to an ancestor directory is reported as an
//! error instead of walked again (the walker tracks the directories above each entry), so a
//! loop never hangs the run.

use std::path::{Path, PathBuf};

use ignore::{WalkBuilder, WalkState};

use crate::budget::Budget;
use crate::found::{Found, FoundFile};
use crate::options::Options;
use crate::report::path_text;
use crate::report::FileReport;
use crate::roots::{Tree, TreeKind};
use crate::walk_beneath::WalkBeneath;

fn builder(roots: &[PathBuf], options: &Options) -> Option<WalkBuilder> {
    let (first, rest) = roots.split_first()?;
    let mut builder = WalkBuilder::new(first);
    for root in rest {
        builder.add(root);
    }
    builder
        .follow_links(true)
        .hidden(!options.hidden)
        .git_ignore(options.gitignore)
        .git_global(options.gitignore)
        .git_exclude(options.gitignore)
        .ignore(options.gitignore)
        .parents(options.gitignore)
        // Honour .gitignore outside a git repository too: a tree copied out of one
        // keeps its rules.
        .require_git(false);
    Some(builder)
}

fn convert(entry: Result<ignore::DirEntry, ignore::Error>) -> Option<Found> {
    match entry {
        Ok(entry) => entry
            .file_type()
            .is_some_and(|kind| kind.is_file())
            .then(|| Found::File(FoundFile::anywhere(entry.into_path()))),
        Err(error) => Some(Found::Failed(walk_failure(&error))),
    }
}

fn walk_failure(error: &ignore::Error) -> FileReport {
    let path = error_path(error)
        .map(|path| path_text(path).unwrap_or_else(|escaped| escaped))
        .unwrap_or_default();
    let message = match error.io_error() {
        Some(io) => match error_path(error) {
            Some(path) => crate::report::describe(path, io),
            None => io.to_string(),
        },
        None => strip_path(error),
    };
    FileReport::failed(path, message)
}

fn error_path(error: &ignore::Error) -> Option<&Path> {
    match error {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Loop { child, .. } => Some(child),
        _ => None,
    }
}

fn strip_path(error: &ignore::Error) -> String {
    match error {
        ignore::Error::Loop { ancestor, .. } => {
            format!("symbolic link loop (back to {})", ancestor.display())
        }
        ignore::Error::WithPath { err, .. } | ignore::Error::WithDepth { err, .. } => {
            strip_path(err)
        }
        other => other.to_string(),
    }
}

/// The files of `tree` in a stable order (sorted by name), one at a time: the walk of the
/// synchronous program.
pub(crate) fn walk_sorted<'a>(
    tree: &Tree,
    options: &Options,
    budget: &'a Budget,
) -> Box<dyn Iterator<Item = Found> + 'a> {
    let roots = match &tree.kind {
        TreeKind::Anywhere(roots) => roots,
        TreeKind::Beneath(starts) => {
            let walk = WalkBeneath::new(starts.clone(), options, false, budget);
            return Box::new(walk.map(|walked| walked.found));
        }
    };
    let Some(mut builder) = builder(roots, options) else {
        return Box::new(std::iter::empty());
    };
    builder.sort_by_file_name(|a, b| a.cmp(b));
    Box::new(builder.build().filter_map(convert))
}

/// Entries handed over at once: one channel send (and at most one thread wake-up) per
/// batch instead of per file.
pub(crate) const BATCH: usize = 64;

/// Walks `tree` on the calling thread (with `threads` walker threads when it is not
/// confined), handing files of at least `large_from` bytes to `large` at once (telling
/// them costs a `stat` per file, so `None` skips it) and every other result to `send` in
/// batches of up to [`BATCH`]; each entry is taken from `budget` first. Stops early when
/// `send` returns false or the budget stops.
pub(crate) fn walk_parallel(
    tree: &Tree,
    options: &Options,
    threads: usize,
    large_from: Option<u64>,
    budget: &Budget,
    large: impl Fn(FoundFile, u64) + Sync,
    send: impl Fn(Vec<Found>) -> bool + Sync,
) {
    let roots = match &tree.kind {
        TreeKind::Anywhere(roots) => roots,
        TreeKind::Beneath(starts) => {
            let mut batch = Batch {
                found: Vec::with_capacity(BATCH),
                send: &send,
                open: true,
            };
            for walked in WalkBeneath::new(starts.clone(), options, large_from.is_some(), budget) {
                if !budget.take_file() {
                    return;
                }
                match (walked.found, walked.size, large_from) {
                    (Found::File(file), Some(size), Some(large_from)) if size >= large_from => {
                        large(file, size)
                    }
                    (found, ..) => {
                        batch.found.push(found);
                        if batch.found.len() == BATCH && !batch.flush() {
                            return;
                        }
                    }
                }
            }
            return;
        }
    };
    let Some(mut builder) = builder(roots, options) else {
        return;
    };
    builder.threads(threads.max(1));
    builder.build_parallel().run(|| {
        // Each walker thread fills its own batch; the last one is sent when the thread's
        // visitor is dropped at the end of the walk.
        let mut batch = Batch {
            found: Vec::with_capacity(BATCH),
            send: &send,
            open: true,
        };
        let large = &large;
        Box::new(move |entry| {
            // Large files skip the queue (one `stat` each tells them apart), so they start
            // as soon as the walk finds them.
            let file = entry
                .as_ref()
                .ok()
                .filter(|entry| entry.file_type().is_some_and(|kind| kind.is_file()));
            let size = file
                .filter(|_| large_from.is_some())
                .and_then(|entry| entry.metadata().ok())
                .map(|meta| meta.len());
            if let (Some(size), Some(large_from)) = (size, large_from) {
                if size >= large_from {
                    if !budget.take_file() {
                        return WalkState::Quit;
                    }
                    let entry = entry.expect("checked above");
                    large(FoundFile::anywhere(entry.into_path()), size);
                    return WalkState::Continue;
                }
            }
            if let Some(found) = convert(entry) {
                if !budget.take_file() {
                    return WalkState::Quit;
                }
                batch.found.push(found);
                if batch.found.len() == BATCH && !batch.flush() {
                    return WalkState::Quit;
                }
            }
            WalkState::Continue
        })
    });
}

struct Batch<'a, F: Fn(Vec<Found>) -> bool> {
    found: Vec<Found>,
    send: &'a F,
    open: bool,
}

impl<F: Fn(Vec<Found>) -> bool> Batch<'_, F> {
    fn flush(&mut self) -> bool {
        if self.open && !self.found.is_empty() {
            self.open = (self.send)(std::mem::replace(
                &mut self.found,
                Vec::with_capacity(BATCH),
            ));
        }
        self.open
    }
}

impl<F: Fn(Vec<Found>) -> bool> Drop for Batch<'_, F> {
    fn drop(&mut self) {
        self.flush();
    }
}
