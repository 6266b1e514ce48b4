//! The async program: the same work, with the walk and the files in parallel.
//!
//! ```text
//!  walker thread ──(bounded channel, 1,024)──► loop ──► spawn_blocking(process_file) × jobs
//!  (ignore's parallel walker)                   │         (one task per whole file)
//!                                               └──◄── JoinSet: reports, in completion order
//! ```
//!
//! - The walk blocks on the file system, so it runs on its own thread; when the channel is
//!   full it waits (`blocking_send`): the walk never runs far ahead of the processing.
//! - A file is read and processed whole inside one blocking task with a 256 KiB buffer. One
//!   hop to the blocking pool per file, not per read, is the difference between this and
//!   a naive `tokio::fs` loop.
//! - At most `jobs` files are open at once (the loop only takes a path when a slot is
//!   free), so memory is `jobs` buffers whatever the tree.
//! - Cancelling `stop` takes no new file; the files in flight stop at their next buffer
//!   (a blocking task cannot be aborted, so it checks a flag) and are left out, and the
//!   totals are marked partial.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::options::Options;
use crate::process::process_until;
use crate::report::{FileReport, Totals};
use crate::walk::{walk_parallel, Found};

/// Paths waiting between the walk and the processing.
const QUEUE: usize = 1024;

/// Walks `roots` and processes the files, `options.jobs` at a time, handing every report
/// to `report` as it completes.
pub async fn run_async(
    roots: Vec<PathBuf>,
    options: Options,
    stop: CancellationToken,
    mut report: impl FnMut(&FileReport),
) -> Totals {
    let options = Arc::new(options);
    let jobs = options.jobs.max(1);
    let (sender, mut paths) = mpsc::channel::<Found>(QUEUE);
    let walk_options = Arc::clone(&options);
    let walker = tokio::task::spawn_blocking(move || {
        // The walk shares the machine with the processing; two walker threads keep the
        // channel full on a fast disk without taking cores from the hashing.
        walk_parallel(&roots, &walk_options, jobs.min(2), |found| {
            sender.blocking_send(found).is_ok()
        });
    });
    let mut totals = Totals::default();
    let mut running: JoinSet<Option<FileReport>> = JoinSet::new();
    let stopped = Arc::new(AtomicBool::new(false));
    let mut walk_done = false;
    loop {
        if running.is_empty() && (walk_done || totals.partial) {
            break;
        }
        tokio::select! {
            // Finished files first: they free the slots the next paths need.
            biased;
            Some(done) = running.join_next(), if !running.is_empty() => {
                let file = done.unwrap_or_else(|error| Some(FileReport::failed(String::new(), format!("processing failed: {error}"))));
                if let Some(file) = file {
                    totals.add(&file);
                    report(&file);
                }
            }
            () = stop.cancelled(), if !totals.partial => {
                totals.partial = true;
                stopped.store(true, Ordering::Relaxed);
                paths.close();
            }
            found = paths.recv(), if !walk_done && running.len() < jobs && !totals.partial => match found {
                Some(Found::File(path)) => {
                    let (options, stopped) = (Arc::clone(&options), Arc::clone(&stopped));
                    running.spawn_blocking(move || process_until(&path, &options, &stopped));
                }
                Some(Found::Failed(failure)) => {
                    totals.add(&failure);
                    report(&failure);
                }
                None => walk_done = true,
            },
        }
    }
    // The walker stops at its next send once the channel is closed.
    paths.close();
    let _ = walker.await;
    totals
}
