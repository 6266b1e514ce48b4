//! The async program: the same work, with the walk and the files in parallel.
//!
//! ```text
//!  walker threads ──batches of 64 paths──► `jobs` blocking workers ──batches of reports──► async loop
//!  (ignore's parallel walker)  (bounded:    (pieces of large files                (bounded)    (output, totals,
//!                              512 batches)  first, then whole files)                            Ctrl-C)
//! ```
//!
//! - The walk blocks on the file system, so it runs on blocking threads; when the path
//!   channel is full (512 batches, up to 32,768 paths ahead) it waits (`blocking_send`).
//! - `jobs` workers, started once on the blocking pool, each take a batch of paths and read
//!   and process each file with a 64 KiB buffer. One blocking hop per *worker*, not per
//!   read (a naive `tokio::fs` loop) nor per file (measured: a `spawn_blocking` per file
//!   spent more time waking and parking threads than counting 20,000 small files).
//! - The tail: a file's processing is one sequential task, and a large one found late ran
//!   alone at the end while the other cores idled (measured: that held the async program
//!   to 1.65× the synchronous one on two cores). Two remedies, by what was asked:
//!   - Counts and BLAKE3 merge exactly, so a worker that opens a file over 8 MiB puts it
//!     on the `splitting` list, and every worker takes its pieces before anything else
//!     (`split.rs`): the last large file is shared by all the cores.
//!   - SHA-256 and search cannot be split. Files of 4 MiB or more then skip the queue: the
//!     walker (which `stat`s each file to tell) puts them on a largest-first list that
//!     workers take from before the queue, and the queue lets the walk run up to 32,768
//!     paths ahead, so large files are found early.
//! - At most `jobs` files are read at once, so memory is `jobs` buffers whatever the tree.
//!   Files being split stay open while their pieces are handed out: a worker that queues
//!   one when `jobs` are already queued reads pieces until the list is empty before it
//!   opens another, so about `2 × jobs` files are open at most.
//! - The async loop owns the output and the totals and listens for `stop`: cancelled, no
//!   new file is taken, the files in flight stop at their next buffer (a blocking thread
//!   cannot be aborted, so it checks a flag) and are left out, and the totals are marked
//!   partial. A limit reached (`budget.rs`) stops the run the same way.
//! - Stopping ends every thread: the workers leave at their next buffer or batch, and the
//!   last one to leave drops the receiving end of the path channel (only the workers hold
//!   it), so a walker waiting in `blocking_send` on a full channel gets an error and ends.
//!   (When this function held a handle of its own, a walker blocked there waited forever,
//!   and so did this function, for the walker: a cancelled job ran to its timeout.)

use std::cmp::Ordering as Order;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::budget::Budget;
use crate::found::{Found, FoundFile};
use crate::lock::lock;
use crate::options::Options;
use crate::process::{process_open, process_until};
use crate::report::{FileReport, Totals};
use crate::roots::Tree;
use crate::split::{can_split, Opened, SplitFile};
use crate::walk::walk_parallel;

/// Batches waiting between the walk and the workers, and between the workers and the
/// loop (each batch up to 64 entries: a wake-up per batch, not per file).
const QUEUE: usize = 512;
/// Files this large skip the queue and go first: a file's processing is one sequential
/// task, and one found late would run alone at the end while the other cores idle.
const LARGE: u64 = 4 << 20;

/// A file for the largest-first list: ordered by size alone.
#[derive(Debug)]
struct Large(u64, FoundFile);

impl PartialEq for Large {
    fn eq(&self, other: &Large) -> bool {
        self.0 == other.0
    }
}

impl Eq for Large {}

impl PartialOrd for Large {
    fn partial_cmp(&self, other: &Large) -> Option<Order> {
        Some(self.cmp(other))
    }
}

impl Ord for Large {
    fn cmp(&self, other: &Large) -> Order {
        self.0.cmp(&other.0)
    }
}

