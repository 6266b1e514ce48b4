//! The async program against the synchronous one on a generated tree with every kind of
//! trouble a real tree has, and both against values computed here independently.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use weir_files::{run_async, run_sync, FileReport, HashKind, Options, Roots, Totals, Tree};

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-files-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tree of 300 text files over nested directories, a 17 MiB file (large enough to be
/// split into pieces when the work allows it), an empty file, a
/// symbolic link loop, a broken link, a link to a file, a name that is not UTF-8, and a
/// .gitignore. Every link stays inside the tree.
fn generate(root: &Path) {
    let mut seed = 7u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    for n in 0..300 {
        let dir = root.join(format!("d{}", n % 7)).join(format!("e{}", n % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = String::new();
        for line in 0..(next() % 50) {
            let words = next() % 9;
            for word in 0..words {
                text.push_str(if (line + word) % 11 == 0 {
                    "needle"
                } else {
                    "hay"
                });
                text.push(if word % 4 == 3 { '\t' } else { ' ' });
            }
            text.push('\n');
        }
        if n % 5 == 0 {
            text.push_str("no newline at the end needle");
        }
        std::fs::write(dir.join(format!("f{n}.txt")), text).unwrap();
    }
    // Words of 13 bytes, lines of 97: piece boundaries fall inside words and lines.
    let big: Vec<u8> = (0..(17u32 << 20) + 12_345)
        .map(|i| {
            if i % 97 == 0 {
                b'\n'
            } else if i % 13 == 0 {
                b' '
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    std::fs::write(root.join("big.bin"), big).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink(root, root.join("d0").join("loop")).unwrap();
    std::os::unix::fs::symlink(root.join("nowhere"), root.join("broken")).unwrap();
    std::os::unix::fs::symlink(root.join("empty"), root.join("link-to-empty")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"odd-\xff-name");
    std::fs::write(root.join(odd), b"x\n").unwrap();
    std::fs::write(root.join(".gitignore"), "d6/\n*.bin\n").unwrap();
}

fn options() -> Options {
    Options {
        count: true,
        hash: Some(HashKind::Sha256),
        grep: Some(
            regex::bytes::RegexBuilder::new("needle")
                .multi_line(true)
                .build()
                .unwrap(),
        ),
        ..Options::default()
    }
}

fn sorted(mut reports: Vec<FileReport>) -> Vec<FileReport> {
    reports.sort_by(|a, b| (&a.path, &a.error).cmp(&(&b.path, &b.error)));
    reports
}

/// `root` walked anywhere, or confined beneath itself.
fn tree(root: &Path, confined: bool) -> Tree {
    match confined {
        false => Tree::anywhere(vec![root.to_path_buf()]),
        true => {
            let roots = Roots::open(&[root.to_path_buf()]).unwrap();
            Tree::beneath(&roots, &[root.to_path_buf()]).unwrap()
        }
    }
}

/// Both programs over `root`; also both over `root` confined beneath itself, which must
/// give the same (the tree has no link leading out).
async fn both(
    root: &Path,
    options: Options,
) -> ((Vec<FileReport>, Totals), (Vec<FileReport>, Totals)) {
    let mut runs = Vec::new();
    for confined in [false, true] {
        let mut sync_reports = Vec::new();
        let sync_totals = run_sync(
            &tree(root, confined),
            &options,
            Arc::new(AtomicBool::new(false)),
            |r| sync_reports.push(r.clone()),
        );
        let mut async_reports = Vec::new();
        let async_totals = run_async(
            tree(root, confined),
            options.clone(),
            CancellationToken::new(),
            |r| async_reports.push(r.clone()),
        )
        .await;
        runs.push((
            (sorted(sync_reports), sync_totals),
            (sorted(async_reports), async_totals),
        ));
    }
    let confined = runs.pop().unwrap();
    let anywhere = runs.pop().unwrap();
    assert_eq!(
        confined, anywhere,
        "confined beneath the tree itself, nothing changes"
    );
    anywhere
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_program_gives_what_the_synchronous_one_gives() {
    let root = temp_dir("same");
    generate(&root);
    let ((sync_reports, sync_totals), (async_reports, async_totals)) = both(&root, options()).await;
    assert_eq!(async_reports, sync_reports);
    assert_eq!(async_totals, sync_totals);
    // 300 text files, big.bin, empty, link-to-empty, .gitignore, the name that is not
    // UTF-8: 305 read; the broken link and the loop are errors.
    assert_eq!(
        (sync_totals.files, sync_totals.errors),
        (305, 2),
        "{sync_reports:#?}"
    );
    let error = |needle: &str| {
        sync_reports
            .iter()
            .find(|r| r.path.contains(needle))
            .and_then(|r| r.error.clone())
    };
    // Counted, and named with the byte escaped, as `wc` and ripgrep count it.
    let odd = sync_reports
        .iter()
        .find(|r| r.path.ends_with("/odd-\\xff-name"))
        .expect("the file whose name is not UTF-8 is reported");
    assert_eq!(
        (odd.error.as_deref(), odd.lines, odd.words),
        (None, Some(1), Some(1))
    );
    assert_eq!(error("broken").as_deref(), Some("broken symbolic link"));
    assert!(
        error("loop").is_some_and(|e| e.contains("loop")),
        "{:?}",
        error("loop")
    );
    assert!(!sync_totals.partial);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Counts and BLAKE3 merge exactly, so the async program splits the large file into
/// pieces that both workers process; the results must not show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_split_into_pieces_gives_the_one_pass_results() {
    let root = temp_dir("split");
    generate(&root);
    let big = std::fs::read(root.join("big.bin")).unwrap();
    // With one worker, the file it queues for splitting is already `jobs` queued: it reads
    // the pieces itself before opening another file.
    for jobs in [1, 3] {
        let options = Options {
            count: true,
            hash: Some(HashKind::Blake3),
            jobs,
            ..Options::default()
        };
        let ((sync_reports, sync_totals), (async_reports, async_totals)) =
            both(&root, options).await;
        assert_eq!(async_reports, sync_reports, "jobs {jobs}");
        assert_eq!(async_totals, sync_totals, "jobs {jobs}");
        let report = async_reports
            .iter()
            .find(|r| r.path.ends_with("big.bin"))
            .unwrap();
        assert_eq!(
            report.hash.as_deref(),
            Some(blake3::hash(&big).to_hex().as_str())
        );
        assert_eq!(report.bytes, Some(big.len() as u64));
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_hashes_and_matches_are_right() {
    let root = temp_dir("values");
    let text = "one two  three\nneedle in the hay\n\tneedle\nlast line, no newline";
    std::fs::write(root.join("a.txt"), text).unwrap();
    std::fs::write(root.join("abc"), "abc").unwrap();
    let ((reports, totals), _) = both(&root, options()).await;
    let a = reports.iter().find(|r| r.path.ends_with("a.txt")).unwrap();
    assert_eq!(
        (a.lines, a.words, a.bytes),
        (Some(3), Some(12), Some(text.len() as u64))
    );
    assert_eq!(
        a.matches
            .iter()
            .map(|m| (m.line, m.text.as_str()))
            .collect::<Vec<_>>(),
        [(2, "needle in the hay"), (3, "\tneedle")]
    );
    let abc = reports.iter().find(|r| r.path.ends_with("abc")).unwrap();
    // SHA-256 of "abc" (FIPS 180-2, appendix B.1).
    assert_eq!(
        abc.hash.as_deref(),
        Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!((totals.files, totals.lines, totals.matches), (2, 3, 2));
    let blake = Options {
        hash: Some(HashKind::Blake3),
        ..options()
    };
    let ((reports, _), _) = both(&root, blake).await;
    let abc = reports.iter().find(|r| r.path.ends_with("abc")).unwrap();
    // BLAKE3 of "abc" (the reference implementation's output).
    assert_eq!(
        abc.hash.as_deref(),
        Some("6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85")
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitignore_rules_apply_when_asked() {
    let root = temp_dir("ignore");
    generate(&root);
    let ignoring = Options {
        gitignore: true,
        ..options()
    };
    let ((sync_reports, sync_totals), (async_reports, async_totals)) = both(&root, ignoring).await;
    assert_eq!(async_reports, sync_reports);
    assert_eq!(async_totals, sync_totals);
    assert!(sync_reports
        .iter()
        .all(|r| !r.path.contains("/d6/") && !r.path.ends_with(".bin")));
    // d6 holds files 6, 13, 20, … 293: 42 of the 300.
    assert_eq!(
        sync_reports
            .iter()
            .filter(|r| r.path.ends_with(".txt"))
            .count(),
        300 - 42
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_run_reports_partial_totals() {
    let root = temp_dir("stop");
    generate(&root);
    let stop = CancellationToken::new();
    stop.cancel();
    let totals = run_async(tree(&root, false), options(), stop.clone(), |_| {}).await;
    assert!(totals.partial);
    assert!(totals.files < 305);
    // The same with counts and BLAKE3, where the large file is split into pieces.
    let splittable = Options {
        count: true,
        hash: Some(HashKind::Blake3),
        jobs: 2,
        ..Options::default()
    };
    let totals = run_async(tree(&root, true), splittable, stop, |_| {}).await;
    assert!(totals.partial);
    assert!(totals.files < 305);
    for confined in [false, true] {
        let stopped = Arc::new(AtomicBool::new(true));
        let totals = run_sync(&tree(&root, confined), &options(), stopped, |_| {});
        assert!(totals.partial);
        assert_eq!(totals.files, 0);
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// Ignore files at several levels, a re-included name, `.ignore` over `.gitignore`, the
/// repository's exclude file, and a walk started below the root (the rules of the
/// directories above it, up to the root, apply): the confined walk decides as the `ignore`
/// crate's walker does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_ignore_rules_decide_as_the_ignore_crate_does() {
    let root = temp_dir("nested-ignore");
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(".git/info/exclude", "secret*\n");
    write(".gitignore", "*.log\n!keep.log\nbuild/\n");
    write("a/.gitignore", "*.tmp\n");
    write("a/.ignore", "!x.tmp\n");
    for file in [
        "top.log",
        "keep.log",
        "secret-top",
        "build/out.txt",
        "a/b/c.log",
        "a/b/keep.log",
        "a/x.tmp",
        "a/y.tmp",
        "a/secret1",
        "a/build/out.txt",
        "a/plain.txt",
    ] {
        write(file, "x\n");
    }
    let options = Options {
        gitignore: true,
        ..Options::default()
    };
    let roots = Roots::open(std::slice::from_ref(&root)).unwrap();
    for start in [root.clone(), root.join("a"), root.join("a/b")] {
        let mut runs = Vec::new();
        let trees = [
            Tree::anywhere(vec![start.clone()]),
            Tree::beneath(&roots, std::slice::from_ref(&start)).unwrap(),
        ];
        for tree in trees {
            let mut reports = Vec::new();
            run_sync(&tree, &options, Arc::default(), |r| {
                reports.push(r.path.clone())
            });
            reports.sort();
            runs.push(reports);
        }
        assert_eq!(runs[0], runs[1], "from {}", start.display());
        if start == root {
            let seen: Vec<&str> = runs[0]
                .iter()
                .map(|path| path.strip_prefix(root.to_str().unwrap()).unwrap())
                .filter(|path| !path.starts_with("/.git/"))
                .collect();
            assert_eq!(
                seen,
                [
                    "/.gitignore",
                    "/a/.gitignore",
                    "/a/.ignore",
                    "/a/b/keep.log",
                    "/a/plain.txt",
                    "/a/x.tmp",
                    "/keep.log"
                ]
            );
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
}
