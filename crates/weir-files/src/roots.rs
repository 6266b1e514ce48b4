//! What a run may touch: the trees it walks ([`Tree`]), confined or not, the roots that
//! confine them ([`Roots`]), and the directory its output file goes in ([`OutDir`]).
//!
//! A confined tree holds each path as a root and a path relative to it, and every
//! directory and file of the walk is opened relative to the root's descriptor
//! (`beneath.rs`), so the confinement holds at each open, not only on the names given.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{fstat, openat, statat, unlinkat, AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::beneath::{is_outside, open_beneath};

/// A directory files may be opened beneath: its path as the operator gave it, the path it
/// resolved to then (absolute, without links: absolute links are judged against it), and a
/// descriptor (`O_PATH`) every open starts from.
#[derive(Debug)]
pub(crate) struct Root {
    pub(crate) path: PathBuf,
    canonical: PathBuf,
    fd: OwnedFd,
}

impl Root {
    /// Opens `relative` beneath this root (`beneath.rs`); absolute links naming a path
    /// beneath the root (by its path as given or as resolved) are followed.
    pub(crate) fn open(&self, relative: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let paths = [self.canonical.as_path(), self.path.as_path()];
        // A relative root path names nothing an absolute link could.
        let absolute = match self.path.is_absolute() {
            true => &paths[..],
            false => &paths[..1],
        };
        open_beneath(self.fd.as_fd(), absolute, relative, flags)
    }
}

/// The directories a confined run may read beneath, opened once.
///
/// ```no_run
/// use std::path::PathBuf;
/// use weir_files::{Roots, Tree};
///
/// let roots = Roots::open(&[PathBuf::from("/srv/data")])?;
/// // Beneath the root: walked, each file opened relative to the root's descriptor.
/// let tree = Tree::beneath(&roots, &[PathBuf::from("/srv/data/in")])?;
/// // Outside it: refused before anything is read.
/// assert!(Tree::beneath(&roots, &[PathBuf::from("/etc/passwd")]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Roots {
    roots: Vec<Arc<Root>>,
}

/// A root or output directory that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("`{}`: {error}", path.display())]
pub struct DirError {
    /// The directory as given.
    pub path: PathBuf,
    /// Why it could not be opened (not a directory, not found, permission denied).
    #[source]
    pub error: io::Error,
}

/// Opens `path` as a directory (`O_PATH`): nothing is read through this descriptor, it
/// only anchors lookups.
fn open_dir(path: &Path) -> Result<OwnedFd, DirError> {
    openat(
        rustix::fs::CWD,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| DirError {
        path: path.to_owned(),
        error: errno.into(),
    })
}

impl Roots {
    /// Opens each directory in `paths`. Each must exist and be a directory.
    pub fn open(paths: &[PathBuf]) -> Result<Roots, DirError> {
        let roots = paths
            .iter()
            .map(|path| {
                let fd = open_dir(path)?;
                Ok(Arc::new(Root {
                    path: path.clone(),
                    canonical: std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()),
                    fd,
                }))
            })
            .collect::<Result<_, DirError>>()?;
        Ok(Roots { roots })
    }

    /// The roots, as given.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.roots.iter().map(|root| root.path.as_path())
    }

    /// The roots `path` lies beneath by its name, and the rest of it for each, the longest
    /// root first; a relative path is taken beneath the first root.
    fn candidates(&self, path: &Path) -> Vec<(Arc<Root>, PathBuf)> {
        if path.is_relative() {
            return self
                .roots
                .first()
                .map(|root| (Arc::clone(root), path.to_owned()))
                .into_iter()
                .collect();
        }
        let mut found: Vec<(usize, Arc<Root>, PathBuf)> = Vec::new();
        for root in &self.roots {
            let longest = [&root.path, &root.canonical]
                .into_iter()
                .filter_map(|prefix| {
                    let rest = path.strip_prefix(prefix).ok()?;
                    Some((prefix.components().count(), rest.to_owned()))
                })
                .max_by_key(|(length, _)| *length);
            if let Some((length, rest)) = longest {
                found.push((length, Arc::clone(root), rest));
            }
        }
        found.sort_by_key(|(length, ..)| std::cmp::Reverse(*length));
        found
            .into_iter()
            .map(|(_, root, rest)| (root, rest))
            .collect()
    }
}

/// A path given to walk that is not beneath any root, by its name or by where its links
/// lead.
#[derive(Debug, thiserror::Error)]
#[error("`{}` is outside the files roots ({})", path.display(), roots.join(", "))]
pub struct OutsideRoots {
    /// The path as given.
    pub path: PathBuf,
    /// The roots, for the message.
    pub roots: Vec<String>,
}

/// Where a walk starts beneath a root: the path relative to the root, and the path reports
/// show (the root's path joined with it).
#[derive(Debug, Clone)]
pub(crate) struct Start {
    pub(crate) root: Arc<Root>,
    pub(crate) relative: PathBuf,
    pub(crate) shown: PathBuf,
}

/// The paths a run walks, and whether its opens are confined.
#[derive(Debug)]
pub struct Tree {
    pub(crate) kind: TreeKind,
}

