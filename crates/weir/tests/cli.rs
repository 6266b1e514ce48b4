//! The `weir` binary, run as a user would: help, configuration errors, layering, serving
//! and signals.

#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

fn weir() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    // The tests must not see a developer's own settings.
    for (key, _) in std::env::vars() {
        if key.starts_with("WEIR_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A fresh, empty working directory.
fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weir-cli-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    weir()
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_explains_how_to_start() {
    let output = weir().arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("serve"), "{text}");
    assert!(text.contains("weir serve"), "{text}");

    let output = weir().args(["serve", "--help"]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--http-addr",
        "--data-dir",
        "--log-format",
        "--drain-timeout",
        "WEIR_HTTP_ADDR",
        "weir.toml",
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}:\n{text}");
    }
}

#[test]
fn usage_errors_exit_64() {
    let output = weir().arg("serve").arg("--no-such-flag").output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let output = weir().output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(64),
        "no subcommand is a usage error"
    );
}

#[test]
fn an_invalid_flag_value_exits_64_naming_key_value_and_allowed() {
    let dir = scratch_dir();
    let output = run_in(&dir, &["serve", "--max-connections", "lots"], &[]);
    assert_eq!(output.status.code(), Some(64));
    let text = stderr(&output);
    assert!(text.contains("http.max_connections"), "{text}");
    assert!(text.contains("\"lots\""), "{text}");
    assert!(text.contains("--max-connections"), "{text}");
    assert!(text.contains("a whole number from 1 to 1000000"), "{text}");
    assert!(
        !dir.join("weir-data").exists(),
        "nothing is created before validation passes"
    );
}

#[test]
fn every_invalid_value_is_reported_at_once_with_its_source() {
    let dir = scratch_dir();
    std::fs::write(
        dir.join("weir.toml"),
        "[http]\nidle_timeout = \"forever\"\n",
    )
    .unwrap();
    let output = run_in(
        &dir,
        &["serve", "--http-addr", "localhost"],
        &[("WEIR_LOG_FORMAT", "xml")],
    );
    assert_eq!(output.status.code(), Some(64));
    let text = stderr(&output);
    assert!(
        text.contains("http.addr") && text.contains("flag --http-addr"),
        "{text}"
    );
    assert!(
        text.contains("log.format") && text.contains("environment variable WEIR_LOG_FORMAT"),
        "{text}"
    );
    assert!(text.contains("expected human or json"), "{text}");
    assert!(
        text.contains("http.idle_timeout") && text.contains("weir.toml"),
        "{text}"
    );
}

#[test]
fn a_bad_configuration_file_exits_64() {
    let dir = scratch_dir();
    std::fs::write(dir.join("weir.toml"), "[http]\nadres = \"127.0.0.1:1\"\n").unwrap();
    let output = run_in(&dir, &["serve"], &[]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("unknown key \"http.adres\""),
        "{}",
        stderr(&output)
    );

    let output = run_in(&dir, &["serve", "--config", "missing.toml"], &[]);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("missing.toml"),
        "{}",
        stderr(&output)
    );
}

