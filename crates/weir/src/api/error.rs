//! A refused or failed API request, as the answer its client gets: JSON
//! `{"error": "..."}` with the status that fits, or a ready answer (an authentication
//! challenge). Handlers return `Result<Response, ApiError>` and use `?`.

use weir_http::{BodyError, Request, Response, StatusCode};
use weir_jobs::{ChangeError, JobsError};

/// Why a request was not served.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// `{"error": message}` with `status`; `lease_lost` adds the flag workers test.
    Json {
        status: StatusCode,
        message: String,
        lease_lost: bool,
    },
    /// A complete answer (a 401 with its `WWW-Authenticate`, say).
    Answer(Box<Response>),
}

impl ApiError {
    /// `{"error": message}` with `status`.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::Json {
            status,
            message: message.into(),
            lease_lost: false,
        }
    }

    /// A 400 naming the field at fault.
    pub(crate) fn invalid(field: &str, message: &str) -> ApiError {
        ApiError::from(JobsError::Invalid {
            field: field.into(),
            message: message.into(),
        })
    }

    /// The answer to send.
    pub(crate) fn into_response(self) -> Response {
        match self {
            ApiError::Json {
                status,
                message,
                lease_lost,
            } => {
                let mut body = serde_json::json!({ "error": message });
                if lease_lost {
                    // Workers test this flag rather than parse the message: stop working
                    // on the job.
                    body["lease_lost"] = serde_json::Value::Bool(true);
                }
                Response::json(status, body.to_string())
            }
            ApiError::Answer(response) => *response,
        }
    }
}

impl From<Box<Response>> for ApiError {
    fn from(response: Box<Response>) -> ApiError {
        ApiError::Answer(response)
    }
}

impl From<JobsError> for ApiError {
    fn from(error: JobsError) -> ApiError {
        let status = match &error {
            JobsError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            JobsError::Invalid { .. } => StatusCode::BAD_REQUEST,
            JobsError::Refused(refused) => change_refusal_status(refused),
            JobsError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::Json {
            status,
            message: error.to_string(),
            lease_lost: matches!(error, JobsError::Refused(ChangeError::LeaseLost { .. })),
        }
    }
}

/// The status of a refused change, alone or as one of a batch's outcomes.
pub(crate) fn change_refusal_status(error: &ChangeError) -> StatusCode {
    match error {
        ChangeError::NotFound(_) => StatusCode::NOT_FOUND,
        ChangeError::LeaseLost { .. }
        | ChangeError::WrongState { .. }
        | ChangeError::UniqueKeyTaken { .. } => StatusCode::CONFLICT,
    }
}

/// The request's body, up to `limit` bytes; past it a 413 naming the limit, `what` saying
/// which limit it is.
pub(crate) async fn read_body(
    req: &mut Request,
    limit: u64,
    too_large: impl FnOnce(u64) -> String,
) -> Result<bytes::Bytes, ApiError> {
    match req.body_mut().collect(limit).await {
        Ok(body) => Ok(body),
        Err(BodyError::TooLarge { limit }) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            too_large(limit),
        )),
        Err(error) => Err(ApiError::new(error.status(), error.to_string())),
    }
}

/// The request's body as JSON of type `T`, up to `limit` bytes.
///
/// A body that says it is something else than JSON gets 415 before it is read: a web page
/// can send `text/plain` (or a form) to any address without asking the browser's leave, but
/// not `application/json`. A body without a type is read as JSON.
pub(crate) async fn read_json<T: for<'de> serde::Deserialize<'de>>(
    req: &mut Request,
    limit: u64,
) -> Result<T, ApiError> {
    if let Some(media) = req.header("content-type") {
        if !is_json(media) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("the body must be JSON (Content-Type: application/json), not {media:?}"),
            ));
        }
    }
    let body = read_body(req, limit, |limit| {
        format!("request body exceeds {limit} bytes")
    })
    .await?;
    serde_json::from_slice(&body).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {error}"),
        )
    })
}

/// Whether a `Content-Type` names JSON: `application/json`, or a `+json` type, with any
/// parameters.
fn is_json(media: &str) -> bool {
    let essence = media.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .get(essence.len().saturating_sub(5)..)
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"))
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_media_types() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
        ] {
            assert!(is_json(json), "{json}");
        }
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "json",
        ] {
            assert!(!is_json(other), "{other}");
        }
    }
}
