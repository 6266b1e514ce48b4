//! The original program: single-threaded and synchronous. It reads clearly and is the
//! baseline the async version is measured against.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::budget::Budget;
use crate::found::Found;
use crate::options::Options;
use crate::process::process_until;
use crate::report::{FileReport, Totals};
use crate::roots::Tree;
use crate::walk::walk_sorted;

/// Walks `tree` and processes each file in turn, handing every report to `report`.
/// Checks `stop` between files and between buffers, and stops at `options.limits`; a
/// stopped run's totals are marked partial.
pub fn run_sync(
    tree: &Tree,
    options: &Options,
    stop: Arc<AtomicBool>,
    mut report: impl FnMut(&FileReport),
) -> Totals {
    let budget = Budget::new(options.limits, stop);
    let mut totals = Totals::default();
    for found in walk_sorted(tree, options, &budget) {
        if !budget.take_file() {
            totals.partial = true;
            break;
        }
        let file = match found {
            Found::File(file) => match process_until(&file, options, &budget) {
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
    // The walk of a confined tree ends early, without an entry, when the run is stopped.
    totals.partial |= budget.stopped();
    totals.limit = budget.reached();
    totals
}
