//! Interoperability with real clients: reqwest always, curl where installed.

use std::process::Command;

use weir_http::ServerConfig;

use crate::support::*;

#[tokio::test]
async fn reqwest_gets_and_posts() {
    let server = start_default().await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    for _ in 0..3 {
        let response = client.get(format!("{base}/hello")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "hello");
    }
    let body = vec![b'z'; 300_000];
    let response = client
        .post(format!("{base}/echo"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap(), body);
    let streamed = client.get(format!("{base}/stream")).send().await.unwrap();
    assert_eq!(streamed.text().await.unwrap(), "one,two,three");
    // One connection served all of it: reqwest keeps connections alive.
    let mut text = String::new();
    server.metrics.render_prometheus(&mut text);
    assert!(text.contains("weir_http_connections_total 1\n"), "{text}");
}

#[tokio::test]
async fn curl_speaks_to_the_server() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl is not installed; skipping (scripts/test.sh installs it)");
        return;
    }
    let server = start(ServerConfig {
        max_body_bytes: 1 << 30,
        ..ServerConfig::default()
    })
    .await;
    let base = format!("http://{}", server.addr);
    let run = move |args: Vec<String>| {
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(&args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let hello = tokio::task::spawn_blocking({
        let url = format!("{base}/hello");
        move || run(vec![url.clone(), url])
    })
    .await
    .unwrap();
    assert_eq!(hello, b"hellohello");
    // A chunked upload with Expect: 100-continue, as curl sends for large bodies.
    let echoed = tokio::task::spawn_blocking({
        let url = format!("{base}/echo");
        move || {
            run(vec![
                "-H".into(),
                "Transfer-Encoding: chunked".into(),
                "-H".into(),
                "Expect: 100-continue".into(),
                "--data-binary".into(),
                "chunked body from curl".into(),
                url,
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(echoed, b"chunked body from curl");
}
