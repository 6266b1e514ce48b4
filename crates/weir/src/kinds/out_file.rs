//! A job's output file, created in a directory the worker's operator chose.
//!
//! The job names only the file: one path component, not hidden, no `..`. It is created
//! with `O_CREAT | O_EXCL` (`create_new`), which never replaces an existing file and never
//! follows a symbolic link at that name, even one planted between a check and the open.

use std::fs::File;
use std::io;
use std::path::Path;

/// Creates `name` in `dir` for writing; refuses any other path and any existing entry.
pub(crate) fn create(dir: &Path, name: &str) -> io::Result<File> {
    let plain = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0']);
    if !plain {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "name a file in the worker's output directory: one name, no `/`, not starting with `.`",
        ));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(name))
        .map_err(|error| match error.kind() {
            io::ErrorKind::AlreadyExists => io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file of that name exists; a job never replaces one",
            ),
            _ => error,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_plain_name_in_the_directory_is_created() {
        let dir = std::env::temp_dir().join(format!("weir-out-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        for bad in ["", "../x", "/etc/passwd", "a/b", ".hidden", ".."] {
            assert!(create(&dir, bad).is_err(), "{bad:?} must be refused");
        }
        create(&dir, "pages.jsonl").unwrap();
        std::fs::write(dir.join("kept"), "before").unwrap();
        assert!(create(&dir, "kept").is_err());
        assert_eq!(std::fs::read_to_string(dir.join("kept")).unwrap(), "before");
        std::os::unix::fs::symlink("/tmp/weir-out-target-never", dir.join("link")).unwrap();
        assert!(create(&dir, "link").is_err(), "a link is never followed");
        assert!(!Path::new("/tmp/weir-out-target-never").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
