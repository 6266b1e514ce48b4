//! The original program: single-threaded and synchronous. It reads clearly and is the
//! baseline the async version is measured against.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::options::Options;
use crate::process::process_until;
use crate::report::{FileReport, Totals};
use crate::walk::{walk_sorted, Found};

/// Walks `roots` and processes each file in turn, handing every report to `report`.
/// Checks `stop` between files; a stopped run's totals are marked partial.
pub fn run_sync(
    roots: &[PathBuf],
    options: &Options,
    stop: &AtomicBool,
    mut report: impl FnMut(&FileReport),
) -> Totals {
    let mut totals = Totals::default();
    for found in walk_sorted(roots, options) {
        if stop.load(Ordering::Relaxed) {
            totals.partial = true;
            break;
        }
        let file = match found {
            Found::File(path) => match process_until(&path, options, stop) {
                Some(report) => report,
                None => {
                    totals.partial = true;
                    break;
                }
            },
            Found::Failed(failure) => failure,
        };
        totals.add(&file);
        report(&file);
    }
    totals
}
