//! A test server with a router that exercises every feature, and a raw HTTP client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weir_http::sse::{sse_response, Event};
use weir_http::{
    websocket, HttpMetrics, Method, Request, Response, Router, Server, ServerConfig, StatusCode,
};

/// How long a test waits for anything before it fails (not a performance threshold: a
/// deadline so that a hung test fails instead of hanging CI).
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
    pub metrics: Arc<HttpMetrics>,
    /// Releases requests waiting in `GET /wait`.
    pub release: Arc<Notify>,
}

pub async fn start(config: ServerConfig) -> TestServer {
    let release = Arc::new(Notify::new());
    let metrics = Arc::new(HttpMetrics::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = Server::new(router(release.clone()), config).with_metrics(metrics.clone());
    let task = tokio::spawn(server.serve(listener, shutdown.clone()));
    TestServer {
        addr,
        shutdown,
        task,
        metrics,
        release,
    }
}

pub async fn start_default() -> TestServer {
    start(ServerConfig::default()).await
}

fn router(release: Arc<Notify>) -> Router {
    Router::new()
        .route("/hello", Method::GET, |_| async {
            Response::text(StatusCode::OK, "hello")
        })
        .route("/no-content", Method::GET, |_| async {
            Response::new(StatusCode::NO_CONTENT)
        })
        .route("/echo", Method::POST, |mut req: Request| async move {
            match req.body_mut().collect(u64::MAX).await {
                Ok(body) => Response::new(StatusCode::OK).with_body(body),
                Err(error) => Response::text(error.status(), error.to_string()),
            }
        })
        // Reads the body piece by piece and reports its length, a checksum, and the largest
        // piece seen: a large body passes through in bounded pieces, never whole.
        .route("/count", Method::POST, |mut req: Request| async move {
            let (mut total, mut sum, mut largest) = (0u64, 0u64, 0usize);
            loop {
                match req.body_mut().chunk().await {
                    Ok(Some(piece)) => {
                        total += piece.len() as u64;
                        largest = largest.max(piece.len());
                        sum = piece
                            .iter()
                            .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)));
                    }
                    Ok(None) => break,
                    Err(error) => return Response::text(error.status(), error.to_string()),
                }
            }
            let trailers = req.body_mut().trailers().len();
            Response::text(
                StatusCode::OK,
                format!("{total} {sum} {largest} {trailers}"),
            )
        })
        .route("/ignore", Method::POST, |_| async {
            Response::text(StatusCode::OK, "ignored")
        })
        .route("/wait", Method::GET, move |_| {
            let release = release.clone();
            async move {
                release.notified().await;
                Response::text(StatusCode::OK, "released")
            }
        })
        .route("/panic", Method::GET, |_| async { panic!("a handler bug") })
        // Panics while making its future, before any poll.
        .route(
            "/panic-early",
            Method::GET,
            |_| -> std::future::Ready<Response> { panic!("a bug before the future") },
        )
        .route("/big", Method::GET, |_| async {
            Response::new(StatusCode::OK).with_body(Bytes::from(vec![b'x'; 64 * 1024 * 1024]))
        })
        .route("/stream", Method::GET, |_| async {
            Response::stream(StatusCode::OK, stream_of(vec!["one,", "two,", "three"]))
        })
        .route("/sse", Method::GET, |_| async {
            let events = stream_of(vec!["first", "second\nline"])
                .map_items(|(i, data)| Event::data(data).with_id(i.to_string()))
                .then_pending();
            sse_response(events, Duration::from_millis(50))
        })
        .route("/ws", Method::GET, |req: Request| async move {
            websocket::upgrade(&req, |mut upgraded| async move {
                // Echo raw bytes: enough to show the stream and the read-ahead bytes arrive.
                let mut buf = [0u8; 1024];
                while let Ok(n) = upgraded.read(&mut buf).await {
                    if n == 0 || upgraded.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            })
        })
        .route("/header-injection", Method::GET, |_| async {
            // Data from a request, say: owned, so it is checked.
            let value = String::from("a\r\nset-cookie: evil=1");
            Response::text(StatusCode::OK, "x").with_header("x-bad", value)
        })
}

/// A minimal stream over a vector, with `map_items` and `then_pending` adapters, so the tests
/// need no stream utility crate.
pub struct VecStream<T> {
    items: std::collections::VecDeque<T>,
    index: usize,
    pending_at_end: bool,
}