/// Walks `tree` and processes the files, `options.jobs` at a time, handing every report
/// to `report` as it completes. Stops, with partial totals, when `stop` is cancelled (the
/// files in flight stop at their next buffer) or at `options.limits`.
pub async fn run_async(
    tree: Tree,
    options: Options,
    stop: CancellationToken,
    mut report: impl FnMut(&FileReport),
) -> Totals {
    let options = Arc::new(options);
    let jobs = options.jobs.max(1);
    let stopped = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(Budget::new(options.limits, Arc::clone(&stopped)));
    let (path_sender, paths) = mpsc::channel::<Vec<Found>>(QUEUE);
    let (report_sender, mut reports) = mpsc::channel::<Vec<FileReport>>(QUEUE);

    // Large files, largest first; at most as many as the tree holds files of `LARGE`
    // bytes, and only their paths.
    let large: Arc<Mutex<BinaryHeap<Large>>> = Arc::default();
    // Large files whose pieces are being handed out, oldest first. Each holds its file
    // open; a worker that queues one past `jobs` drains the list before opening more.
    let splitting: Arc<Mutex<VecDeque<Arc<SplitFile>>>> = Arc::default();
    let batches = Arc::new(BatchesInProgress::default());
    let split = can_split(&options);
    let walker = {
        let (options, budget, large) = (
            Arc::clone(&options),
            Arc::clone(&budget),
            Arc::clone(&large),
        );
        tokio::task::spawn_blocking(move || {
            // Two walker threads keep the queue full on a fast disk without taking the
            // cores the workers need.
            walk_parallel(
                &tree,
                &options,
                jobs.min(2),
                // Split files are found by the workers as they open them, at the cost of an
                // `fstat` of an open file instead of a `stat` of a path (perf: the second path
                // lookup per file was about a quarter of the async program's extra CPU).
                (!split).then_some(LARGE),
                &budget,
                |file, size| lock(&large).push(Large(size, file)),
                |found| !budget.stopped() && path_sender.blocking_send(found).is_ok(),
            );
        })
    };
    // Workers share the receiving end; the lock is held only while taking one path.
    let paths = Arc::new(Mutex::new(paths));
    for _ in 0..jobs {
        let (paths, options, budget, reports, large) = (
            Arc::clone(&paths),
            Arc::clone(&options),
            Arc::clone(&budget),
            report_sender.clone(),
            Arc::clone(&large),
        );
        let (splitting, batches) = (Arc::clone(&splitting), Arc::clone(&batches));
        tokio::task::spawn_blocking(move || {
            loop {
                // Each lock in a statement of its own: in `while let` or `if let` the guard
                // would live through the body, and the workers would take turns.
                let piece = next_piece(&splitting);
                let done: Vec<FileReport> = match piece {
                    // Pieces first: every worker helps finish the file being split.
                    Some((file, index)) => {
                        file.process(index, &options, &budget).into_iter().collect()
                    }
                    None => {
                        let next_large = lock(&large).pop();
                        let (batch, _in_progress) = match next_large {
                            Some(Large(_, file)) => (vec![Found::File(file)], None),
                            None => {
                                let next = {
                                    let mut paths = lock(&paths);
                                    // Counted before the lock is let go, so a worker that
                                    // then finds the channel closed knows of this batch.
                                    paths.blocking_recv().map(|batch| (batch, batches.start()))
                                };
                                match next {
                                    Some((batch, in_progress)) => (batch, Some(in_progress)),
                                    // The walk is over, but a batch still in progress may
                                    // yet hold a large file to split: wait for it rather
                                    // than leave its pieces to one worker.
                                    None => {
                                        let more = || {
                                            !lock(&large).is_empty() || !lock(&splitting).is_empty()
                                        };
                                        match batches.wait_for_work(more, || budget.stopped()) {
                                            true => continue,
                                            false => return,
                                        }
                                    }
                                }
                            }
                        };
                        let mut done = Vec::with_capacity(batch.len());
                        for found in batch {
                            if budget.stopped() {
                                break;
                            }
                            match found {
                                Found::Failed(failure) => done.push(failure),
                                Found::File(file) if split => match SplitFile::open(&file) {
                                    Opened::Split(file) => {
                                        let queued = {
                                            let mut splitting = lock(&splitting);
                                            splitting.push_back(Arc::new(file));
                                            splitting.len()
                                        };
                                        batches.wake_waiting();
                                        // Each queued file holds its file open: past `jobs`
                                        // of them, help read their pieces before opening
                                        // more, so a batch of large files cannot open up to
                                        // 64 files per worker (past the usual limit of
                                        // 1,024 descriptors with 16 workers).
                                        if queued >= jobs {
                                            while let Some((file, index)) = next_piece(&splitting) {
                                                done.extend(file.process(index, &options, &budget));
                                            }
                                        }
                                    }
                                    Opened::Whole(opened) => {
                                        done.extend(process_open(opened, &file, &options, &budget))
                                    }
                                    Opened::Failed(failure) => done.push(failure),
                                },
                                Found::File(file) => {
                                    done.extend(process_until(&file, &options, &budget))
                                }
                            }
                        }
                        done
                    }
                };
                let sent = done.is_empty() || reports.blocking_send(done).is_ok();
                if !sent || budget.stopped() {
                    return;
                }
            }
        });
    }
    // Only the workers hold the receiving end of the paths: when the last one leaves, a
    // walker blocked on a full channel is let go (its send fails) and ends.
    drop(paths);
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
    totals.limit = budget.reached();
    totals.partial |= totals.limit.is_some();
    totals
}