#[derive(Debug)]
pub(crate) enum TreeKind {
    /// Any path, links followed wherever they lead: the operator's own command.
    Anywhere(Vec<PathBuf>),
    /// Paths beneath roots; nothing outside them is opened.
    Beneath(Vec<Start>),
}

impl Tree {
    /// `paths` as they are, symbolic links followed wherever they lead (`weir files`).
    pub fn anywhere(paths: Vec<PathBuf>) -> Tree {
        Tree {
            kind: TreeKind::Anywhere(paths),
        }
    }

    /// `paths`, each beneath one of `roots`: an absolute path must start with a root, a
    /// relative one is taken beneath the first root; and it must resolve beneath that root
    /// (no `..` above it, no link leading out). Checked here by opening each path, and
    /// again at every open of the walk. A path that does not exist is not refused here: the
    /// walk reports it, as it reports an unreadable file.
    pub fn beneath(roots: &Roots, paths: &[PathBuf]) -> Result<Tree, OutsideRoots> {
        let outside = |path: &Path| OutsideRoots {
            path: path.to_owned(),
            roots: roots
                .paths()
                .map(|root| root.display().to_string())
                .collect(),
        };
        let starts = paths
            .iter()
            .map(|path| {
                // The first root the path resolves beneath (by its links too) is its root.
                let (root, relative) = roots
                    .candidates(path)
                    .into_iter()
                    .find(|(root, relative)| match root.open(relative, OFlags::PATH) {
                        Err(error) => !is_outside(&error),
                        Ok(_) => true,
                    })
                    .ok_or_else(|| outside(path))?;
                let shown = match path.is_relative() {
                    true => root.path.join(path),
                    false => path.clone(),
                };
                Ok(Start {
                    root,
                    relative,
                    shown,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Tree {
            kind: TreeKind::Beneath(starts),
        })
    }
}

/// The directory a run's output file is created in, opened once.
#[derive(Debug)]
pub struct OutDir {
    path: PathBuf,
    fd: OwnedFd,
}

/// Why an output file was not created.
#[derive(Debug, thiserror::Error)]
pub enum OutError {
    /// The name is not a plain file name.
    #[error("`{name}` is not a file name: {why}")]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Something of that name exists (a file, a directory, a symbolic link): it is never
    /// replaced nor followed.
    #[error("`{}` already exists; an output file is never replaced: choose a new name", path.display())]
    Exists {
        /// The path that exists.
        path: PathBuf,
    },
    /// Creating it failed.
    #[error("`{}`: {error}", path.display())]
    Io {
        /// The path it was to have.
        path: PathBuf,
        /// Why.
        #[source]
        error: io::Error,
    },
}

/// A file created by [`OutDir::create`]: removed again by [`OutDir::remove`] when the run
/// it was for fails.
#[derive(Debug)]
pub struct OutFile {
    /// The file, open for writing.
    pub file: File,
    /// Its path (the directory's path joined with the name).
    pub path: PathBuf,
    name: String,
}

impl OutDir {
    /// Opens `path`, which must be a directory.
    pub fn open(path: &Path) -> Result<OutDir, DirError> {
        Ok(OutDir {
            path: path.to_owned(),
            fd: open_dir(path)?,
        })
    }

    /// The directory, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `name` is a plain file name: one name of at most 255 bytes, no `/`, `\\` or
    /// NUL, not starting with `.` (so neither hidden nor `.` or `..`).
    pub fn check_name(name: &str) -> Result<(), OutError> {
        let why = if name.is_empty() {
            Some("it is empty")
        } else if name.contains('/') {
            Some("it holds a `/` (give a name in the output directory, not a path)")
        } else if name.starts_with('.') {
            Some("it starts with `.` (`.`, `..` and hidden names are refused)")
        } else if name.contains(['\\', '\0']) {
            Some("it holds a `\\` or a NUL byte")
        } else if name.len() > 255 {
            Some("it is longer than 255 bytes")
        } else {
            None
        };
        match why {
            Some(why) => Err(OutError::BadName {
                name: name.to_owned(),
                why,
            }),
            None => Ok(()),
        }
    }

    /// Creates the new file `name` in this directory (mode 0600: reports may quote the
    /// files' lines): `O_CREAT|O_EXCL|O_NOFOLLOW` relative to the directory's descriptor,
    /// so an existing file is never replaced and a link of that name never followed.
    pub fn create(&self, name: &str) -> Result<OutFile, OutError> {
        OutDir::check_name(name)?;
        let path = self.path.join(name);
        let created = openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        );
        match created {
            Ok(fd) => Ok(OutFile {
                file: File::from(fd),
                path,
                name: name.to_owned(),
            }),
            Err(Errno::EXIST) => Err(OutError::Exists { path }),
            Err(errno) => Err(OutError::Io {
                path,
                error: errno.into(),
            }),
        }
    }

    /// Removes `out`, created here, so that a retried run can create it again; left alone
    /// when what bears its name now is another file.
    pub fn remove(&self, out: OutFile) -> io::Result<()> {
        let ours = fstat(&out.file)?;
        let now = statat(&self.fd, out.name.as_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino) {
            unlinkat(&self.fd, out.name.as_str(), AtFlags::empty())?;
        }
        Ok(())
    }
}

/// Whether `path` has only plain names (no `..`, no `.`, not absolute): the parents of
/// such a start can be looked at for ignore files.
pub(crate) fn is_plain(path: &Path) -> bool {
    path.components()
        .all(|component| matches!(component, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(label: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("weir-files-roots-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn paths_are_placed_beneath_their_root_or_refused() {
        let base = temp("place");
        let (a, b) = (base.join("a"), base.join("a/b"));
        std::fs::create_dir_all(&b).unwrap();
        std::fs::create_dir_all(base.join("ab")).unwrap();
        std::os::unix::fs::symlink("../../ab", b.join("out")).unwrap();
        let roots = Roots::open(&[a.clone(), b.clone()]).unwrap();
        let start = |path: &Path| match Tree::beneath(&roots, &[path.to_owned()]) {
            Ok(Tree {
                kind: TreeKind::Beneath(starts),
            }) => Ok((
                starts[0].root.path.clone(),
                starts[0].relative.clone(),
                starts[0].shown.clone(),
            )),
            Ok(_) => unreachable!(),
            Err(error) => Err(error.to_string()),
        };
        // The longest root wins; a relative path is beneath the first root.
        assert_eq!(
            start(&b.join("x")).unwrap(),
            (b.clone(), PathBuf::from("x"), b.join("x"))
        );
        assert_eq!(
            start(&a.join("y")).unwrap(),
            (a.clone(), PathBuf::from("y"), a.join("y"))
        );
        assert_eq!(
            start(Path::new("y")).unwrap(),
            (a.clone(), PathBuf::from("y"), a.join("y"))
        );
        // A name that only shares a prefix of bytes is not beneath.
        let refused = start(&base.join("ab")).unwrap_err();
        assert!(refused.contains("is outside the files roots"), "{refused}");
        assert!(refused.contains(&a.display().to_string()), "{refused}");
        for outside in [
            PathBuf::from("/etc/passwd"),
            a.join("../ab"),
            PathBuf::from("../ab"),
            b.join("out"),
        ] {
            assert!(start(&outside).is_err(), "{}", outside.display());
        }
        // Not there: not refused here (the walk reports it).
        assert!(start(&a.join("absent")).is_ok());
        assert!(Roots::open(&[base.join("absent")]).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A root given through a link: absolute links in the tree may name files beneath it
    /// by either path, the one given or the one it resolves to.
    #[test]
    fn absolute_links_beneath_a_root_given_through_a_link_are_followed() {
        let base = std::fs::canonicalize(temp("linked")).unwrap();
        let real = base.join("real");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("a.txt"), "a").unwrap();
        std::fs::write(base.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(&real, base.join("given")).unwrap();
        std::os::unix::fs::symlink(base.join("given/a.txt"), real.join("by-given")).unwrap();
        std::os::unix::fs::symlink(real.join("a.txt"), real.join("by-real")).unwrap();
        std::os::unix::fs::symlink(base.join("given/../secret"), real.join("out")).unwrap();
        let roots = Roots::open(&[base.join("given")]).unwrap();
        let root = &roots.roots[0];
        for name in ["by-given", "by-real"] {
            let opened = root.open(Path::new(name), OFlags::RDONLY);
            assert!(opened.is_ok(), "{name}: {opened:?}");
        }
        let refused = root.open(Path::new("out"), OFlags::RDONLY).unwrap_err();
        assert!(is_outside(&refused), "{refused}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn an_out_file_is_new_named_plainly_and_never_through_a_link() {
        let base = temp("out");
        let dir = base.join("out");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(base.join("victim"), "keep").unwrap();
        std::fs::write(dir.join("existing"), "keep").unwrap();
        std::os::unix::fs::symlink(base.join("victim"), dir.join("link")).unwrap();
        std::os::unix::fs::symlink(base.join("nowhere"), dir.join("dangling")).unwrap();
        let out = OutDir::open(&dir).unwrap();
        for name in [
            "", "../x", "/tmp/x", "a/b", ".", "..", ".hidden", "a\0b", "a\\b",
        ] {
            assert!(
                matches!(out.create(name), Err(OutError::BadName { .. })),
                "{name:?}"
            );
        }
        for name in ["existing", "link", "dangling"] {
            assert!(
                matches!(out.create(name), Err(OutError::Exists { .. })),
                "{name}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(base.join("victim")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("existing")).unwrap(),
            "keep"
        );
        assert!(
            !base.join("nowhere").exists(),
            "a dangling link is not followed"
        );

        let mut created = out.create("report.jsonl").unwrap();
        io::Write::write_all(&mut created.file, b"{}\n").unwrap();
        assert_eq!(created.path, dir.join("report.jsonl"));
        assert!(matches!(
            out.create("report.jsonl"),
            Err(OutError::Exists { .. })
        ));
        out.remove(created).unwrap();
        assert!(!dir.join("report.jsonl").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
