//! What a walk hands over: a file to read (opened anywhere, or beneath its root) or an entry
//! that failed. Shared by both walks (`walk`, `walk_beneath`) and the readers.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fs::{fstat, FileType, OFlags};

use crate::beneath::{is_loop, is_outside};
use crate::report::{describe, path_text, FileReport};
use crate::roots::Root;

/// One walk result: a file to process, or an entry that failed.
#[derive(Debug)]
pub(crate) enum Found {
    File(FoundFile),
    Failed(FileReport),
}

/// A file the walk found, and how it is opened.
#[derive(Debug)]
pub(crate) struct FoundFile {
    /// The path reports show.
    path: PathBuf,
    /// When the run is confined: the root it is opened beneath, and its path relative to
    /// the root's descriptor.
    beneath: Option<(Arc<Root>, PathBuf)>,
}

/// Why a file is not read: it is not a regular file (a FIFO would block the reader, a
/// device never end). The walk hands only regular files over; this catches one replaced
/// since.
const NOT_REGULAR: &str = "not a regular file";

impl FoundFile {
    /// A file opened by its path, links followed wherever they lead.
    pub(crate) fn anywhere(path: PathBuf) -> FoundFile {
        FoundFile {
            path,
            beneath: None,
        }
    }

    /// A file opened beneath `root` as `relative`, shown as `shown`.
    pub(crate) fn beneath(root: Arc<Root>, relative: PathBuf, shown: PathBuf) -> FoundFile {
        FoundFile {
            path: shown,
            beneath: Some((root, relative)),
        }
    }

    /// The path, as reports name it: bytes that are not UTF-8 escaped as `\xNN`.
    pub(crate) fn name(&self) -> String {
        path_text(&self.path).unwrap_or_else(|escaped| escaped)
    }

    /// Opens the file for reading. Beneath a root: by `openat2(RESOLVE_BENEATH)` from the
    /// root's descriptor, non-blocking (a FIFO swapped in cannot hold the reader), and
    /// refused when it is not a regular file.
    pub(crate) fn open(&self) -> io::Result<File> {
        let Some((root, relative)) = &self.beneath else {
            return File::open(&self.path);
        };
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
        let file = File::from(root.open(relative, flags)?);
        if !file.metadata()?.is_file() {
            return Err(io::Error::other(NOT_REGULAR));
        }
        Ok(file)
    }

    /// Why the file could not be opened or listed, in words.
    pub(crate) fn describe(&self, error: &io::Error) -> String {
        let Some((root, relative)) = &self.beneath else {
            return describe(&self.path, error);
        };
        if is_outside(error) {
            return "outside the files roots (a `..` or a symbolic link leading out; not read)"
                .into();
        }
        if is_loop(error) {
            return "symbolic link loop, or a /proc magic link (not followed)".into();
        }
        match error.kind() {
            io::ErrorKind::PermissionDenied => "permission denied".into(),
            io::ErrorKind::NotFound => {
                // The last component itself, not followed: a link whose target is missing.
                let last = root
                    .open(relative, OFlags::PATH | OFlags::NOFOLLOW)
                    .and_then(|fd| Ok(fstat(&fd)?));
                match last {
                    Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => {
                        "broken symbolic link".into()
                    }
                    _ => "not found (it vanished, or never existed)".into(),
                }
            }
            _ => error.to_string(),
        }
    }
}
