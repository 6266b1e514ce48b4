//! Opening a path beneath a root directory, so that nothing a path names (`..`, an absolute
//! path, a symbolic link) reaches outside the directories an operator chose.
//!
//! On Linux 5.6 and later the kernel does it: `openat2(2)` resolves the path relative to
//! the root's descriptor with `RESOLVE_BENEATH`, and any step that would leave the root
//! (`..` above it, an absolute path, a symbolic link whose target is absolute or lies
//! outside) fails with `EXDEV`. The check is made as the path is opened, not on its name
//! beforehand, so a directory swapped for a link between a look and the open cannot lead
//! out. `RESOLVE_NO_MAGICLINKS` also refuses /proc's magic links (`/proc/self/fd/N`,
//! `/proc/self/root`), should the tree hold a /proc mount: they jump anywhere.
//!
//! Older kernels have no `openat2` (`ENOSYS`; some container seccomp profiles answer
//! `EPERM`). There the same rules are kept by hand ([`by_components`]): the path is
//! walked one component at a time from the root's descriptor with `openat(O_NOFOLLOW)`,
//! so the kernel never follows a link itself; each link met is read and its target walked
//! in its place; `..` goes back to the directory entered before it and never above the
//! root. A magic link is then only text (`/proc/…` is absolute, `pipe:[…]` names nothing).
//!
//! Absolute links: `RESOLVE_BENEATH` refuses every one, even one naming a file inside the
//! root (`/srv/data/a -> /srv/data/b`), which trees often hold. So when `openat2` answers
//! `EXDEV` and the root's own absolute path is known, the path is resolved again by
//! components, where an absolute target that starts with the root's path is walked from
//! the root's descriptor (the rest of it still confined: `/srv/data/../etc` is refused);
//! any other absolute target is refused.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use std::sync::OnceLock;

use rustix::fs::{fstat, openat, openat2, readlinkat, FileType, Mode, OFlags, ResolveFlags, CWD};
use rustix::io::Errno;

/// Symbolic links followed in one path at most, as Linux's own limit (`MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Lookups retried when the kernel answers `EAGAIN`: a rename or mount raced the lookup
/// and the kernel could not prove the result beneath the root. A few retries get through
/// any real race; a path that keeps racing is reported.
const RACE_RETRIES: usize = 8;

/// Whether this kernel has `openat2`; asked once, with a harmless lookup of `/`.
fn has_openat2() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        let probe = openat2(
            CWD,
            "/",
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::empty(),
        );
        !matches!(probe, Err(Errno::NOSYS | Errno::PERM))
    })
}

#[cfg(test)]
thread_local! {
    /// Set by a test to walk a whole tree as a kernel without `openat2` would.
    pub(crate) static WITHOUT_OPENAT2: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn uses_openat2() -> bool {
    #[cfg(test)]
    if WITHOUT_OPENAT2.get() {
        return false;
    }
    has_openat2()
}

/// Opens `path` (relative; empty means the root itself) beneath the directory `root` with
/// `flags` (`O_CLOEXEC` is added). A path that leads outside fails with `EXDEV`
/// ([`is_outside`]); a /proc magic link with `ELOOP`. `root_paths`, the root's absolute
/// paths (as given, and resolved), let absolute links that name a path beneath one of them
/// be followed.
pub(crate) fn open_beneath(
    root: BorrowedFd<'_>,
    root_paths: &[&Path],
    path: &Path,
    flags: OFlags,
) -> io::Result<OwnedFd> {
    if !uses_openat2() {
        return by_components(root, root_paths, path, flags);
    }
    match with_openat2(root, path, flags) {
        Err(error) if is_outside(&error) && !root_paths.is_empty() => {
            by_components(root, root_paths, path, flags)
        }
        opened => opened,
    }
}

fn with_openat2(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let path = match path.as_os_str().is_empty() {
        true => Path::new("."),
        false => path,
    };
    let mut tries = 0;
    loop {
        match openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < RACE_RETRIES => tries += 1,
            opened => return opened.map_err(io::Error::from),
        }
    }
}

/// Whether `error` says a path led outside its root.
pub(crate) fn is_outside(error: &io::Error) -> bool {
    error.raw_os_error() == Some(Errno::XDEV.raw_os_error())
}

/// Whether `error` is `ELOOP`: a link loop, too many links, or a /proc magic link.
pub(crate) fn is_loop(error: &io::Error) -> bool {
    error.raw_os_error() == Some(Errno::LOOP.raw_os_error())
}

