//! The walk of a confined tree ([`crate::Tree::beneath`]): every directory listed and every
//! link resolved by opening it beneath its root (`beneath.rs`), never by path.
//!
//! Why not the `ignore` crate's walker, as the unconfined walk uses: it opens directories
//! and follows links by path (`std::fs::read_dir`), so a link leading out would be listed
//! and walked, and a directory swapped for such a link after it was looked at would be too.
//! Here a directory is opened with `openat2(RESOLVE_BENEATH)` relative to the root, then
//! listed through that descriptor (`getdents64`); a link is resolved the same way and, when
//! it leads out, reported ("outside the files roots"), never listed nor read.
//!
//! It keeps the other walk's rules: names in order within a directory, depth first; links
//! inside the root followed, and one back to a directory above it reported as a loop;
//! hidden names and ignore files (`.ignore`, `.gitignore`, `.git/info/exclude`, from the
//! directory and its parents up to the root, never above it, and no global git config,
//! which lies outside the roots) as asked. One thread walks: listing is cheap beside
//! reading, and the queue ahead of the workers holds up to 32,768 files.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rustix::fs::{fstat, statat, AtFlags, Dir, FileType, OFlags, Stat};

use crate::budget::Budget;
use crate::found::{Found, FoundFile};
use crate::options::Options;
use crate::report::FileReport;
use crate::roots::{is_plain, Root, Start};

/// Bytes of an ignore file read at most; a larger one is used cut there (its later rules
/// are not applied) so that a huge file named `.gitignore` costs no more than this.
const MAX_RULES: u64 = 1 << 20;

/// One walk result, with the file's size when it was asked for.
#[derive(Debug)]
pub(crate) struct Walked {
    pub(crate) found: Found,
    pub(crate) size: Option<u64>,
}

/// The walk, as an iterator of files and failures.
pub(crate) struct WalkBeneath<'a> {
    hidden: bool,
    gitignore: bool,
    sizes: bool,
    budget: &'a Budget,
    starts: std::vec::IntoIter<Start>,
    /// The directories being listed, outermost first.
    stack: Vec<Listing>,
}

/// A directory's entries still to visit.
struct Listing {
    root: Arc<Root>,
    relative: PathBuf,
    shown: PathBuf,
    /// Device and inode: a directory met again below itself is a loop.
    id: (u64, u64),
    entries: std::vec::IntoIter<Listed>,
    rules: Option<Arc<Rules>>,
}

struct Listed {
    name: OsString,
    /// From the listing (`d_type`); `Unknown` on file systems that do not fill it in.
    kind: FileType,
    /// A regular file's size, when sizes are asked for.
    size: Option<u64>,
}

impl<'a> WalkBeneath<'a> {
    /// Walks `starts`; `sizes`: tell each regular file's size (a `stat` each). Ends early
    /// when `budget` stops.
    pub(crate) fn new(
        starts: Vec<Start>,
        options: &Options,
        sizes: bool,
        budget: &'a Budget,
    ) -> Self {
        WalkBeneath {
            hidden: options.hidden,
            gitignore: options.gitignore,
            sizes,
            budget,
            starts: starts.into_iter(),
            stack: Vec::new(),
        }
    }

    fn failed(shown: &Path, root: &Arc<Root>, relative: &Path, error: &std::io::Error) -> Walked {
        let file = FoundFile::beneath(Arc::clone(root), relative.to_owned(), shown.to_owned());
        Walked {
            found: Found::Failed(FileReport::failed(file.name(), file.describe(error))),
            size: None,
        }
    }

