//! A kind's input and output: the job's payload read as the kind's own type, and a JSON
//! value as its result.

use weir_jobs::worker::{JobContext, JobFailure};

/// Reads a job's payload as `T`; a payload that does not fit is a fatal failure (trying
/// again cannot fix it).
pub(super) fn payload<T: serde::de::DeserializeOwned>(
    ctx: &JobContext,
    shape: &str,
) -> Result<T, JobFailure> {
    serde_json::from_str(ctx.job.payload.get())
        .map_err(|error| JobFailure::fatal(format!("payload: {error} (expected {shape})")))
}

/// A JSON value as a job result.
pub(super) fn result(value: &serde_json::Value) -> weir_jobs::worker::HandlerResult {
    serde_json::value::to_raw_value(value).map_err(|error| JobFailure::fatal(error.to_string()))
}
