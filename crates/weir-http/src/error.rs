//! The error type that crosses handler boundaries.

/// A boxed error, used where a handler's stream may fail for reasons this crate cannot name
/// (a streamed response body, an upgraded connection's task).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
