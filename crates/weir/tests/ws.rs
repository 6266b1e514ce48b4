//! Pub/sub over WebSocket, with a minimal client written here (masking, framing) so the
//! test depends on nothing but the RFC.

#![allow(missing_docs)]

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use weir::config::ServeConfig;

const DEADLINE: Duration = Duration::from_secs(20);

async fn start() -> (String, tokio_util::sync::DropGuard) {
    let (http, _line, guard) = start_both().await;
    (http, guard)
}

async fn start_both() -> (String, String, tokio_util::sync::DropGuard) {
    let listeners = weir::serve::Listeners::ephemeral().await.unwrap();
    let http = listeners.http.local_addr().unwrap().to_string();
    let line = listeners.line.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let mut config = ServeConfig::defaults();
    // Each server its own data directory: servers of one process must not share a store.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    config.data_dir = std::env::temp_dir().join(format!("weir-test-ws-{}-{n}", std::process::id()));
    tokio::spawn(weir::serve::run(config, listeners, shutdown.clone()));
    (http, line, shutdown.drop_guard())
}

struct Ws(TcpStream);

impl Ws {
    async fn connect(addr: &str) -> Ws {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            tokio::time::timeout(DEADLINE, stream.read_exact(&mut byte))
                .await
                .unwrap()
                .unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Ws(stream)
    }

    /// Sends one masked frame.
    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
        }
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.0.write_all(&frame).await.unwrap();
    }

    async fn send(&mut self, json: &str) {
        self.send_frame(0x1, json.as_bytes()).await;
    }

    /// Reads one (unmasked) server frame: opcode and payload.
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        let read = async {
            let mut head = [0u8; 2];
            self.0.read_exact(&mut head).await.unwrap();
            let len = match head[1] & 0x7f {
                126 => {
                    let mut n = [0u8; 2];
                    self.0.read_exact(&mut n).await.unwrap();
                    u16::from_be_bytes(n) as usize
                }
                127 => {
                    let mut n = [0u8; 8];
                    self.0.read_exact(&mut n).await.unwrap();
                    u64::from_be_bytes(n) as usize
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            self.0.read_exact(&mut payload).await.unwrap();
            (head[0] & 0x0f, payload)
        };
        tokio::time::timeout(DEADLINE, read)
            .await
            .expect("a frame within the deadline")
    }

    async fn json(&mut self) -> Value {
        let (opcode, payload) = self.frame().await;
        assert_eq!(opcode, 0x1, "a text frame");
        serde_json::from_slice(&payload).unwrap()
    }
}

