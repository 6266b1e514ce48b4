//! `weir files` as a process: output, exit codes, the sync and async programs agreeing,
//! and Ctrl-C.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn weir_files(args: &[&str]) -> (Option<i32>, String, String) {
    support::run_weir(&[&["files"], args].concat())
}

fn tree() -> std::path::PathBuf {
    let dir = support::temp_dir("files");
    for n in 0..40 {
        let sub = dir.join(format!("s{}", n % 4));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{n}")),
            "word ".repeat(n) + "\nerror here\n".repeat(n % 3).as_str(),
        )
        .unwrap();
    }
    dir
}

#[test]
fn json_lines_from_both_programs_agree_and_end_with_the_total() {
    let dir = tree();
    let path = dir.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            path, "--count", "--hash", "blake3", "--grep", "error", "--json",
        ];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = weir_files(&args);
        assert_eq!(code, Some(0), "{stderr}");
        let mut lines: Vec<Value> = stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let total = lines.pop().unwrap();
        lines.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
        (lines, total)
    };
    let (files, total) = run(&[]);
    let (sync_files, sync_total) = run(&["--sync"]);
    assert_eq!(files, sync_files);
    assert_eq!(total, sync_total);
    assert_eq!(total["total"]["files"], 40);
    // Files n = 1..39 with n % 3 == 1 or 2 hold n % 3 matching lines: 13×1 + 13×2.
    assert_eq!(total["total"]["matches"], 39);
    assert!(files
        .iter()
        .all(|file| file["hash"].as_str().is_some_and(|hash| hash.len() == 64)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_that_cannot_be_read_is_reported_and_the_exit_code_says_so() {
    let dir = tree();
    std::os::unix::fs::symlink(dir.join("gone"), dir.join("dangling")).unwrap();
    let (code, stdout, stderr) = weir_files(&[dir.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("dangling: broken symbolic link"),
        "{stderr}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .contains("total: 40 files, 1 errors"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_exit_64_with_the_reason() {
    let (code, _, stderr) = weir_files(&[".", "--grep", "("]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("--grep `(`"), "{stderr}");
    let (code, _, stderr) = weir_files(&[".", "--jobs", "0"]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("--jobs `0`"), "{stderr}");
    let (code, _, _) = weir_files(&[".", "--hash", "md5"]);
    assert_eq!(code, Some(64));
}

/// Ctrl-C in the middle of a huge file: the run stops at the next buffer, prints the
/// partial totals marked as such, and exits 130.
#[test]
fn ctrl_c_prints_partial_totals() {
    let dir = support::temp_dir("files-stop");
    // 64 GiB, sparse: reading it takes far longer than the test waits.
    std::fs::File::create(dir.join("huge"))
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    std::fs::write(dir.join("small"), "a\n").unwrap();
    for sync in [false, true] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command.args(["files", dir.to_str().unwrap(), "--hash", "sha256"]);
        if sync {
            command.arg("--sync");
        }
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(700));
        assert!(Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success());
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(130), "sync: {sync}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout
                .lines()
                .last()
                .unwrap()
                .contains("(partial: interrupted)"),
            "sync {sync}: {stdout}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--max-files` and `--max-bytes` stop the run when it would pass them: the totals are
/// marked partial with the limit named, and the exit code is 1.
#[test]
fn a_limit_stops_the_run_and_says_which() {
    let dir = tree();
    let path = dir.to_str().unwrap();
    let (code, stdout, stderr) = weir_files(&[path, "--max-files", "5"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("stopped at --max-files (5 files)"),
        "{stderr}"
    );
    let total = stdout.lines().last().unwrap();
    assert!(
        total.contains("(partial: stopped at --max-files)"),
        "{total}"
    );
    let (code, stdout, stderr) = weir_files(&[path, "--max-bytes", "100", "--json", "--sync"]);
    assert_eq!(code, Some(1), "{stderr}");
    let total: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(total["total"]["limit"], serde_json::json!({"bytes": 100}));
    assert_eq!(total["total"]["partial"], true);
    // At the limit exactly, the run is whole.
    let (code, _, stderr) = weir_files(&[path, "--max-files", "40"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, _, stderr) = weir_files(&[path, "--max-files", "0"]);
    assert_eq!(code, Some(64));
    assert!(stderr.contains("--max-files `0`"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
