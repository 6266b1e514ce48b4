//! A client that hangs up cancels its handler: the handler's future is dropped.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use weir_http::{Method, Request, Response, Router, Server, ServerConfig, StatusCode};

use crate::support::DEADLINE;

/// Serves two never-ending handlers; each reports when it starts and hands over a sender
/// whose drop (with the handler's future) the test observes.
async fn server() -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<oneshot::Receiver<()>>,
    CancellationToken,
) {
    let (started, entered) = mpsc::unbounded_channel();
    let started = Arc::new(Mutex::new(started));
    let on_start = move || {
        let (alive, dropped) = oneshot::channel::<()>();
        let _ = started.lock().unwrap().send(dropped);
        alive
    };
    let on_start_too = on_start.clone();
    let router = Router::new()
        .route("/forever", Method::GET, move |_req: Request| {
            let alive = on_start();
            async move {
                let _alive = alive;
                std::future::pending::<()>().await;
                Response::new(StatusCode::OK)
            }
        })
        .route("/poll", Method::POST, move |mut req: Request| {
            let on_start = on_start_too.clone();
            async move {
                let _ = req.body_mut().collect(1024).await;
                // Like a long-poll that has read its request: the body goes back to the
                // server, which can then notice the client leaving.
                drop(req);
                let _alive = on_start();
                std::future::pending::<()>().await;
                Response::new(StatusCode::OK)
            }
        });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(Server::new(router, ServerConfig::default()).serve(listener, shutdown.clone()));
    (addr, entered, shutdown)
}

async fn hang_up_during(request: &[u8]) {
    let (addr, mut entered, _shutdown) = server().await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(request).await.unwrap();
    let dropped = tokio::time::timeout(DEADLINE, entered.recv())
        .await
        .expect("the handler starts")
        .unwrap();
    drop(client);
    let outcome = tokio::time::timeout(DEADLINE, dropped)
        .await
        .expect("the handler is cancelled once the client is gone");
    assert!(
        outcome.is_err(),
        "the handler's state was dropped, not completed"
    );
}

#[tokio::test]
async fn a_request_without_a_body_is_cancelled_when_the_client_leaves() {
    hang_up_during(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n").await;
}

#[tokio::test]
async fn a_handler_that_gave_its_body_back_is_cancelled_when_the_client_leaves() {
    hang_up_during(b"POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}").await;
}
