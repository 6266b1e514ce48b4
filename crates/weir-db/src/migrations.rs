//! Numbered schema steps, one list per component, each with its own version.
//!
//! The versions live in a table `schema_version (component, version)`. Weir before
//! components had their own versions kept a single column `version`; such a table is
//! upgraded in place, its rows given to the component that owned it then (see each
//! engine's `LEGACY_OWNER` rule), so an existing database keeps its data and its history.

/// A component's schema: its name and the steps that build it, oldest first.
///
/// Each step moves the schema one version up and is applied once, in a transaction with
/// the record of its version. A step is never edited after release: a change is a new step.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// The component's name in the version table (`jobs`, `topics`, `pubsub_relay`).
    pub component: &'static str,
    /// The SQL of each step.
    pub steps: &'static [&'static str],
}

impl Migrations {
    /// The last version these steps reach.
    pub fn latest(&self) -> usize {
        self.steps.len()
    }
}
