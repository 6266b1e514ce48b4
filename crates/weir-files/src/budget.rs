//! What stops a run before its end: the caller's stop (Ctrl-C, a cancelled job), or a limit
//! on the files or bytes it may take.
//!
//! One [`Budget`] per run, shared by the walk and every worker: the walk takes a file from
//! it per entry, the readers take bytes per buffer, and everyone checks [`Budget::stopped`]
//! between buffers, so a stop or a limit reached takes effect within one buffer (64 KiB)
//! everywhere.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use serde::Serialize;

/// Most files and bytes a run may take; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Entries the walk may hand over: files, and entries that could not be read (each is
    /// a report). Directories are not counted.
    pub files: Option<u64>,
    /// Bytes the run may read, over all its files.
    pub bytes: Option<u64>,
}

/// A limit a run reached, with its value; the run stopped there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// [`Limits::files`].
    Files(u64),
    /// [`Limits::bytes`].
    Bytes(u64),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Files(files) => write!(f, "{files} files"),
            Limit::Bytes(bytes) => write!(f, "{bytes} bytes"),
        }
    }
}

/// A run's stop flag and what it has taken against its limits.
#[derive(Debug)]
pub(crate) struct Budget {
    /// The caller's stop.
    cancel: Arc<AtomicBool>,
    /// Set when a limit is reached.
    limited: AtomicBool,
    limits: Limits,
    files: AtomicU64,
    bytes: AtomicU64,
    reached: OnceLock<Limit>,
}

impl Budget {
    pub(crate) fn new(limits: Limits, cancel: Arc<AtomicBool>) -> Budget {
        Budget {
            cancel,
            limited: AtomicBool::new(false),
            limits,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            reached: OnceLock::new(),
        }
    }

    /// A budget that never stops (one file processed on its own).
    pub(crate) fn unlimited() -> Budget {
        Budget::new(Limits::default(), Arc::default())
    }

    /// Whether the run must stop: stopped by its caller, or a limit reached.
    pub(crate) fn stopped(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.limited.load(Ordering::Relaxed)
    }

    /// The limit reached, if any.
    pub(crate) fn reached(&self) -> Option<Limit> {
        self.reached.get().copied()
    }

    fn reach(&self, limit: Limit) {
        self.reached.get_or_init(|| limit);
        self.limited.store(true, Ordering::Relaxed);
    }

    /// Takes one entry of the walk; false (and the run stops) when it would pass the files
    /// limit, or the run is stopped already.
    pub(crate) fn take_file(&self) -> bool {
        if let Some(max) = self.limits.files {
            if self.files.fetch_add(1, Ordering::Relaxed) >= max {
                self.reach(Limit::Files(max));
                return false;
            }
        }
        !self.stopped()
    }

    /// Takes `bytes` just read; false (and the run stops) when they pass the bytes limit, or
    /// the run is stopped already. The bytes that pass it are read but not processed.
    pub(crate) fn take_bytes(&self, bytes: u64) -> bool {
        if let Some(max) = self.limits.bytes {
            if self
                .bytes
                .fetch_add(bytes, Ordering::Relaxed)
                .saturating_add(bytes)
                > max
            {
                self.reach(Limit::Bytes(max));
                return false;
            }
        }
        !self.stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_reached_past_its_value_not_at_it() {
        let budget = Budget::new(
            Limits {
                files: Some(2),
                bytes: Some(100),
            },
            Arc::default(),
        );
        assert!(budget.take_file() && budget.take_file());
        assert!(budget.take_bytes(60) && budget.take_bytes(40));
        assert!(!budget.stopped() && budget.reached().is_none());
        assert!(!budget.take_bytes(1));
        assert!(budget.stopped());
        assert_eq!(budget.reached(), Some(Limit::Bytes(100)));
        // The first limit reached is the one reported.
        assert!(!budget.take_file());
        assert_eq!(budget.reached(), Some(Limit::Bytes(100)));
    }

    #[test]
    fn the_callers_stop_stops_without_a_limit() {
        let cancel = Arc::new(AtomicBool::new(false));
        let budget = Budget::new(Limits::default(), Arc::clone(&cancel));
        assert!(budget.take_file() && budget.take_bytes(u64::MAX));
        cancel.store(true, Ordering::Relaxed);
        assert!(budget.stopped() && !budget.take_file());
        assert_eq!(budget.reached(), None);
    }
}
