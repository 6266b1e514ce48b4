//! The handler trait: what the server calls for each request.

use std::future::Future;
use std::sync::Arc;

use crate::{Request, Response};

/// Turns each request into its response. One value serves every connection, hence
/// `Send + Sync + 'static`.
///
/// The future runs inside the connection's task: requests on one connection are answered in
/// order, as pipelining requires, and a handler that reads the body reads it straight from
/// the socket. Implemented by [`Router`](crate::Router), by [`HandlerFn`] and by `Arc<H>`.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// A handler made from an async function or closure; see [`handler_fn`].
#[derive(Debug, Clone)]
pub struct HandlerFn<F>(F);

/// Makes a [`Handler`] from `async fn(Request) -> Response` or an equivalent closure.
///
/// ```
/// use weir_http::{handler_fn, Request, Response, StatusCode};
/// let hello = handler_fn(|_req: Request| async { Response::text(StatusCode::OK, "hello") });
/// # let _ = hello;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send,
{
    HandlerFn(f)
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send,
{
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send {
        (self.0)(request)
    }
}

impl<H: Handler> Handler for Arc<H> {
    fn call(&self, request: Request) -> impl Future<Output = Response> + Send {
        (**self).call(request)
    }
}
