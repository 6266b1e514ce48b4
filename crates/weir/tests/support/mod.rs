//! Helpers shared by the binary's integration tests: a server on ephemeral ports, one-shot
//! HTTP requests, and a line-protocol client.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, DropGuard};
use weir::config::ServeConfig;

/// Runs `weir ARGS…` to its end: exit code, standard output, standard error.
pub fn run_weir(args: &[&str]) -> (Option<i32>, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("the weir binary runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every wait in a test has this deadline.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A `weir serve` in this process; stopped when dropped.
pub struct Server {
    pub http: String,
    pub line: String,
    _shutdown: DropGuard,
}

pub async fn start(mut config: ServeConfig) -> Server {
    if config.data_dir == std::path::Path::new("./weir-data") {
        // Each server its own data directory (the job store lives there).
        config.data_dir = temp_dir("serve");
    }
    let listeners = weir::serve::Listeners::ephemeral().await.unwrap();
    let http = listeners.http.local_addr().unwrap().to_string();
    let line = listeners.line.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    tokio::spawn(weir::serve::run(config, listeners, shutdown.clone()));
    Server {
        http,
        line,
        _shutdown: shutdown.drop_guard(),
    }
}

/// Sends `raw` (a whole request with `Connection: close`) and reads the whole answer.
pub async fn http(addr: &str, raw: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out))
        .await
        .expect("an answer within the deadline")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from `stream` until `until` appears; returns everything read.
pub async fn read_until(stream: &mut TcpStream, until: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // A deadline for each read and one for the whole: a stream that keeps sending (SSE
    // heartbeats every 15 s) but never the awaited text must fail the test, not hang it.
    let overall = tokio::time::Instant::now() + 3 * DEADLINE;
    while !String::from_utf8_lossy(&seen).contains(until) {
        let deadline = overall.min(tokio::time::Instant::now() + DEADLINE);
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{until:?} within the deadline; got: {}",
                    String::from_utf8_lossy(&seen)
                )
            })
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// A line-protocol client.
pub struct LineClient {
    /// The lines from the server, for tests that need `None` (the end) or their own deadline.
    pub lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl LineClient {
    pub async fn connect(addr: &str) -> LineClient {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut client = LineClient {
            lines: BufReader::new(read).lines(),
            write,
        };
        assert!(client.line().await.starts_with("+OK weir line protocol"));
        client
    }

    pub async fn send(&mut self, line: &str) {
        self.write.write_all(line.as_bytes()).await.unwrap();
        self.write.write_all(b"\r\n").await.unwrap();
    }

    /// Sends bytes as they are (no line ending added).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    pub async fn line(&mut self) -> String {
        tokio::time::timeout(DEADLINE, self.lines.next_line())
            .await
            .expect("a line within the deadline")
            .unwrap()
            .expect("the connection is open")
    }

    pub async fn ask(&mut self, line: &str) -> String {
        self.send(line).await;
        self.line().await
    }

    /// The next line, an `EVENT topic EPOCH-OFFSET payload`, with its epoch left out
    /// (`EVENT topic OFFSET payload`): epochs differ from run to run.
    pub async fn event(&mut self) -> String {
        let line = self.line().await;
        let mut words = line.splitn(4, ' ');
        let (verb, topic, position) = (words.next(), words.next(), words.next());
        match (verb, topic, position.and_then(|p| p.split_once('-'))) {
            (Some("EVENT"), Some(topic), Some((epoch, offset)))
                if epoch.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let payload = words.next().unwrap_or("");
                format!("EVENT {topic} {offset} {payload}")
            }
            _ => panic!("expected EVENT topic EPOCH-OFFSET payload, got {line:?}"),
        }
    }

    /// Reads until a line starting with `prefix`; returns it.
    pub async fn expect(&mut self, prefix: &str) -> String {
        loop {
            let line = self.line().await;
            if line.starts_with(prefix) {
                return line;
            }
        }
    }
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(label: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weir-test-{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `weir` child process; killed (SIGKILL) when dropped.
pub struct Process {
    pub child: std::process::Child,
    /// `host:port` of its HTTP listener (for `weir serve`).
    pub addr: String,
    /// `host:port` of its line-protocol listener (for `weir serve`).
    pub line: String,
}

impl Process {
    /// `kill -9`: no shutdown at all.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Starts `weir serve` on ephemeral loopback ports with `args` added; returns once it
/// logs its address.
// The child is waited for by `Process`'s Drop, which clippy cannot see.
#[allow(clippy::zombie_processes)]
pub fn spawn_serve(args: &[&str]) -> Process {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--line-addr",
            "127.0.0.1:0",
        ])
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut addr, mut line_addr) = (String::new(), String::new());
    while addr.is_empty() || line_addr.is_empty() {
        let line = lines
            .next()
            .expect("weir logs its addresses before exiting")
            .unwrap();
        if let Some(at) = line.find("http://") {
            addr = line[at + 7..].split('/').next().unwrap().to_string();
        } else if let Some(at) = line.find("line protocol on ") {
            line_addr = line[at + 17..].split(' ').next().unwrap().to_string();
        }
    }
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Process {
        child,
        addr,
        line: line_addr,
    }
}

/// Starts `weir worker` with `args`; its log is discarded.
#[allow(clippy::zombie_processes)]
pub fn spawn_worker(args: &[&str]) -> Process {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("worker")
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Process {
        child,
        addr: String::new(),
        line: String::new(),
    }
}

/// The request log of a `weir demo-site` whose host 0 is at `base`: (URL, arrival in ms),
/// in arrival order.
pub async fn demo_log(base: &str) -> Vec<(String, f64)> {
    let client = weir_client::Client::builder()
        .egress(weir_client::Egress::any())
        .build()
        .unwrap();
    let url = format!("{base}{}", weir_demo_site::LOG_PATH);
    let text = client
        .http()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line.get("url").is_some())
        .map(|line| {
            let url = line["url"].as_str().unwrap().to_owned();
            (url, line["at_ms"].as_f64().unwrap())
        })
        .collect()
}

/// The ids of the jobs in an answer's `jobs` array (a batch enqueue, a page, a lease).
pub fn job_ids(answer: &serde_json::Value) -> Vec<i64> {
    answer["jobs"]
        .as_array()
        .expect("a jobs array")
        .iter()
        .map(|job| job["id"].as_i64().expect("a job id"))
        .collect()
}

/// A fresh database on the test PostgreSQL, or `None` when the suite runs without one.
pub fn fresh_database() -> Option<String> {
    let url = match std::env::var("WEIR_TEST_DATABASE_URL") {
        Ok(url) => url,
        Err(_) if std::env::var("WEIR_TEST_POSTGRES").as_deref() == Ok("skip") => return None,
        Err(_) => panic!(
            "WEIR_TEST_DATABASE_URL is not set: run scripts/test.sh (it starts PostgreSQL), \
             or set WEIR_TEST_POSTGRES=skip to leave the PostgreSQL tests out"
        ),
    };
    let name = format!("weir_cluster_{}", fastrand::u32(..));
    let status = std::process::Command::new("psql")
        .args([&url, "-q", "-c", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql runs");
    assert!(status.success(), "CREATE DATABASE failed");
    let base = url.rsplit_once('/').unwrap().0;
    Some(format!("{base}/{name}"))
}
