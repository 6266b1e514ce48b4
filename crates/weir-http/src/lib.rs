//! An HTTP/1.1 server written directly on `tokio::net`.
//!
//! `weir-http` owns everything between a TCP socket and a request handler: the connection
//! loop (keep-alive, pipelining with one write per batch), strict RFC 9112 framing, streamed
//! request bodies (Content-Length and chunked, with `Expect: 100-continue` answered only when
//! the handler starts reading), fixed, streamed, HEAD and bodiless responses, a router with
//! path parameters, Server-Sent Events, the WebSocket upgrade handshake, limits and timeouts
//! on every read and write, graceful shutdown and Prometheus metrics.
//!
//! The request head is parsed with `httparse`; nothing else of HTTP comes from another crate.
//!
//! # A server in a few lines
//!
//! ```no_run
//! use weir_http::{Method, Response, Router, Server, ServerConfig, StatusCode};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn run() -> std::io::Result<()> {
//! let router = Router::new()
//!     .route("/hello/{name}", Method::GET, |req: weir_http::Request| async move {
//!         let name = req.param("name").unwrap_or("world").to_owned();
//!         Response::text(StatusCode::OK, format!("hello, {name}\n"))
//!     });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = CancellationToken::new();
//! Server::new(router, ServerConfig::default()).serve(listener, shutdown).await
//! # }
//! ```
//!
//! # Map of the crate
//!
//! | module | what it owns |
//! |---|---|
//! | [`ServerConfig`] | every limit and timeout, with the reason for its default |
//! | [`Server`] | the accept loop, the connection limit, graceful shutdown |
//! | `conn` | one connection: keep-alive, pipelining, batching writes, timeouts |
//! | [`parse_request_head`] | the request head and the RFC 9112 framing rules |
//! | [`ChunkedDecoder`] | the chunked transfer coding, as a sans-I/O state machine |
//! | [`Body`] | a request body streamed from the socket to the handler |
//! | [`Request`], [`Response`] | what a handler receives and returns |
//! | [`Router`] | paths with `{param}` segments, 404 and 405 with `Allow` |
//! | [`Edge`] | the checks before a route: `Host` (DNS rebinding), `Origin` (cross-site requests, WebSocket), CORS |
//! | [`sse`] | Server-Sent Events bodies with heartbeats |
//! | [`websocket`] | the RFC 6455 upgrade handshake and the upgraded stream |
//! | [`HttpMetrics`] | counters and a latency histogram in Prometheus text format |

mod body;
mod chunked;
mod config;
mod conn;
mod date;
mod edge;
mod encode;
mod error;
mod handler;
mod head;
mod io;
mod method;
mod metrics;
mod per_address;
mod request;
mod response;
mod router;
mod server;
pub mod sse;
mod status;
mod unwind;
pub mod websocket;

pub use body::{Body, BodyError};
pub use chunked::{Chunk, ChunkedDecoder, ChunkedError, ChunkedLimits};
pub use config::ServerConfig;
pub use edge::{Edge, EdgePolicy};
pub use error::BoxError;
pub use handler::{handler_fn, Handler, HandlerFn};
pub use head::{parse_request_head, BodyFraming, HeadError, HeadLimits, ParsedHead, Version};
pub use method::Method;
pub use metrics::HttpMetrics;
pub use per_address::{AddressSlot, ConnectionsPerAddress};
pub use request::{HeaderIter, Request};
pub use response::{BodyStream, Response, ResponseBody};
pub use router::{Dispatch, Router};
pub use server::Server;
pub use status::StatusCode;