/// The batches of paths workers are in the middle of, so that a worker that finds the walk
/// over does not leave while another may still split a large file (its pieces would then
/// all fall to one worker, the tail the splitting exists to remove).
#[derive(Debug, Default)]
struct BatchesInProgress {
    count: Mutex<usize>,
    changed: Condvar,
}

/// One batch in progress; its end is counted when dropped, even by a panicking worker.
#[must_use = "the batch ends when this is dropped"]
struct BatchInProgress<'a>(&'a BatchesInProgress);

impl Drop for BatchInProgress<'_> {
    fn drop(&mut self) {
        *lock(&self.0.count) -= 1;
        self.0.changed.notify_all();
    }
}

impl BatchesInProgress {
    fn start(&self) -> BatchInProgress<'_> {
        *lock(&self.count) += 1;
        BatchInProgress(self)
    }

    /// Wakes the workers waiting in [`BatchesInProgress::wait_for_work`] (new pieces).
    fn wake_waiting(&self) {
        // Taken so the wake-up cannot fall between a waiter's look and its wait.
        let _count = lock(&self.count);
        self.changed.notify_all();
    }

    /// Waits until `more_work()` or until no batch is in progress; true when there is work.
    /// False at once when `stopped()`.
    fn wait_for_work(&self, more_work: impl Fn() -> bool, stopped: impl Fn() -> bool) -> bool {
        let mut count = lock(&self.count);
        loop {
            if stopped() {
                return false;
            }
            if more_work() {
                return true;
            }
            if *count == 0 {
                return false;
            }
            // Every batch end and every new split file notifies; the timeout only bounds
            // the wait should a notification ever be missed.
            count = self
                .changed
                .wait_timeout(count, Duration::from_millis(100))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

/// A piece of the oldest file being split, dropping files whose pieces are all handed out.
fn next_piece(splitting: &Mutex<VecDeque<Arc<SplitFile>>>) -> Option<(Arc<SplitFile>, usize)> {
    let mut files = lock(splitting);
    while let Some(file) = files.front() {
        if let Some(index) = file.take() {
            return Some((Arc::clone(file), index));
        }
        files.pop_front();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc as std_mpsc;

    #[test]
    fn an_idle_worker_waits_while_a_batch_may_still_split_a_file() {
        let batches = Arc::new(BatchesInProgress::default());
        let work = Arc::new(AtomicBool::new(false));
        assert!(
            !batches.wait_for_work(|| false, || false),
            "no batch in progress and no work: leave at once"
        );

        let in_progress = batches.start();
        let (answer, answered) = std_mpsc::channel();
        let waiter = std::thread::spawn({
            let (batches, work) = (Arc::clone(&batches), Arc::clone(&work));
            move || {
                answer
                    .send(batches.wait_for_work(|| work.load(Ordering::SeqCst), || false))
                    .unwrap();
            }
        });
        // While another worker is in its batch, the waiter neither leaves nor works.
        assert!(answered.recv_timeout(Duration::from_millis(50)).is_err());
        // That batch splits a large file: the waiter takes pieces.
        work.store(true, Ordering::SeqCst);
        batches.wake_waiting();
        assert_eq!(answered.recv_timeout(Duration::from_secs(5)), Ok(true));
        waiter.join().unwrap();

        // The batch ends with nothing more: a waiter leaves.
        work.store(false, Ordering::SeqCst);
        let waiter = std::thread::spawn({
            let batches = Arc::clone(&batches);
            move || batches.wait_for_work(|| false, || false)
        });
        drop(in_progress);
        assert!(!waiter.join().unwrap());
    }
}
