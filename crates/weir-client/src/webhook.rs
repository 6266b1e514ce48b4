//! Signing webhooks as [Standard Webhooks](https://www.standardwebhooks.com/) specifies, so
//! that a receiver can check with any of its libraries that a request came from the holder
//! of the secret and was not replayed later.
//!
//! Three header fields: `webhook-id` (the same on every retry of one message, for the
//! receiver's dedupe), `webhook-timestamp` (Unix seconds, for its replay window) and
//! `webhook-signature`: `v1,` and the Base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under
//! the secret's bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::header::{HeaderName, HeaderValue};
use thiserror::Error;

/// The header fields a signature consists of; a request that already has one of them
/// cannot be signed (a sender must not choose them).
pub const SIGNATURE_HEADERS: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];

/// A webhook secret that is not `whsec_` and Base64.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("a webhook secret is `whsec_` followed by Base64 of 24 to 64 random bytes")]
pub struct SecretError;

/// Signs webhook requests with one secret.
#[derive(Clone)]
pub struct WebhookSigner {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("WebhookSigner").finish_non_exhaustive()
    }
}

impl WebhookSigner {
    /// The signer for `secret`, written as Standard Webhooks writes it: `whsec_` and the
    /// Base64 of the key's bytes (24 to 64 of them).
    pub fn new(secret: &str) -> Result<WebhookSigner, SecretError> {
        let encoded = secret.trim().strip_prefix("whsec_").ok_or(SecretError)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| SecretError)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretError);
        }
        Ok(WebhookSigner {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes),
        })
    }

    /// The `webhook-signature` value for message `id` sent at `timestamp` with `body`.
    pub fn signature(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let mut context = ring::hmac::Context::with_key(&self.key);
        context.update(id.as_bytes());
        context.update(format!(".{timestamp}.").as_bytes());
        context.update(body);
        format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
    }

    /// Adds the three header fields to `request`, signed over its body as it will be sent,
    /// at `timestamp`. A streamed body cannot be signed: it is refused, as is a request
    /// that already carries one of [`SIGNATURE_HEADERS`].
    pub fn sign(
        &self,
        request: &mut reqwest::Request,
        id: &str,
        timestamp: u64,
    ) -> Result<(), String> {
        if let Some(name) = SIGNATURE_HEADERS
            .iter()
            .find(|name| request.headers().contains_key(**name))
        {
            return Err(format!(
                "header `{name}` is set by the worker's signature, not by the job"
            ));
        }
        let body: &[u8] = match request.body() {
            None => b"",
            Some(body) => body.as_bytes().ok_or("a streamed body cannot be signed")?,
        };
        let signature = self.signature(id, timestamp, body);
        let value = |text: String| {
            HeaderValue::from_str(&text).map_err(|_| format!("`{text}` is not a header value"))
        };
        let headers = request.headers_mut();
        headers.insert(HeaderName::from_static("webhook-id"), value(id.to_owned())?);
        headers.insert(
            HeaderName::from_static("webhook-timestamp"),
            value(timestamp.to_string())?,
        );
        headers.insert(
            HeaderName::from_static("webhook-signature"),
            value(signature)?,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_test_vector() {
        // From the Standard Webhooks specification's reference libraries.
        let signer = WebhookSigner::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signer.signature(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_checked_and_never_printed() {
        assert_eq!(
            WebhookSigner::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(),
            SecretError
        );
        assert_eq!(
            WebhookSigner::new("whsec_c2hvcnQ=").unwrap_err(),
            SecretError,
            "too short"
        );
        assert_eq!(WebhookSigner::new("whsec_***").unwrap_err(), SecretError);
        let signer = WebhookSigner::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert!(!format!("{signer:?}").contains("MfKQ"));
    }

    #[test]
    fn a_request_is_signed_over_its_body_and_may_not_bring_its_own_signature() {
        let signer = WebhookSigner::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let client = reqwest::Client::new();
        let mut request = client
            .post("https://example.com/hook")
            .body(r#"{"test": 2432232314}"#)
            .build()
            .unwrap();
        signer
            .sign(&mut request, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330)
            .unwrap();
        assert_eq!(
            request.headers()["webhook-signature"],
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(request.headers()["webhook-timestamp"], "1614265330");
        let mut forged = client
            .post("https://example.com/hook")
            .header("webhook-signature", "v1,forged")
            .build()
            .unwrap();
        assert!(signer.sign(&mut forged, "id", 1).is_err());
    }
}
