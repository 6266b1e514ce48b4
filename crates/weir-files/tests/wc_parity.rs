//! Line, word and byte counts against GNU `wc`. Text in UTF-8 is counted as `wc` counts it
//! in a UTF-8 locale (`LC_ALL=C.UTF-8`). On any bytes (binary files, invalid UTF-8) the rule
//! is checked against `LC_ALL=C wc` of the same file with each byte from 0x80 written as
//! `x`: a byte from 0x80 makes a word as a printable byte does, and nothing else changes.
//! The files are crafted (NUL, control bytes, DEL, bytes from 0x80, invalid UTF-8, random
//! bytes) and one is large enough to be split into pieces by the async program.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use weir_files::{process_file, run_async, Options, Tree};

/// `wc -l -w -c` of `path` in `locale`: lines, words, bytes.
fn wc_in(locale: &str, path: &Path) -> (u64, u64, u64) {
    let output = std::process::Command::new("wc")
        .args(["-l", "-w", "-c"])
        .arg(path)
        .env("LC_ALL", locale)
        .output()
        .expect("wc runs (coreutils)");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let numbers: Vec<u64> = text
        .split_whitespace()
        .take(3)
        .map(|n| n.parse().unwrap())
        .collect();
    (numbers[0], numbers[1], numbers[2])
}

/// The counts the rule gives `path`, by `wc`: `LC_ALL=C wc` of a copy with every byte from
/// 0x80 made `x`.
fn wc(path: &Path) -> (u64, u64, u64) {
    let bytes: Vec<u8> = std::fs::read(path)
        .unwrap()
        .into_iter()
        .map(|byte| if byte >= 0x80 { b'x' } else { byte })
        .collect();
    let copy = path.with_extension("ascii");
    std::fs::write(&copy, bytes).unwrap();
    let counts = wc_in("C", &copy);
    std::fs::remove_file(&copy).unwrap();
    counts
}

fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        })
        .collect()
}

/// Crafted files, each named for what it holds.
fn files() -> Vec<(&'static str, Vec<u8>)> {
    let mut text_across_buffers = b"word ".repeat(13_107);
    text_across_buffers.extend_from_slice(b"cut\x00in\xffthe middle\n");
    vec![
        ("nul-only", vec![0; 100]),
        ("nul-inside-words", b"a\0b c\0\0d \0 e\n".to_vec()),
        ("control-bytes", b"\x01\x02 \x1b[0m \x7f x\x08y\n".to_vec()),
        (
            "high-bytes-alone",
            b"\x80\x81 \xff\xfe\n\xc3\xa9\n".to_vec(),
        ),
        (
            "high-bytes-in-words",
            b"caf\xc3\xa9 na\xefve \xe2\x80\x94dash\n".to_vec(),
        ),
        (
            "utf8-spaces",
            "a\u{a0}b c\u{2003}d e\u{3000}f\n".as_bytes().to_vec(),
        ),
        ("every-space", b"a\tb\nc\x0bd\x0ce\rf g".to_vec()),
        ("crlf", b"one\r\ntwo\r\n\r\n".to_vec()),
        ("empty", Vec::new()),
        ("random-64k", random_bytes(65_536, 1)),
        ("random-200k", random_bytes(200_000, 2)),
        ("text-across-buffers", text_across_buffers),
    ]
}

fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-files-wc-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// UTF-8 text with ASCII white space: exactly `wc` in a UTF-8 locale.
#[test]
fn counts_equal_utf8_locale_wc_on_text() {
    let dir = temp_dir("text");
    let texts = [
        ("russian", "привет мир\nкак дела\n"),
        ("japanese", "日本語 の テキスト\n"),
        ("mixed", "café naïve —dash 🚀 x\tétoile\r\n"),
        ("ascii", "one two  three\n\nfour"),
    ];
    for (name, text) in texts {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let report = process_file(&path, &Options::default());
        let ours = (
            report.lines.unwrap(),
            report.words.unwrap(),
            report.bytes.unwrap(),
        );
        assert_eq!(ours, wc_in("C.UTF-8", &path), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn counts_follow_the_rule_on_binary_files() {
    let dir = temp_dir("files");
    for (name, bytes) in files() {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let report = process_file(&path, &Options::default());
        let ours = (
            report.lines.unwrap(),
            report.words.unwrap(),
            report.bytes.unwrap(),
        );
        assert_eq!(ours, wc(&path), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Over 8 MiB and asked only for counts, the async program cuts the file into pieces read
/// by several workers; the joined counts are still `wc`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_counts_follow_the_rule() {
    let dir = temp_dir("split");
    std::fs::write(dir.join("random"), random_bytes(20 << 20, 3)).unwrap();
    // A word (`a`, NULs, `b`) across every piece boundary.
    let mut nuls = vec![b'a'];
    nuls.resize(17 << 20, 0);
    nuls.extend_from_slice(b"b c\n");
    std::fs::write(dir.join("nuls"), nuls).unwrap();
    let options = Options {
        jobs: 3,
        ..Options::default()
    };
    let mut reports = Vec::new();
    run_async(
        Tree::anywhere(vec![dir.clone()]),
        options,
        CancellationToken::new(),
        |report| reports.push(report.clone()),
    )
    .await;
    assert_eq!(reports.len(), 2);
    for report in reports {
        let ours = (
            report.lines.unwrap(),
            report.words.unwrap(),
            report.bytes.unwrap(),
        );
        assert_eq!(ours, wc(Path::new(&report.path)), "{}", report.path);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
