//! What to compute for each file, and how to walk.

use regex::bytes::Regex;

use crate::budget::Limits;

/// The hash computed of each file; parsed from `blake3` or `sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// BLAKE3 (what `b3sum` prints).
    Blake3,
    /// SHA-256 (what `sha256sum` prints).
    Sha256,
}

impl std::str::FromStr for HashKind {
    type Err = String;

    fn from_str(text: &str) -> Result<HashKind, String> {
        match text {
            "blake3" => Ok(HashKind::Blake3),
            "sha256" => Ok(HashKind::Sha256),
            other => Err(format!("`{other}` is not blake3 or sha256")),
        }
    }
}

/// What to compute, and which files.
#[derive(Debug, Clone)]
pub struct Options {
    /// Lines, words and bytes (as `wc` counts them in a UTF-8 locale, on bytes: see
    /// `Counter`).
    pub count: bool,
    /// A hash of each file.
    pub hash: Option<HashKind>,
    /// Lines matching this, with their numbers.
    pub grep: Option<Regex>,
    /// Skip what `.gitignore`, `.ignore` and `.git/info/exclude` exclude.
    pub gitignore: bool,
    /// Include hidden files and directories (names starting with a dot).
    pub hidden: bool,
    /// Files processed at once by the async version.
    pub jobs: usize,
    /// Matching lines kept per file; the count goes on past it.
    pub max_matches: usize,
    /// Most files and bytes the run may take; it stops when it would pass one
    /// ([`Totals::limit`](crate::Totals::limit) says which). None by default.
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            count: true,
            hash: None,
            grep: None,
            gitignore: false,
            hidden: true,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_matches: 1000,
            limits: Limits::default(),
        }
    }
}