pub fn stream_of(items: Vec<&'static str>) -> VecStream<&'static str> {
    VecStream {
        items: items.into(),
        index: 0,
        pending_at_end: false,
    }
}

impl<T> VecStream<T> {
    pub fn map_items<U>(self, f: impl Fn((usize, T)) -> U) -> VecStream<U> {
        VecStream {
            items: self.items.into_iter().enumerate().map(f).collect(),
            index: 0,
            pending_at_end: self.pending_at_end,
        }
    }

    pub fn then_pending(mut self) -> Self {
        self.pending_at_end = true;
        self
    }
}

impl futures_core::Stream for VecStream<&'static str> {
    type Item = Result<Bytes, weir_http::BoxError>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.index += 1;
        std::task::Poll::Ready(
            self.items
                .pop_front()
                .map(|s| Ok(Bytes::from_static(s.as_bytes()))),
        )
    }
}

impl futures_core::Stream for VecStream<Event> {
    type Item = Event;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        match self.items.pop_front() {
            Some(event) => std::task::Poll::Ready(Some(event)),
            None if self.pending_at_end => std::task::Poll::Pending,
            None => std::task::Poll::Ready(None),
        }
    }
}

/// A parsed response as the raw client saw it.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

pub async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.addr).await.unwrap()
}

/// A client connection with its own read buffer, so that several responses can be read in
/// turn from one connection.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub async fn connect(server: &TestServer) -> Client {
        Client {
            stream: connect(server).await,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 64 * 1024];
        let n = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
            .await
            .expect("the server answers within the test deadline")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one response; `head_request` says that no body follows whatever the headers say.
    pub async fn response_to(&mut self, head_request: bool) -> RawResponse {
        let head_end = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            assert!(
                self.fill().await > 0,
                "connection closed before a full response head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8(self.buf.drain(..head_end).collect()).unwrap();
        let status: u16 = head[9..12].parse().unwrap();
        let mut response = RawResponse {
            status,
            head,
            body: Vec::new(),
        };
        if head_request || status < 200 || status == 204 || status == 304 {
            return response;
        }
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().unwrap();
            while self.buf.len() < length {
                assert!(self.fill().await > 0, "connection closed inside a body");
            }
            response.body = self.buf.drain(..length).collect();
        } else if response.header("transfer-encoding") == Some("chunked") {
            response.body = self.read_chunked().await;
        } else {
            while self.fill().await > 0 {}
            response.body = std::mem::take(&mut self.buf);
        }
        response
    }

    pub async fn response(&mut self) -> RawResponse {
        self.response_to(false).await
    }

    async fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break pos;
                }
                assert!(
                    self.fill().await > 0,
                    "connection closed inside a chunked body"
                );
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16)
                    .unwrap();
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                assert!(self.fill().await > 0, "connection closed inside a chunk");
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return body;
            }
        }
    }

    /// Reads exactly `n` bytes (after whatever responses were read).
    pub async fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await > 0, "connection closed early");
        }
        self.buf.drain(..n).collect()
    }

    /// Reads until the server closes; returns what arrived after the last response read.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill().await > 0 {}
        std::mem::take(&mut self.buf)
    }

    /// Whether the server has closed the connection (reads end of stream).
    pub async fn is_closed(&mut self) -> bool {
        self.read_to_close().await;
        true
    }
}

/// Sends raw bytes on a new connection and reads one response.
pub async fn exchange(server: &TestServer, raw: &[u8]) -> (RawResponse, Client) {
    let mut client = Client::connect(server).await;
    client.send(raw).await;
    let response = client.response().await;
    (response, client)
}

/// Sends raw bytes and expects `status` and then the end of the connection.
pub async fn expect_status_and_close(server: &TestServer, raw: &[u8], status: u16) -> RawResponse {
    let (response, mut client) = exchange(server, raw).await;
    assert_eq!(
        response.status,
        status,
        "for request {:?}: {}",
        String::from_utf8_lossy(raw),
        response.head
    );
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "error responses announce the close"
    );
    let rest = client.read_to_close().await;
    assert!(
        rest.is_empty(),
        "nothing follows an error response: {:?}",
        String::from_utf8_lossy(&rest)
    );
    response
}
