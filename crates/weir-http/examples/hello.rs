//! Hello world on weir-http, on one thread: Weir's side of bench/http.
//!
//! `cargo run --release -p weir-http --example hello -- 127.0.0.1:7081`

use tokio_util::sync::CancellationToken;
use weir_http::{Method, Response, Router, Server, ServerConfig, StatusCode};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7081".into());
    // One worker thread, as the hyper anchor: the comparison is per core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let router = Router::new().route("/", Method::GET, |_| async {
            Response::text(StatusCode::OK, "Hello, World!")
        });
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("weir-http hello listening on {addr}");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        Server::new(router, ServerConfig::default())
            .serve(listener, shutdown)
            .await
    })
}
