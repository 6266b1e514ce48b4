//! The async program: the same work, with the walk and the files in parallel.
//!
//! ```text
//!  walker threads ──paths (bounded, 1,024)──► `jobs` blocking workers ──reports (bounded)──► async loop
//!  (ignore's parallel walker)                 (each file read and                            (output, totals,
//!                                              processed whole)                               Ctrl-C)
//! ```
//!
//! - The walk blocks on the file system, so it runs on blocking threads; when the path
//!   channel is full it waits (`blocking_send`): the walk never runs far ahead.
//! - `jobs` workers, started once on the blocking pool, each take the next path and read
//!   and process that file whole with a 64 KiB buffer. One blocking hop per *worker*, not
//!   per read (a naive `tokio::fs` loop) nor per file (measured: a `spawn_blocking` per file
//!   spent more time waking and parking threads than counting 20,000 small files).
//! - At most `jobs` files are open at once, so memory is `jobs` buffers whatever the tree.
//! - The async loop owns the output and the totals and listens for `stop`: cancelled, no
//!   new file is taken, the files in flight stop at their next buffer (a blocking thread
//!   cannot be aborted, so it checks a flag) and are left out, and the totals are marked
//!   partial.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::options::Options;
use crate::process::process_until;
use crate::report::{FileReport, Totals};
use crate::walk::{walk_parallel, Found};

/// Batches waiting between the walk and the workers, and between the workers and the
/// loop (each batch up to 64 entries: a wake-up per batch, not per file).
const QUEUE: usize = 16;

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
    let stopped = Arc::new(AtomicBool::new(false));
    let (path_sender, paths) = mpsc::channel::<Vec<Found>>(QUEUE);
    let (report_sender, mut reports) = mpsc::channel::<Vec<FileReport>>(QUEUE);

    let walker = {
        let (options, stopped) = (Arc::clone(&options), Arc::clone(&stopped));
        tokio::task::spawn_blocking(move || {
            // Two walker threads keep the queue full on a fast disk without taking the
            // cores the workers need.
            walk_parallel(&roots, &options, jobs.min(2), |found| {
                !stopped.load(Ordering::Relaxed) && path_sender.blocking_send(found).is_ok()
            });
        })
    };
    // Workers share the receiving end; the lock is held only while taking one path.
    let paths = Arc::new(Mutex::new(paths));
    for _ in 0..jobs {
        let (paths, options, stopped, reports) = (
            Arc::clone(&paths),
            Arc::clone(&options),
            Arc::clone(&stopped),
            report_sender.clone(),
        );
        tokio::task::spawn_blocking(move || {
            loop {
                // A statement of its own: in `while let` the lock guard would live through
                // the loop body, and the workers would take turns instead of running at once.
                let next = paths
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .blocking_recv();
                let Some(batch) = next else { return };
                let mut done = Vec::with_capacity(batch.len());
                for found in batch {
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    match found {
                        Found::Failed(failure) => done.push(failure),
                        Found::File(path) => done.extend(process_until(&path, &options, &stopped)),
                    }
                }
                if reports.blocking_send(done).is_err() || stopped.load(Ordering::Relaxed) {
                    return;
                }
            }
        });
    }
    // The loop ends when every worker has dropped its sender.
    drop(report_sender);

    let mut totals = Totals::default();
    loop {
        tokio::select! {
            batch = reports.recv() => match batch {
                Some(batch) => {
                    for file in &batch {
                        totals.add(file);
                        report(file);
                    }
                }
                None => break,
            },
            () = stop.cancelled(), if !totals.partial => {
                totals.partial = true;
                // Workers stop at their next buffer or path; the walker at its next send,
                // and when it ends the workers waiting for a path see the channel close.
                stopped.store(true, Ordering::Relaxed);
            }
        }
    }
    let _ = walker.await;
    totals
}
