//! Durable topics: kept in SQLite under the data directory, they survive a restart with
//! their offsets and epoch, and a publish that was answered survives `kill -9`.

#![allow(missing_docs)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{http, read_until, spawn_serve, Process, DEADLINE};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use weir::config::ServeConfig;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn durable_config(dir: &Path) -> ServeConfig {
    let mut config = ServeConfig::defaults();
    config.data_dir = dir.to_path_buf();
    config.pubsub.durable = vec![weir_pubsub::TopicPattern::new("orders.>").unwrap()];
    config
}

/// Runs `weir serve` in this process until the returned token is cancelled; the handle
/// ends when it has shut down.
async fn serve(config: ServeConfig) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
    let listeners = weir::serve::Listeners::ephemeral().await.unwrap();
    let addr = listeners.http.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let run = weir::serve::run(config, listeners, shutdown.clone());
    let handle = tokio::spawn(async move { run.await.unwrap() });
    (addr, shutdown, handle)
}

fn post(topic: &str, body: &str) -> String {
    format!(
        "POST /v1/topics/{topic} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn field(json_response: &str, name: &str) -> u64 {
    let body = &json_response[json_response.find("\r\n\r\n").unwrap() + 4..];
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {body}"))
}

#[tokio::test]
async fn a_durable_topic_keeps_its_offsets_history_and_epoch_across_a_restart() {
    let dir = scratch_dir("restart");
    let (addr, shutdown, running) = serve(durable_config(&dir)).await;
    let mut epoch = 0;
    for (i, text) in ["first", "second", "third"].iter().enumerate() {
        let answer = http(&addr, &post("orders.new", text)).await;
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        assert_eq!(field(&answer, "offset"), i as u64);
        epoch = field(&answer, "epoch");
    }
    // A topic that is not durable, for contrast.
    assert!(http(&addr, &post("news", "gone"))
        .await
        .starts_with("HTTP/1.1 202"));
    shutdown.cancel();
    running.await.unwrap();

    let (addr, _shutdown, _running) = serve(durable_config(&dir)).await;
    let mut events = tokio::net::TcpStream::connect(&addr).await.unwrap();
    events
        .write_all(
            b"GET /v1/topics/orders.new/events?from=earliest HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await
        .unwrap();
    let seen = read_until(&mut events, "data: third").await;
    for (offset, text) in ["first", "second", "third"].iter().enumerate() {
        assert!(
            seen.contains(&format!("id: {epoch}-{offset}\ndata: {text}\n")),
            "{text} at {offset}: {seen}"
        );
    }
    let answer = http(&addr, &post("orders.new", "fourth")).await;
    assert_eq!(field(&answer, "offset"), 3, "offsets continue");
    assert_eq!(
        field(&answer, "epoch"),
        epoch,
        "the epoch stays: no history was lost"
    );
    let news = http(&addr, &post("news", "again")).await;
    assert_eq!(field(&news, "offset"), 0, "an in-memory topic starts over");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `weir serve` with `orders.>` durable under `dir`, keeping (and letting a replay read)
/// everything a burst publishes: then every answered publish can be checked, not only the
/// newest 1,000.
fn start_process(dir: &Path) -> Process {
    let dir = dir.to_str().expect("a UTF-8 scratch path");
    spawn_serve(&[
        "--durable",
        "orders.>",
        "--data-dir",
        dir,
        "--retention-messages",
        "1000000",
    ])
}

#[test]
fn every_answered_publish_survives_kill_9() {
    let dir = scratch_dir("kill");
    let server = start_process(&dir);
    let addr = server.addr.clone();
    // Publish over one keep-alive connection from another thread, recording every answer,
    // while this thread kills the server partway through.
    let publisher = std::thread::spawn(move || {
        let mut answered = Vec::new();
        let Ok(mut stream) = StdTcpStream::connect(&addr) else {
            return answered;
        };
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        for i in 0..100_000u32 {
            let body = format!("order-{i}");
            let request = format!(
                "POST /v1/topics/orders.burst HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(request.as_bytes()).is_err() {
                break;
            }
            let mut status = String::new();
            if reader.read_line(&mut status).unwrap_or(0) == 0 {
                break;
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return answered;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut json = vec![0u8; length];
            if reader.read_exact(&mut json).is_err() {
                break;
            }
            assert!(status.starts_with("HTTP/1.1 202"), "{status}");
            let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
            answered.push((value["offset"].as_u64().unwrap(), body));
        }
        answered
    });
    // Let a few hundred publishes through, then kill -9 (SIGKILL: no shutdown at all).
    let started = Instant::now();
    let db = dir.join("weir.db");
    while started.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut server = server;
    server.kill_9();
    let answered = publisher.join().unwrap();
    assert!(
        answered.len() > 10,
        "the burst got going: {}",
        answered.len()
    );
    assert!(db.exists());

    assert_survived(&dir, "orders.burst", &answered);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Restarts `weir serve` on `dir` and checks that every `answered` publish (offset, body)
/// on `topic` is in its replay. (The server may also have committed the one in flight when
/// it was killed, unanswered: that is allowed, and not checked.)
fn assert_survived(dir: &Path, topic: &str, answered: &[(u64, String)]) {
    let restarted = start_process(dir);
    let mut stream = StdTcpStream::connect(&restarted.addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET /v1/topics/{topic}/events?from=earliest HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    // The replay, as offset → data (the SSE id ends in `-OFFSET`).
    let (last_offset, _) = answered.last().unwrap();
    let mut replayed = std::collections::HashMap::new();
    let mut reader = BufReader::new(stream);
    let mut offset = None;
    while !replayed.contains_key(last_offset) {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .expect("the replay arrives in time");
        assert!(n > 0, "the stream ended early");
        if let Some(id) = line.strip_prefix("id: ") {
            offset = id
                .trim_end()
                .rsplit('-')
                .next()
                .and_then(|o| o.parse::<u64>().ok());
        } else if let (Some(data), Some(at)) = (line.strip_prefix("data: "), offset.take()) {
            replayed.insert(at, data.trim_end().to_string());
        }
    }
    for (offset, body) in answered {
        assert_eq!(
            replayed.get(offset),
            Some(body),
            "answered publish {offset} ({body}) was lost"
        );
    }
}

#[test]
fn pipelined_line_publishes_are_answered_in_order_and_survive_kill_9() {
    let dir = scratch_dir("pipelined");
    let server = start_process(&dir);
    let stream = StdTcpStream::connect(&server.line).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    // One thread writes publishes without waiting for answers (a pipeline: they commit
    // together); this one reads the answers, which must come in the order sent.
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut pipeline = String::new();
        for i in 0..200_000u32 {
            pipeline.push_str(&format!("PUB orders.piped order-{i}\r\n"));
            if i % 1_000 == 999 {
                if writer.write_all(pipeline.as_bytes()).is_err() {
                    return;
                }
                pipeline.clear();
            }
        }
    });
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    let mut answered = Vec::new();
    let (mut server, mut killed) = (server, false);
    loop {
        if answered.len() == 20_000 && !killed {
            server.kill_9(); // SIGKILL mid-pipeline: no shutdown at all
            killed = true;
        }
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let i = answered.len();
        let offset: u64 = line
            .trim_end()
            .strip_prefix("+OK orders.piped offset ")
            .unwrap_or_else(|| panic!("answer {i}: {line}"))
            .parse()
            .unwrap();
        assert_eq!(
            offset, i as u64,
            "answers in the order sent, offsets in that order"
        );
        answered.push((offset, format!("order-{i}")));
    }
    let _ = sender.join();
    assert!(
        killed && answered.len() < 200_000,
        "killed mid-pipeline: {}",
        answered.len()
    );
    assert_survived(&dir, "orders.piped", &answered);
    let _ = std::fs::remove_dir_all(&dir);
}