#[tokio::test]
async fn subscribe_publish_and_receive_over_websocket() {
    let (addr, _guard) = start().await;
    let mut ws = Ws::connect(&addr).await;
    ws.send(r#"{"op":"subscribe","topic":"news"}"#).await;
    assert_eq!(ws.json().await["type"], "subscribed");
    ws.send(r#"{"op":"publish","topic":"news","payload":"hello"}"#)
        .await;
    let mut got = [ws.json().await, ws.json().await];
    got.sort_by_key(|v| v["type"].as_str().unwrap().to_string());
    assert_eq!(got[0]["type"], "message");
    assert_eq!(
        (got[0]["payload"].as_str(), got[0]["offset"].as_u64()),
        (Some("hello"), Some(0))
    );
    assert_eq!(got[1]["type"], "published");

    // Published over HTTP, received over the WebSocket.
    let mut http = TcpStream::connect(&addr).await.unwrap();
    http.write_all(
        b"POST /v1/topics/news HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\nfrom",
    )
    .await
    .unwrap();
    let message = ws.json().await;
    assert_eq!(
        (message["payload"].as_str(), message["offset"].as_u64()),
        (Some("from"), Some(1))
    );

    // A late subscriber replays from an offset.
    let mut late = Ws::connect(&addr).await;
    late.send(r#"{"op":"subscribe","topic":"news","from":0}"#)
        .await;
    assert_eq!(late.json().await["type"], "subscribed");
    assert_eq!(late.json().await["payload"], "hello");
    assert_eq!(late.json().await["payload"], "from");
}

/// A `subscribe` with `from` and the `epoch` of another run of the topic (a restart, another
/// node) gets a `reset` frame, then what this epoch retains; with its own epoch it resumes
/// exactly.
#[tokio::test]
async fn subscribe_from_another_epoch_gets_a_reset_frame() {
    let (before, guard) = start().await;
    let mut old = Ws::connect(&before).await;
    old.send(r#"{"op":"publish","topic":"news","payload":"old"}"#)
        .await;
    let old_epoch = old.json().await["epoch"].as_u64().unwrap();
    drop((old, guard));

    let (addr, _guard) = start().await;
    let mut ws = Ws::connect(&addr).await;
    for payload in ["a", "b"] {
        ws.send(&format!(
            r#"{{"op":"publish","topic":"news","payload":"{payload}"}}"#
        ))
        .await;
        assert_eq!(ws.json().await["type"], "published");
    }
    ws.send(&format!(
        r#"{{"op":"subscribe","topic":"news","from":1,"epoch":{old_epoch}}}"#
    ))
    .await;
    assert_eq!(ws.json().await["type"], "subscribed");
    let reset = ws.json().await;
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(reset["previous_epoch"], old_epoch);
    assert_eq!(reset["from"], 0);
    let epoch = reset["epoch"].as_u64().unwrap();
    assert_ne!(epoch, old_epoch);
    for (offset, payload) in [(0, "a"), (1, "b")] {
        let message = ws.json().await;
        assert_eq!(
            (&message["payload"], &message["offset"], &message["epoch"]),
            (&payload.into(), &offset.into(), &epoch.into())
        );
    }

    let mut same = Ws::connect(&addr).await;
    same.send(&format!(
        r#"{{"op":"subscribe","topic":"news","from":"{epoch}-1"}}"#
    ))
    .await;
    assert_eq!(same.json().await["type"], "subscribed");
    assert_eq!(same.json().await["payload"], "b");
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_pings_get_pongs() {
    let (addr, _guard) = start().await;
    let mut ws = Ws::connect(&addr).await;
    ws.send("not json").await;
    assert!(ws.json().await["message"]
        .as_str()
        .unwrap()
        .contains("JSON"));
    ws.send(r#"{"op":"dance","topic":"t"}"#).await;
    assert!(ws.json().await["message"]
        .as_str()
        .unwrap()
        .contains("unknown op"));
    ws.send(r#"{"op":"subscribe","topic":"a..b"}"#).await;
    assert!(ws.json().await["message"]
        .as_str()
        .unwrap()
        .contains("empty segment"));
    ws.send_frame(0x2, b"\x00\x01").await;
    assert!(ws.json().await["message"]
        .as_str()
        .unwrap()
        .contains("binary"));
    ws.send_frame(0x9, b"are you there").await;
    assert_eq!(
        ws.frame().await,
        (0xA, b"are you there".to_vec()),
        "a pong with the ping's payload"
    );
    ws.send_frame(0x8, &1000u16.to_be_bytes()).await;
    let (opcode, _) = ws.frame().await;
    assert_eq!(opcode, 0x8, "the close is answered");
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let (addr, _guard) = start().await;
    let mut ws = Ws::connect(&addr).await;
    let big = format!(
        r#"{{"op":"publish","topic":"t","payload":"{}"}}"#,
        "x".repeat(70_000)
    );
    // Over 65,535 bytes: the 64-bit length form.
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend((big.len() as u64).to_be_bytes());
    frame.extend(mask);
    frame.extend(big.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let _ = ws.0.write_all(&frame).await;
    let (opcode, payload) = ws.frame().await;
    assert_eq!(opcode, 0x8);
    assert_eq!(
        u16::from_be_bytes([payload[0], payload[1]]),
        1009,
        "message too big"
    );
}

#[tokio::test]
async fn chat_rooms_are_shared_between_websocket_and_the_line_protocol() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let (http, line, _guard) = start_both().await;
    let mut ws = Ws::connect(&http).await;
    ws.send(r#"{"op":"join","room":"lobby"}"#).await;
    assert_eq!(
        ws.json().await["message"],
        "set a nickname first: NICK <name>"
    );
    ws.send(r#"{"op":"nick","nick":"web"}"#).await;
    assert_eq!(
        ws.json().await,
        serde_json::json!({"type": "ok", "message": "you are web"})
    );
    ws.send(r#"{"op":"join","room":"lobby"}"#).await;
    assert_eq!(ws.json().await["message"], "joined lobby (1 here)");
    assert_eq!(
        ws.json().await,
        serde_json::json!({"type": "chat", "room": "lobby", "kind": "join", "nick": "web", "text": ""})
    );

    let (read, mut write) = TcpStream::connect(&line).await.unwrap().into_split();
    let mut lines = BufReader::new(read).lines();
    lines.next_line().await.unwrap();
    write.write_all(b"NICK web\r\n").await.unwrap();
    assert_eq!(
        lines.next_line().await.unwrap().unwrap(),
        "-ERR nickname web is taken",
        "one set of nicknames"
    );
    write
        .write_all(b"NICK term\r\nJOIN lobby\r\nSAY lobby hello from a terminal\r\n")
        .await
        .unwrap();
    assert_eq!(
        ws.json().await["nick"],
        "term",
        "the terminal's join reaches the browser"
    );
    let said = ws.json().await;
    assert_eq!(
        (said["kind"].as_str(), said["text"].as_str()),
        (Some("say"), Some("hello from a terminal"))
    );

    ws.send(r#"{"op":"say","room":"lobby","text":"hi terminal"}"#)
        .await;
    loop {
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if line == "MSG lobby web hi terminal" {
            break;
        }
    }
    ws.send(r#"{"op":"who","room":"lobby"}"#).await;
    loop {
        let frame = ws.json().await;
        if frame["type"] == "ok" {
            assert_eq!(frame["message"], "lobby: term web");
            break;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let (addr, _guard) = start().await;
    let mut ws = Ws::connect(&addr).await;
    let started = tokio::time::Instant::now();
    // Paused time: the 15-minute idle timer fires as soon as everything waits. (The
    // helper's 20 s deadline would fire first, so read with a longer one here.)
    let mut head = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(3600), ws.0.read_exact(&mut head))
        .await
        .expect("closed within the hour")
        .unwrap();
    assert_eq!(head[0] & 0x0f, 0x8, "a close frame");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(15 * 60) && waited < Duration::from_secs(16 * 60),
        "closed after {waited:?}"
    );
}

/// A client that stops reading was held for good, its frames queued in the server: the
/// WebSocket had no write deadline. Now, as on the line protocol, a write that cannot go
/// out within 10 s closes the connection, and its subscription is given back.
#[tokio::test]
async fn a_client_that_stops_reading_is_let_go() {
    let (http, _guard) = start().await;
    let mut stalled = Ws::connect(&http).await;
    stalled.send(r#"{"op":"subscribe","topic":"flood"}"#).await;
    let subscribers = |http: String| async move {
        let answer = support_http(
            &http,
            "GET /v1/topics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        let topics: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        topics["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["topic"] == "flood")
            .and_then(|t| t["subscribers"].as_u64())
            .unwrap_or(0)
    };
    let started = tokio::time::Instant::now();
    while subscribers(http.clone()).await == 0 {
        assert!(
            started.elapsed() < DEADLINE,
            "the subscription never appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 32 MiB of messages: far more than the socket buffers on both sides hold, so the
    // server's writes block while the client reads nothing.
    let payload = "x".repeat(64 * 1024);
    let mut publisher = TcpStream::connect(&http).await.unwrap();
    for _ in 0..512 {
        let request = format!(
            "POST /v1/topics/flood HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{payload}",
            payload.len()
        );
        publisher.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 256];
        let _ = tokio::time::timeout(DEADLINE, publisher.read(&mut head)).await;
    }
    // The write deadline is 10 s; the subscription goes when the connection is closed.
    let gone_by = tokio::time::Instant::now() + Duration::from_secs(10) + DEADLINE;
    while subscribers(http.clone()).await > 0 {
        assert!(
            tokio::time::Instant::now() < gone_by,
            "a client that reads nothing still holds its subscription"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stalled);
}

/// One request over its own connection; the whole answer.
async fn support_http(addr: &str, raw: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
