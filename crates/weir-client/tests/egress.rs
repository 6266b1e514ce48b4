//! The default egress policy over real sockets: a request to the loopback interface is
//! refused whether the URL names the address, a name resolving to it, or a redirect from a
//! permitted address leads there; and the server refused is never connected to.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use weir_client::{Client, Egress, Error, RequestOptions};

/// A server on `address` answering every request with `response`, counting connections.
async fn serve(address: &str, response: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(address).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            let response = response.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (format!("{port}"), connections)
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecret";

async fn send(client: &Client, url: &str) -> Result<weir_client::Response, Error> {
    let request = client.http().get(url).build().unwrap();
    client.execute(request, RequestOptions::default()).await
}

#[tokio::test]
async fn an_address_in_the_url_is_refused_before_connecting() {
    let (port, connections) = serve("127.0.0.1:0", OK.into()).await;
    let client = Client::builder().build().unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/healthz"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://2130706433:{port}/"),
    ] {
        match send(&client, &url).await {
            Err(Error::Refused(refused)) => {
                assert_eq!(refused.class, "loopback");
                assert_eq!(refused.address.to_string(), "127.0.0.1");
            }
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "never connected");
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_on_its_address() {
    let (port, connections) = serve("127.0.0.1:0", OK.into()).await;
    let client = Client::builder().build().unwrap();
    match send(&client, &format!("http://localhost:{port}/")).await {
        Err(Error::Refused(refused)) => {
            assert_eq!(refused.host, "localhost");
            assert!(refused.address.is_loopback());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "never connected");

    // The operator opens the address: the same request goes through.
    let open = Client::builder()
        .egress(
            Egress::default()
                .allow("127.0.0.0/8")
                .unwrap()
                .allow("::1")
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut response = send(&open, &format!("http://localhost:{port}/"))
        .await
        .unwrap();
    assert_eq!(response.body_up_to(100).await.unwrap().0, b"secret");
}

#[tokio::test]
async fn a_redirect_from_a_permitted_address_to_a_refused_one_is_not_followed() {
    // 127.0.0.2 holds the secret; 127.0.0.1 is permitted and redirects there.
    let (secret_port, secret_connections) = serve("127.0.0.2:0", OK.into()).await;
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.2:{secret_port}/\r\n\
         content-length: 0\r\nconnection: close\r\n\r\n"
    );
    let (port, _) = serve("127.0.0.1:0", redirect).await;
    let client = Client::builder()
        .egress(Egress::default().allow("127.0.0.1").unwrap())
        .build()
        .unwrap();
    match send(&client, &format!("http://127.0.0.1:{port}/")).await {
        Err(Error::Refused(refused)) => assert_eq!(refused.address.to_string(), "127.0.0.2"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(secret_connections.load(Ordering::SeqCst), 0);
}
