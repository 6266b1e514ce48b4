#![allow(unreachable_pub, missing_docs)]
//! Integration tests for weir-http over real sockets on 127.0.0.1:0.
//!
//! One test binary with modules (as ripgrep does): one link step, shared support code.

mod support;

mod bodies;
mod cancellation;
mod framing;
mod interop;
mod limits;
mod pipelining;
mod shutdown;
mod streaming;
mod timeouts;
