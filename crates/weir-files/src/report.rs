//! What processing found, per file and in total.

use std::io::ErrorKind;
use std::path::Path;

use serde::Serialize;

use crate::budget::Limit;

/// A line that matched the `--grep` pattern, as kept in [`FileReport::matches`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    /// 1-based line number.
    pub line: u64,
    /// The line (invalid UTF-8 replaced, cut at 1 KiB).
    pub text: String,
}

/// One file's result, or why it has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// The path as given by the walk (bytes that are not UTF-8 escaped as `\xNN`; such a
    /// file is read like any other).
    pub path: String,
    /// `\n` bytes, as `wc -l` counts lines (a last line without one is not counted);
    /// `None` unless counts were asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
    /// Words as `wc -w` counts them in a UTF-8 locale: runs of bytes between ASCII spaces
    /// holding at least one printable ASCII byte or non-ASCII byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<u64>,
    /// Bytes read: the file's size as it was read. Set whatever was asked for; `None` only
    /// in a report of a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The hash, lower-case hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Lines matching `--grep` (at most `max_matches`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<Match>,
    /// All matching lines, also those past `max_matches`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_count: Option<u64>,
    /// Why the file could not be processed (permission denied, vanished, a broken
    /// symbolic link, a symbolic link loop, a link leading outside the files roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FileReport {
    /// A report of a failure.
    pub fn failed(path: String, error: String) -> FileReport {
        FileReport {
            path,
            error: Some(error),
            ..FileReport::default()
        }
    }
}

/// Totals over every file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Files processed without an error (those with one count in `errors` instead).
    pub files: u64,
    /// Files (or walk entries) with an error.
    pub errors: u64,
    /// Sum of lines.
    pub lines: u64,
    /// Sum of words.
    pub words: u64,
    /// Sum of bytes.
    pub bytes: u64,
    /// Sum of matching lines.
    pub matches: u64,
    /// The run was stopped before the end: these are partial totals.
    pub partial: bool,
    /// The limit that stopped it, when one did (`partial` is then set too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
}

impl Totals {
    /// Adds one report.
    pub fn add(&mut self, report: &FileReport) {
        if report.error.is_some() {
            self.errors += 1;
            return;
        }
        self.files += 1;
        self.lines += report.lines.unwrap_or(0);
        self.words += report.words.unwrap_or(0);
        self.bytes += report.bytes.unwrap_or(0);
        self.matches += report.match_count.unwrap_or(0);
    }
}

/// The path as text; `Err` with the bytes that are not UTF-8 escaped as `\xNN` when it is
/// not UTF-8.
pub(crate) fn path_text(path: &Path) -> Result<String, String> {
    match path.to_str() {
        Some(text) => Ok(text.to_owned()),
        None => {
            use std::os::unix::ffi::OsStrExt;
            let mut escaped = String::new();
            for chunk in path.as_os_str().as_bytes().utf8_chunks() {
                escaped.push_str(chunk.valid());
                for byte in chunk.invalid() {
                    escaped.push_str(&format!("\\x{byte:02x}"));
                }
            }
            Err(escaped)
        }
    }
}

/// Why a file could not be read, in words.
pub(crate) fn describe(path: &Path, error: &std::io::Error) -> String {
    match error.kind() {
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::NotFound => match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => "broken symbolic link".into(),
            _ => "not found (it vanished, or never existed)".into(),
        },
        _ => error.to_string(),
    }
}

/// Why reading an open file failed, in words (no path to look at: it is open).
pub(crate) fn describe_read(error: &std::io::Error) -> String {
    match error.kind() {
        ErrorKind::PermissionDenied => "permission denied".into(),
        _ => error.to_string(),
    }
}