/// A running `weir serve` and the address it logged.
struct Running {
    child: Child,
    addr: String,
    log: std::sync::mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave a server behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The child is waited for by `Running`'s Drop, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn start_serving(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut child = weir()
        .current_dir(dir)
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    loop {
        let line = rx
            .recv_timeout(DEADLINE.saturating_sub(started.elapsed()))
            .expect("weir serve logs its address");
        if let Some(at) = line.find("http://") {
            let addr = line[at + 7..].split('/').next().unwrap().to_string();
            return Running {
                child,
                addr,
                log: rx,
            };
        }
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn wait_for_exit(child: &mut Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < DEADLINE, "weir did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn serve_answers_health_and_metrics_and_exits_0_on_sigterm() {
    let dir = scratch_dir();
    let mut running = start_serving(
        &dir,
        &["--http-addr", "127.0.0.1:0", "--line-addr", "127.0.0.1:0"],
        &[],
    );
    assert!(
        dir.join("weir-data").is_dir(),
        "the default data directory is created"
    );

    let health = http_get(&running.addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    // The gauge counts this connection, and the /healthz one until the server has finished
    // closing it, a moment after the client saw its end: ask again until that one is gone.
    let started = Instant::now();
    let mut asked = 0;
    let metrics = loop {
        let metrics = http_get(&running.addr, "/metrics");
        asked += 1;
        if metrics.contains("weir_http_open_connections 1\n") || started.elapsed() > DEADLINE {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
    // /healthz and the earlier /metrics answers (this one is not finished when rendered).
    assert!(
        metrics.contains(&format!(
            "weir_http_responses_total{{class=\"2xx\"}} {asked}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_http_open_connections 1"),
        "{metrics}"
    );
    let missing = http_get(&running.addr, "/no-such-page");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    signal(&running.child, "TERM");
    let status = wait_for_exit(&mut running.child);
    assert_eq!(status.code(), Some(0));
    let log: Vec<String> = running.log.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("shutting down")), "{log:?}");
}

#[test]
fn ctrl_c_also_shuts_down_cleanly() {
    let dir = scratch_dir();
    let mut running = start_serving(
        &dir,
        &["--http-addr", "127.0.0.1:0", "--line-addr", "127.0.0.1:0"],
        &[],
    );
    signal(&running.child, "INT");
    assert_eq!(wait_for_exit(&mut running.child).code(), Some(0));
}

#[test]
fn flags_beat_environment_beats_file_beats_default() {
    let dir = scratch_dir();
    std::fs::write(
        dir.join("weir.toml"),
        "data_dir = \"from-file\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n[http]\naddr = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    // The address comes from the flag (beating the file), the data directory from the
    // environment (beating the file), the log format from the file (beating the default).
    let mut running = start_serving(
        &dir,
        &["--http-addr", "127.0.0.1:0", "--line-addr", "127.0.0.1:0"],
        &[("WEIR_DATA_DIR", "from-env")],
    );
    assert!(dir.join("from-env").is_dir());
    assert!(!dir.join("from-file").exists());
    assert!(!running.addr.ends_with(":1"));
    let health = http_get(&running.addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    signal(&running.child, "TERM");
    assert_eq!(wait_for_exit(&mut running.child).code(), Some(0));
    let log: Vec<String> = running.log.try_iter().collect();
    assert!(
        log.iter().all(|l| l.starts_with('{')),
        "JSON logs from the file setting: {log:?}"
    );
}

#[test]
fn an_address_in_use_exits_1_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = scratch_dir();
    let output = run_in(&dir, &["serve", "--http-addr", &addr], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("cannot listen on {addr}")),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_open_server_refuses_a_non_loopback_address_and_hides_bad_tokens() {
    let dir = scratch_dir();
    let output = run_in(&dir, &["serve", "--http-addr", "0.0.0.0:0"], &[]);
    assert_eq!(output.status.code(), Some(64));
    let text = stderr(&output);
    assert!(
        text.contains("http.addr") && text.contains("loopback"),
        "{text}"
    );

    let output = run_in(
        &dir,
        &["serve"],
        &[("WEIR_AUTH_TOKENS", "leaky-secret-value:root")],
    );
    assert_eq!(output.status.code(), Some(64));
    let text = stderr(&output);
    assert!(text.contains("auth.tokens"), "{text}");
    assert!(
        !text.contains("leaky-secret-value"),
        "the secret is not printed: {text}"
    );
}

#[test]
fn help_never_shows_a_token_from_the_environment() {
    let dir = scratch_dir();
    let output = run_in(
        &dir,
        &["serve", "--help"],
        &[("WEIR_AUTH_TOKENS", "very-secret-token-0123:admin")],
    );
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("--tokens"), "{text}");
    assert!(!text.contains("very-secret-token"), "{text}");
    assert!(text.contains("[default: none]"), "{text}");
}

#[test]
fn a_topic_store_that_cannot_be_opened_exits_1_naming_it() {
    let dir = scratch_dir();
    // A directory where the database file should be: SQLite cannot open it.
    std::fs::create_dir_all(dir.join("weir-data/weir.db")).unwrap();
    let output = run_in(
        &dir,
        &[
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--line-addr",
            "127.0.0.1:0",
            "--durable",
            "orders.>",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("cannot open the topic store") && text.contains("weir.db"),
        "{text}"
    );
}