/// The components of a relative path: names and `..`; `.` dropped. An absolute path is
/// outside (`EXDEV`), as `RESOLVE_BENEATH` has it.
fn components(path: &Path, into_front_of: &mut VecDeque<OsString>) -> io::Result<()> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => parts.push(name.to_owned()),
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(Errno::XDEV.into()),
        }
    }
    for part in parts.into_iter().rev() {
        into_front_of.push_front(part);
    }
    Ok(())
}

/// [`open_beneath`] without `openat2`: one component at a time, resolving links here.
/// For kernels before 5.6 and for absolute links; tested against the same attacks as
/// `openat2`.
pub(crate) fn by_components(
    root: BorrowedFd<'_>,
    root_paths: &[&Path],
    path: &Path,
    flags: OFlags,
) -> io::Result<OwnedFd> {
    let walk = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // The directories entered, the root at the bottom: `..` goes back one, never past it.
    let mut entered: Vec<OwnedFd> = vec![openat(
        root,
        ".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?];
    let mut pending = VecDeque::new();
    components(path, &mut pending)?;
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name.as_bytes() == b".." {
            if entered.len() == 1 {
                return Err(Errno::XDEV.into());
            }
            entered.pop();
            continue;
        }
        let here = entered.last().expect("the root is never left").as_fd();
        let found = openat(here, name.as_os_str(), walk, Mode::empty())?;
        let kind = FileType::from_raw_mode(fstat(&found)?.st_mode);
        if kind == FileType::Symlink {
            links += 1;
            if links > MAX_LINKS {
                return Err(Errno::LOOP.into());
            }
            // The link itself (opened without following it): its target is walked in its
            // place, from the directory that holds it.
            let target = readlinkat(&found, "", Vec::new())?;
            let target = Path::new(std::ffi::OsStr::from_bytes(target.as_bytes()));
            if target.is_absolute() {
                // Beneath the root by its name: walked again from the root. Anything
                // else absolute is outside.
                let rest = root_paths
                    .iter()
                    .find_map(|root_path| target.strip_prefix(root_path).ok())
                    .ok_or(Errno::XDEV)?;
                entered.truncate(1);
                components(rest, &mut pending)?;
            } else {
                components(target, &mut pending)?;
            }
            continue;
        }
        if pending.is_empty() {
            // The last component, opened for real, still without following a link: one
            // that replaced it since it was looked at fails (ELOOP).
            return Ok(openat(
                here,
                name.as_os_str(),
                flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?);
        }
        if kind != FileType::Directory {
            return Err(Errno::NOTDIR.into());
        }
        entered.push(found);
    }
    // The path ended on a directory entered (`.`, `..`, a link to a directory, or nothing).
    let here = entered.last().expect("the root is never left");
    Ok(openat(here, ".", flags | OFlags::CLOEXEC, Mode::empty())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    type Opener = fn(BorrowedFd<'_>, &[&Path], &Path, OFlags) -> io::Result<OwnedFd>;

    fn only_openat2(
        root: BorrowedFd<'_>,
        _: &[&Path],
        path: &Path,
        flags: OFlags,
    ) -> io::Result<OwnedFd> {
        with_openat2(root, path, flags)
    }

    /// Every way of opening: `openat2` alone (when this kernel has it), the fallback, and
    /// what `open_beneath` does (`openat2`, then the fallback for absolute links).
    fn openers() -> Vec<(&'static str, Opener)> {
        let mut openers: Vec<(&'static str, Opener)> = vec![
            ("by components", by_components),
            ("open_beneath", open_beneath),
        ];
        if has_openat2() {
            openers.push(("openat2", only_openat2));
        }
        openers
    }

    /// `root/` with `inside.txt`, `sub/deeper.txt`, and beside it `outside/secret.txt`;
    /// links inside the root to each.
    fn layout(label: &str) -> (PathBuf, PathBuf) {
        let base =
            std::env::temp_dir().join(format!("weir-files-beneath-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let base = std::fs::canonicalize(&base).unwrap();
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::create_dir_all(base.join("rootling")).unwrap();
        std::fs::write(root.join("inside.txt"), "in").unwrap();
        std::fs::write(root.join("sub/deeper.txt"), "deep").unwrap();
        std::fs::write(base.join("outside/secret.txt"), "secret").unwrap();
        std::fs::write(base.join("rootling/secret.txt"), "secret").unwrap();
        symlink("inside.txt", root.join("rel-in")).unwrap();
        symlink("../inside.txt", root.join("sub/up-in")).unwrap();
        symlink("../outside/secret.txt", root.join("rel-out")).unwrap();
        symlink(base.join("outside/secret.txt"), root.join("abs-out")).unwrap();
        symlink(
            root.join("../outside/secret.txt"),
            root.join("abs-dotdot-out"),
        )
        .unwrap();
        symlink(
            base.join("rootling/secret.txt"),
            root.join("abs-prefix-out"),
        )
        .unwrap();
        symlink(root.join("inside.txt"), root.join("abs-in")).unwrap();
        symlink(root.join("sub"), root.join("abs-dir")).unwrap();
        symlink("sub", root.join("dir-link")).unwrap();
        symlink("..", root.join("sub/parent")).unwrap();
        symlink("../..", root.join("sub/grandparent")).unwrap();
        symlink("loop-b", root.join("loop-a")).unwrap();
        symlink("loop-a", root.join("loop-b")).unwrap();
        symlink("/proc/self/environ", root.join("environ")).unwrap();
        symlink("/etc/passwd", root.join("passwd")).unwrap();
        (base, root)
    }

    fn read(opened: io::Result<OwnedFd>) -> io::Result<String> {
        let mut text = String::new();
        io::Read::read_to_string(&mut std::fs::File::from(opened?), &mut text)?;
        Ok(text)
    }

    #[test]
    fn paths_and_links_that_stay_beneath_the_root_open() {
        let (base, root) = layout("in");
        let root_fd = std::fs::File::open(&root).unwrap();
        for (how, open) in openers() {
            let open = |path: &str| {
                read(open(
                    root_fd.as_fd(),
                    &[&root],
                    Path::new(path),
                    OFlags::RDONLY,
                ))
            };
            let mut paths = vec![
                ("inside.txt", "in"),
                ("./sub/../inside.txt", "in"),
                ("sub/deeper.txt", "deep"),
                ("rel-in", "in"),
                ("sub/up-in", "in"),
                ("dir-link/deeper.txt", "deep"),
                ("sub/parent/inside.txt", "in"),
                ("dir-link/parent/dir-link/up-in", "in"),
            ];
            if how != "openat2" {
                // Absolute links naming a path beneath the root: followed from the root.
                paths.extend([
                    ("abs-in", "in"),
                    ("abs-dir/deeper.txt", "deep"),
                    ("abs-dir/up-in", "in"),
                ]);
            }
            for (path, want) in paths {
                let got = open(path).unwrap_or_else(|e| panic!("{how}: {path}: {e}"));
                assert_eq!(got, want, "{how}: {path}");
            }
            // The root itself, and a directory through a link.
            for path in ["", ".", "sub/..", "dir-link"] {
                let opened = super::open_beneath(
                    root_fd.as_fd(),
                    &[],
                    Path::new(path),
                    OFlags::RDONLY | OFlags::DIRECTORY,
                );
                assert!(opened.is_ok(), "{how}: {path}: {opened:?}");
            }
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn every_way_out_of_the_root_is_refused() {
        let (base, root) = layout("out");
        let root_fd = std::fs::File::open(&root).unwrap();
        for (how, open) in openers() {
            for root_paths in [&[root.as_path()][..], &[]] {
                let open = |path: &str| {
                    read(open(
                        root_fd.as_fd(),
                        root_paths,
                        Path::new(path),
                        OFlags::RDONLY,
                    ))
                };
                let mut paths = vec![
                    "../outside/secret.txt",
                    "sub/../../outside/secret.txt",
                    "rel-out",
                    "abs-out",
                    "abs-dotdot-out",
                    "abs-prefix-out",
                    "sub/grandparent/outside/secret.txt",
                    "environ",
                    "passwd",
                    "/etc/passwd",
                    "..",
                ];
                if root_paths.is_empty() {
                    // Without the root's path, an absolute link is refused even when it
                    // names a file inside, as RESOLVE_BENEATH refuses it.
                    paths.push("abs-in");
                }
                for path in paths {
                    match open(path) {
                        Err(error) => assert!(is_outside(&error), "{how}: {path}: {error}"),
                        Ok(text) => panic!("{how}: {path} was read: {text:?}"),
                    }
                }
                let looped = open("loop-a").unwrap_err();
                assert!(is_loop(&looped), "{how}: {looped}");
            }
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A /proc mounted inside the tree (here: reached through the root `/`): its magic
    /// links are never followed.
    #[test]
    fn proc_magic_links_are_not_followed() {
        let slash = std::fs::File::open("/").unwrap();
        for (how, open) in openers() {
            for path in [
                "proc/self/root/etc/passwd",
                "proc/self/fd/0",
                "proc/thread-self/cwd",
            ] {
                // No root path: with `/` as both root and root path, `/etc/passwd` is
                // beneath the root by its name, which is all the fallback looks at.
                let opened = open(slash.as_fd(), &[], Path::new(path), OFlags::RDONLY);
                assert!(opened.is_err(), "{how}: {path} is through a magic link");
            }
        }
    }
}