    /// The start of a walk: a file, or a directory to list.
    fn begin(&mut self, start: Start) -> Option<Walked> {
        let opened = start
            .root
            .open(&start.relative, OFlags::PATH)
            .and_then(|fd| Ok(fstat(&fd)?));
        let stat = match opened {
            Ok(stat) => stat,
            Err(error) => {
                return Some(Self::failed(
                    &start.shown,
                    &start.root,
                    &start.relative,
                    &error,
                ))
            }
        };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                let rules = match self.gitignore && is_plain(&start.relative) {
                    true => parent_rules(&start.root, &start.relative),
                    false => None,
                };
                self.enter(start.root, start.relative, start.shown, rules)
            }
            FileType::RegularFile => Some(Walked {
                size: self.sizes.then_some(stat.st_size as u64),
                found: Found::File(FoundFile::beneath(start.root, start.relative, start.shown)),
            }),
            // A FIFO, socket or device is not a file to read, as in the other walk.
            _ => None,
        }
    }

    /// Lists the directory `relative` and puts it on the stack; a failure (it cannot be
    /// opened or listed, or it is a loop) is the result.
    fn enter(
        &mut self,
        root: Arc<Root>,
        relative: PathBuf,
        shown: PathBuf,
        parent_rules: Option<Arc<Rules>>,
    ) -> Option<Walked> {
        let opened = root
            .open(&relative, OFlags::RDONLY | OFlags::DIRECTORY)
            .and_then(|fd| {
                let stat = fstat(&fd)?;
                Ok((fd, stat))
            });
        let (fd, stat) = match opened {
            Ok(opened) => opened,
            Err(error) => return Some(Self::failed(&shown, &root, &relative, &error)),
        };
        let id = (stat.st_dev, stat.st_ino);
        if let Some(ancestor) = self.stack.iter().find(|listing| listing.id == id) {
            let file = FoundFile::beneath(root, relative, shown);
            let message = format!("symbolic link loop (back to {})", ancestor.shown.display());
            return Some(Walked {
                found: Found::Failed(FileReport::failed(file.name(), message)),
                size: None,
            });
        }
        let (entries, error) = self.list(fd);
        let rules = match self.gitignore {
            true => Some(Arc::new(Rules::read(
                &root,
                &relative,
                &entries,
                parent_rules,
            ))),
            false => None,
        };
        let failure = error.map(|error| Self::failed(&shown, &root, &relative, &error));
        self.stack.push(Listing {
            root,
            relative,
            shown,
            id,
            entries: entries.into_iter(),
            rules,
        });
        failure
    }

    /// The entries of the directory open as `fd`, sorted by name; and the error that cut
    /// the listing short, if one did.
    fn list(&self, fd: OwnedFd) -> (Vec<Listed>, Option<std::io::Error>) {
        let mut entries = Vec::new();
        let mut dir = match Dir::new(fd) {
            Ok(dir) => dir,
            Err(error) => return (entries, Some(error.into())),
        };
        let mut failure = None;
        for entry in &mut dir {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    failure = Some(error.into());
                    break;
                }
            };
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." || (!self.hidden && name.as_bytes().starts_with(b".")) {
                continue;
            }
            entries.push(Listed {
                name: name.to_owned(),
                kind: entry.file_type(),
                size: None,
            });
        }
        if self.sizes {
            // A direct child of a directory opened beneath the root, not followed: this
            // `stat` cannot leave the root.
            let fd = dir.fd().expect("a Dir has its descriptor");
            for entry in entries
                .iter_mut()
                .filter(|entry| entry.kind == FileType::RegularFile)
            {
                entry.size = statat(fd, entry.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .ok()
                    .map(|stat| stat.st_size as u64);
            }
        }
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        (entries, failure)
    }

    /// One entry of the directory on top of the stack.
    fn visit(&mut self, entry: Listed) -> Option<Walked> {
        let top = self.stack.last().expect("called with a listing");
        let (root, rules) = (Arc::clone(&top.root), top.rules.clone());
        let relative = top.relative.join(&entry.name);
        let shown = top.shown.join(&entry.name);
        let (kind, size) = match entry.kind {
            FileType::Symlink | FileType::Unknown => {
                // Where the link leads, found by opening it beneath the root: a link out
                // fails here (EXDEV) and is reported; nothing behind it is looked at.
                match root
                    .open(&relative, OFlags::PATH)
                    .and_then(|fd| Ok(fstat(&fd)?))
                {
                    Ok(stat) => (FileType::from_raw_mode(stat.st_mode), Some(size_of(&stat))),
                    Err(error) => {
                        if rules
                            .as_ref()
                            .is_some_and(|rules| rules.ignores(&relative, false))
                        {
                            return None;
                        }
                        return Some(Self::failed(&shown, &root, &relative, &error));
                    }
                }
            }
            kind => (kind, entry.size),
        };
        let is_dir = kind == FileType::Directory;
        if !is_dir && kind != FileType::RegularFile {
            return None;
        }
        if rules
            .as_ref()
            .is_some_and(|rules| rules.ignores(&relative, is_dir))
        {
            return None;
        }
        if is_dir {
            return self.enter(root, relative, shown, rules);
        }
        Some(Walked {
            found: Found::File(FoundFile::beneath(root, relative, shown)),
            size: size.filter(|_| self.sizes),
        })
    }
}

