//! A WebSocket echo server on weir-http's upgrade and tungstenite's framing: what
//! scripts/autobahn.sh runs the Autobahn testsuite against.
//!
//! `cargo run -p weir --example ws_echo -- 127.0.0.1:9001`

use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use weir_http::websocket::upgrade;
use weir_http::{Method, Request, Router, Server, ServerConfig};

fn main() -> std::io::Result<()> {
    use futures_util::{SinkExt, StreamExt};
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let router = Router::new().route("/", Method::GET, |req: Request| async move {
            upgrade(&req, |upgraded| async move {
                // Autobahn sends messages up to 16 MiB in the cases run here.
                let config = WebSocketConfig::default()
                    .max_message_size(Some(64 << 20))
                    .max_frame_size(Some(64 << 20));
                let mut socket =
                    WebSocketStream::from_raw_socket(upgraded, Role::Server, Some(config)).await;
                while let Some(Ok(message)) = socket.next().await {
                    let echo = match message {
                        Message::Text(_) | Message::Binary(_) => socket.send(message).await,
                        // Pongs to pings and the closing handshake are tungstenite's.
                        _ => socket.flush().await,
                    };
                    if echo.is_err() {
                        break;
                    }
                }
            })
        });
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("ws_echo listening on {addr}");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        let config = ServerConfig {
            max_head_bytes: std::num::NonZeroUsize::new(64 * 1024).expect("non-zero"),
            ..ServerConfig::default()
        };
        Server::new(router, config).serve(listener, shutdown).await
    })
}
