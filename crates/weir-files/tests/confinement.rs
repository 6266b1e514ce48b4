//! A run confined beneath roots (`Tree::beneath`) reads nothing outside them, whatever its
//! paths and the tree's links say; a run stops at its limits and at a cancel, however far
//! ahead its walk is.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_files::{
    run_async, run_sync, FileReport, HashKind, Limit, Limits, Options, Roots, Totals, Tree,
};

/// A wait that a hang would fail; never a timing threshold.
const DEADLINE: Duration = Duration::from_secs(10);

/// The secret outside the root: any run that reads it finds it.
const SECRET: &str = "TOKEN=hunter2";

fn temp_dir(label: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("weir-files-confine-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::canonicalize(&dir).unwrap()
}

/// `base/root` holding two files, links that stay inside (relative and absolute) and links
/// that lead out to `base/outside/secret.txt` (which holds [`SECRET`]), to its directory, to
/// /etc/passwd and to the worker's environment.
fn attack_tree(label: &str) -> (PathBuf, PathBuf) {
    let base = temp_dir(label);
    let root = base.join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(base.join("outside")).unwrap();
    std::fs::write(base.join("outside/secret.txt"), format!("{SECRET}\n")).unwrap();
    std::fs::write(base.join("outside/more.txt"), format!("{SECRET}\n")).unwrap();
    std::fs::write(root.join("a.txt"), "one two\n").unwrap();
    std::fs::write(root.join("sub/b.txt"), "three\n").unwrap();
    symlink("../a.txt", root.join("sub/up")).unwrap();
    symlink(root.join("sub"), root.join("abs-sub")).unwrap();
    symlink("../outside/secret.txt", root.join("leak")).unwrap();
    symlink(base.join("outside/secret.txt"), root.join("abs-leak")).unwrap();
    symlink("../../outside", root.join("sub/dir-out")).unwrap();
    symlink("/etc/passwd", root.join("passwd")).unwrap();
    symlink("/proc/self/environ", root.join("environ")).unwrap();
    (base, root)
}

fn grep(pattern: &str) -> Options {
    Options {
        grep: Some(regex::bytes::Regex::new(pattern).unwrap()),
        count: true,
        ..Options::default()
    }
}

fn beneath(root: &Path, paths: &[PathBuf]) -> Tree {
    let roots = Roots::open(&[root.to_path_buf()]).unwrap();
    Tree::beneath(&roots, paths).unwrap()
}

/// Both programs over a confined tree made by `tree`; their reports sorted and totals.
async fn both(tree: impl Fn() -> Tree, options: Options) -> [(Vec<FileReport>, Totals); 2] {
    let mut sync_reports = Vec::new();
    let sync_totals = run_sync(&tree(), &options, Arc::default(), |r| {
        sync_reports.push(r.clone())
    });
    let mut async_reports = Vec::new();
    let async_totals = run_async(tree(), options, CancellationToken::new(), |r| {
        async_reports.push(r.clone())
    })
    .await;
    for reports in [&mut sync_reports, &mut async_reports] {
        reports.sort_by(|a, b| a.path.cmp(&b.path));
    }
    [(sync_reports, sync_totals), (async_reports, async_totals)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_leading_out_of_the_root_are_reported_and_never_read() {
    let (base, root) = attack_tree("links");
    let pattern = "hunter2|^root:|PATH=";
    for (reports, totals) in both(
        || beneath(&root, std::slice::from_ref(&root)),
        grep(pattern),
    )
    .await
    {
        let report = |name: &str| {
            reports
                .iter()
                .find(|r| r.path == root.join(name).to_str().unwrap())
                .unwrap_or_else(|| panic!("{name} reported: {reports:#?}"))
        };
        assert_eq!(totals.matches, 0, "nothing outside was read: {reports:#?}");
        for name in ["leak", "abs-leak", "sub/dir-out", "passwd", "environ"] {
            let error = report(name).error.as_deref().unwrap_or_default();
            assert!(
                error.starts_with("outside the files roots"),
                "{name}: {error:?}"
            );
            assert_eq!(report(name).bytes, None, "{name}");
        }
        // The directory the link leads to is not listed: its names never show.
        assert!(
            reports.iter().all(|r| !r.path.contains("more.txt")),
            "{reports:#?}"
        );
        // Links that stay inside are followed: a relative one, and an absolute one naming
        // a directory beneath the root.
        assert_eq!(report("sub/up").words, Some(2));
        assert_eq!(report("abs-sub/b.txt").words, Some(1));
        assert_eq!(report("abs-sub/up").words, Some(2));
        // a.txt, sub/b.txt, sub/up and the two through abs-sub; the five links out, and
        // sub/dir-out again through abs-sub.
        assert_eq!((totals.files, totals.errors), (5, 6), "{reports:#?}");
    }
    // The same tree walked anywhere (the operator's own `weir files`) reads the secret:
    // the test can see a leak.
    let mut matches = 0;
    run_sync(
        &Tree::anywhere(vec![root.clone()]),
        &grep("hunter2"),
        Arc::default(),
        |r| matches += r.match_count.unwrap_or(0),
    );
    assert!(matches > 0);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn paths_outside_every_root_are_refused_before_anything_is_read() {
    let (base, root) = attack_tree("paths");
    let roots = Roots::open(std::slice::from_ref(&root)).unwrap();
    for path in [
        PathBuf::from("/etc/passwd"),
        PathBuf::from("/"),
        root.join("../outside/secret.txt"),
        root.join("sub/../../outside"),
        PathBuf::from("../outside"),
        root.join("leak"),
        root.join("sub/dir-out"),
        base.clone(),
    ] {
        let refused = Tree::beneath(&roots, std::slice::from_ref(&path))
            .expect_err(&format!("{} is outside", path.display()));
        let message = refused.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(&root.display().to_string()), "{message}");
    }
    // One path outside refuses the whole run, whatever the others.
    assert!(Tree::beneath(&roots, &[root.join("a.txt"), PathBuf::from("/etc")]).is_err());
    for path in [
        root.join("a.txt"),
        root.join("sub/../a.txt"),
        PathBuf::from("sub"),
        root.join("abs-sub"),
    ] {
        assert!(
            Tree::beneath(&roots, std::slice::from_ref(&path)).is_ok(),
            "{}",
            path.display()
        );
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// The walk listed `d/1.txt` and `d/2.txt`; after the first is read, `d` is swapped for a
/// link to the directory outside. The second is opened beneath the root when it is read,
/// so the swap is caught there: the check is at each open, not on the names walked.
#[test]
fn a_directory_swapped_for_a_link_during_the_walk_is_not_followed() {
    let (base, root) = attack_tree("swap");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/1.txt"), "first\n").unwrap();
    std::fs::write(root.join("d/2.txt"), "second\n").unwrap();
    std::fs::write(base.join("outside/2.txt"), format!("{SECRET}\n")).unwrap();
    let tree = beneath(&root, &[root.join("d")]);
    let mut reports = Vec::new();
    let totals = run_sync(&tree, &grep("hunter2"), Arc::default(), |report| {
        if report.path.ends_with("1.txt") {
            std::fs::rename(root.join("d"), root.join("d-was")).unwrap();
            symlink("../outside", root.join("d")).unwrap();
        }
        reports.push(report.clone());
    });
    assert_eq!(totals.matches, 0, "{reports:#?}");
    let second = reports.iter().find(|r| r.path.ends_with("2.txt")).unwrap();
    assert!(
        second
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("outside the files roots")),
        "{second:?}"
    );
    std::fs::remove_dir_all(&base).unwrap();
}

/// 50 files of 100 bytes.
fn fifty_files(label: &str) -> PathBuf {
    let root = temp_dir(label);
    for n in 0..50 {
        std::fs::write(root.join(format!("f{n:02}")), "word ".repeat(20)).unwrap();
    }
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stops_at_its_file_and_byte_limits() {
    let root = fifty_files("limits");
    let limited = |files, bytes| Options {
        limits: Limits { files, bytes },
        jobs: 2,
        ..Options::default()
    };
    let trees: [&dyn Fn() -> Tree; 2] = [&|| beneath(&root, std::slice::from_ref(&root)), &|| {
        Tree::anywhere(vec![root.clone()])
    }];
    for tree in trees {
        for (_, totals) in both(tree, limited(Some(10), None)).await {
            assert_eq!(totals.limit, Some(Limit::Files(10)), "{totals:?}");
            assert!(totals.partial && totals.files <= 10, "{totals:?}");
        }
        for (_, totals) in both(tree, limited(None, Some(1000))).await {
            assert_eq!(totals.limit, Some(Limit::Bytes(1000)), "{totals:?}");
            assert!(totals.partial && totals.bytes <= 1000, "{totals:?}");
        }
        // Exactly at the limits: the run is whole.
        for (_, totals) in both(tree, limited(Some(50), Some(5000))).await {
            assert_eq!((totals.files, totals.bytes), (50, 5000));
            assert!(!totals.partial && totals.limit.is_none(), "{totals:?}");
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// Runs `run_async` on a thread of its own and cancels it after `after`; the totals, or
/// `None` when it did not end within [`DEADLINE`] of the cancel (the thread is then left
/// behind, so a hang fails the test instead of hanging it).
fn cancelled_after(tree: Tree, options: Options, after: Duration) -> Option<Totals> {
    let stop = CancellationToken::new();
    let (done, ended) = mpsc::channel();
    std::thread::spawn({
        let stop = stop.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let totals = runtime.block_on(run_async(tree, options, stop, |_| {}));
            let _ = done.send(totals);
        }
    });
    std::thread::sleep(after);
    stop.cancel();
    ended.recv_timeout(DEADLINE).ok()
}

/// A 64 GiB sparse file (the one worker reads it for far longer than the test waits) and
/// 40,000 small files, more than the 32,768 paths the queue holds: the walk fills the
/// queue and waits on it. A cancel must end the run within the deadline: the file in
/// flight stops at its next buffer, and the waiting walk is let go.
#[test]
fn a_cancel_ends_the_run_mid_file_with_the_walk_waiting_on_a_full_queue() {
    let root = temp_dir("cancel");
    // Named to come first in the confined walk's name order, so the worker is busy with it
    // while the walk goes on.
    std::fs::File::create(root.join("0-huge"))
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    for dir in 0..40 {
        let dir = root.join(format!("d{dir:02}"));
        std::fs::create_dir(&dir).unwrap();
        for n in 0..1000 {
            std::fs::File::create(dir.join(n.to_string())).unwrap();
        }
    }
    // SHA-256 is read in one pass (never split), and the one worker takes the large file
    // first.
    let options = Options {
        hash: Some(HashKind::Sha256),
        count: false,
        jobs: 1,
        ..Options::default()
    };
    for confined in [false, true] {
        let tree = match confined {
            true => beneath(&root, std::slice::from_ref(&root)),
            false => Tree::anywhere(vec![root.clone()]),
        };
        let totals = cancelled_after(tree, options.clone(), Duration::from_millis(1500))
            .unwrap_or_else(|| panic!("confined {confined}: the run did not end after its cancel"));
        assert!(totals.partial, "confined {confined}: {totals:?}");
        assert!(totals.files < 40_001, "confined {confined}: {totals:?}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// A FIFO in the tree is not a file to read (opening it would wait for a writer): the run
/// ends.
#[test]
fn a_fifo_in_the_tree_is_skipped_not_waited_on() {
    let root = temp_dir("fifo");
    std::fs::write(root.join("a.txt"), "a\n").unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    symlink("pipe", root.join("pipe-link")).unwrap();
    for confined in [false, true] {
        let tree = match confined {
            true => beneath(&root, std::slice::from_ref(&root)),
            false => Tree::anywhere(vec![root.clone()]),
        };
        let (done, ended) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(run_sync(&tree, &Options::default(), Arc::default(), |_| {}));
        });
        let totals = ended.recv_timeout(DEADLINE).expect("the run ends");
        assert_eq!((totals.files, totals.errors), (1, 0), "confined {confined}");
    }
    // Named as a path of its own, beneath a root: not opened either.
    let tree = beneath(&root, &[root.join("pipe")]);
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(run_sync(&tree, &Options::default(), Arc::default(), |_| {}));
    });
    assert_eq!(ended.recv_timeout(DEADLINE).expect("the run ends").files, 0);
    std::fs::remove_dir_all(&root).unwrap();
}