fn size_of(stat: &Stat) -> u64 {
    stat.st_size as u64
}

impl Iterator for WalkBeneath<'_> {
    type Item = Walked;

    fn next(&mut self) -> Option<Walked> {
        loop {
            if self.budget.stopped() {
                return None;
            }
            let next = match self.stack.last_mut() {
                None => {
                    let start = self.starts.next()?;
                    self.begin(start)
                }
                Some(listing) => match listing.entries.next() {
                    Some(entry) => self.visit(entry),
                    None => {
                        self.stack.pop();
                        None
                    }
                },
            };
            if next.is_some() {
                return next;
            }
        }
    }
}

/// The ignore rules in force in a directory: its own files', then its parents' up to the
/// walk's root.
struct Rules {
    parent: Option<Arc<Rules>>,
    /// `.ignore`: over `.gitignore`, as ripgrep has it.
    ignore: Gitignore,
    /// `.gitignore`.
    git: Gitignore,
    /// `.git/info/exclude`, in a directory holding `.git`.
    exclude: Gitignore,
    /// The directory holds `.git`: `.gitignore` files above it are not the repository's.
    has_git: bool,
}

/// The path rules match against: the path relative to the root, as if the root were `/`.
fn rooted(relative: &Path) -> PathBuf {
    Path::new("/").join(relative)
}

impl Rules {
    /// The rules of the directory `relative` (listed as `entries`) on top of `parent`.
    fn read(root: &Root, relative: &Path, entries: &[Listed], parent: Option<Arc<Rules>>) -> Rules {
        let has = |name: &str| entries.iter().any(|entry| entry.name == name);
        let has_git = has(".git");
        let rules = |file: &str, present: bool| match present {
            true => read_rules(root, relative, Path::new(file)),
            false => Gitignore::empty(),
        };
        Rules {
            parent,
            ignore: rules(".ignore", has(".ignore")),
            git: rules(".gitignore", has(".gitignore")),
            exclude: rules(".git/info/exclude", has_git),
            has_git,
        }
    }

    /// Whether `relative` (a path beneath the root) is ignored: for each kind of file the
    /// nearest rule that matches decides, `.ignore` over `.gitignore` over the exclude
    /// file, as the `ignore` crate decides.
    fn ignores(&self, relative: &Path, is_dir: bool) -> bool {
        let path = rooted(relative);
        let verdict = |rules: &Gitignore| {
            let found = rules.matched(&path, is_dir);
            (!found.is_none()).then(|| found.is_ignore())
        };
        let (mut ignore, mut git, mut exclude) = (None, None, None);
        let mut saw_git = false;
        let mut level = Some(self);
        while let Some(rules) = level {
            ignore = ignore.or_else(|| verdict(&rules.ignore));
            if !saw_git {
                git = git.or_else(|| verdict(&rules.git));
                exclude = exclude.or_else(|| verdict(&rules.exclude));
            }
            saw_git |= rules.has_git;
            level = rules.parent.as_deref();
        }
        ignore.or(git).or(exclude).unwrap_or(false)
    }
}

/// The rules of the directories from the root down to `relative`'s parent (a start's
/// parents, within the root).
fn parent_rules(root: &Root, relative: &Path) -> Option<Arc<Rules>> {
    // The root has no parents within the root.
    relative.parent()?;
    let mut rules: Option<Arc<Rules>> = None;
    let mut directory = PathBuf::new();
    let parents: Vec<_> = relative
        .parent()
        .map(|parent| parent.components().collect())
        .unwrap_or_default();
    // The root itself, then each directory down to the parent.
    for next in std::iter::once(None).chain(parents.into_iter().map(Some)) {
        if let Some(component) = next {
            directory.push(component);
        }
        let fd = match root.open(&directory, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(_) => return rules,
        };
        let entries: Vec<Listed> = ["/.ignore", "/.gitignore", "/.git"]
            .iter()
            .filter(|name| statat(fd.as_fd(), &name[1..], AtFlags::SYMLINK_NOFOLLOW).is_ok())
            .map(|name| Listed {
                name: OsString::from(&name[1..]),
                kind: FileType::Unknown,
                size: None,
            })
            .collect();
        rules = Some(Arc::new(Rules::read(root, &directory, &entries, rules)));
    }
    rules
}

/// The rules of the ignore file `file` in the directory `relative`, opened beneath the
/// root (it may be a link, which must stay inside); empty when it cannot be read.
fn read_rules(root: &Root, relative: &Path, file: &Path) -> Gitignore {
    let path = relative.join(file);
    let mut text = Vec::new();
    let read = root
        .open(&path, OFlags::RDONLY | OFlags::NONBLOCK)
        .and_then(|fd| {
            let file = std::fs::File::from(fd);
            if !file.metadata()?.is_file() {
                return Ok(0);
            }
            file.take(MAX_RULES).read_to_end(&mut text)
        });
    if read.is_err() {
        return Gitignore::empty();
    }
    let mut builder = GitignoreBuilder::new(rooted(relative));
    let from = rooted(&path);
    for line in String::from_utf8_lossy(&text).lines() {
        // A line that is not a valid glob is skipped, as git skips it.
        let _ = builder.add_line(Some(from.clone()), line);
    }
    builder.build().unwrap_or_else(|_| Gitignore::empty())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::sync::Arc;

    use crate::beneath::WITHOUT_OPENAT2;
    use crate::{run_sync, FileReport, Options, Roots, Tree};

    /// The whole confined walk on this thread (`run_sync`), with `openat2` and as a kernel
    /// without it would walk: the same reports, and nothing outside read.
    #[test]
    fn the_walk_without_openat2_confines_as_the_walk_with_it() {
        let base = std::env::temp_dir().join(format!("weir-files-fallback-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("root/sub")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        let base = std::fs::canonicalize(&base).unwrap();
        let root = base.join("root");
        std::fs::write(base.join("outside/secret.txt"), "hunter2\n").unwrap();
        std::fs::write(root.join("a.txt"), "a\n").unwrap();
        std::fs::write(root.join("sub/b.txt"), "b\n").unwrap();
        symlink("../a.txt", root.join("sub/up")).unwrap();
        symlink(root.join("sub"), root.join("abs-sub")).unwrap();
        symlink("..", root.join("sub/loop")).unwrap();
        symlink("../outside/secret.txt", root.join("leak")).unwrap();
        symlink(base.join("outside"), root.join("abs-dir-leak")).unwrap();
        symlink("/proc/self/environ", root.join("environ")).unwrap();
        let options = Options {
            grep: Some(regex::bytes::Regex::new("hunter2").unwrap()),
            count: true,
            ..Options::default()
        };
        let roots = Roots::open(std::slice::from_ref(&root)).unwrap();
        let walk = |without: bool| {
            WITHOUT_OPENAT2.set(without);
            let tree = Tree::beneath(&roots, std::slice::from_ref(&root)).unwrap();
            let mut reports: Vec<FileReport> = Vec::new();
            let totals = run_sync(&tree, &options, Arc::default(), |r| reports.push(r.clone()));
            WITHOUT_OPENAT2.set(false);
            reports.sort_by(|a, b| a.path.cmp(&b.path));
            (reports, totals)
        };
        let (with, without) = (walk(false), walk(true));
        assert_eq!(with, without);
        let (reports, totals) = with;
        assert_eq!(totals.matches, 0, "{reports:#?}");
        let outside = reports
            .iter()
            .filter(|r| {
                r.error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("outside the files roots"))
            })
            .count();
        // leak, abs-dir-leak, environ.
        assert_eq!(outside, 3, "{reports:#?}");
        // a.txt, sub/b.txt, sub/up, abs-sub/b.txt, abs-sub/up; sub/loop and abs-sub/loop
        // are loops.
        assert_eq!((totals.files, totals.errors), (5, 5), "{reports:#?}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
