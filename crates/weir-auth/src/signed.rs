//! Tokens an application's backend signs for its users (JWT), as Centrifugo and Mercure
//! accept them: HS256 with a shared secret, or ES256 with the backend's public key.
//!
//! Claims read:
//!
//! | claim | meaning |
//! |---|---|
//! | `exp` | required: when the token stops being valid (seconds since the epoch) |
//! | `nbf` | optional: not valid before |
//! | `sub` | optional: who, for the logs |
//! | `scope` | the scopes, space-separated (`"publish subscribe"`) or a list |
//! | `publish`, `subscribe` | optional lists of topic patterns the scope is limited to |
//!
//! A token that fails any check grants nothing, and the client is told why (expired,
//! wrong signature, …) without more detail than that.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use weir_pubsub::TopicPattern;

use crate::{Access, Scope, TopicRights};

/// Shortest HS256 secret accepted: 32 bytes, the hash's own size (RFC 7518 section 3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// How signed tokens are checked.
#[derive(Clone)]
pub struct SignedTokens {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for SignedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedTokens")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: ScopeClaim,
    #[serde(default)]
    publish: Option<Vec<String>>,
    #[serde(default)]
    subscribe: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    #[default]
    None,
    Spaced(String),
    Listed(Vec<String>),
}

impl SignedTokens {
    /// Tokens signed with HMAC-SHA256 and `secret` (at least [`MIN_SECRET_BYTES`]).
    pub fn hs256(secret: &[u8]) -> Result<SignedTokens, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "an HS256 secret of at least {MIN_SECRET_BYTES} bytes"
            ));
        }
        Ok(SignedTokens::with(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// Tokens signed with ECDSA P-256 (ES256), checked with the PEM public key `pem`.
    pub fn es256(pem: &[u8]) -> Result<SignedTokens, String> {
        let key = DecodingKey::from_ec_pem(pem)
            .map_err(|error| format!("a PEM EC (P-256) public key ({error})"))?;
        Ok(SignedTokens::with(key, Algorithm::ES256))
    }

    fn with(key: DecodingKey, algorithm: Algorithm) -> SignedTokens {
        // One algorithm, the configured one: a token cannot choose how it is checked.
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        // Expiry is exact: a session ends at its token's `exp`, and so do requests.
        validation.leeway = 0;
        SignedTokens { key, validation }
    }

    /// What `token` grants, or why it grants nothing.
    pub fn verify(&self, token: &str) -> Result<Access, String> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => "the token expired".to_string(),
                ErrorKind::ImmatureSignature => "the token is not valid yet".to_string(),
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    "the token's signature is not valid".to_string()
                }
                _ => "invalid token".to_string(),
            })?
            .claims;
        // RFC 7519: valid only before `exp`. (The library lets the last second through;
        // sessions end at `exp` itself, so requests must too.)
        let expires_at = UNIX_EPOCH + Duration::from_secs(claims.exp);
        if SystemTime::now() >= expires_at {
            return Err("the token expired".to_string());
        }
        let names: Vec<String> = match claims.scope {
            ScopeClaim::None => Vec::new(),
            ScopeClaim::Spaced(text) => text.split_whitespace().map(str::to_owned).collect(),
            ScopeClaim::Listed(list) => list,
        };
        let mut scopes = Vec::new();
        for name in &names {
            match Scope::ALL.into_iter().find(|scope| scope.name() == name) {
                Some(scope) => scopes.push(scope),
                None => return Err(format!("the token names an unknown scope {name:?}")),
            }
        }
        if scopes.is_empty() {
            return Err("the token grants no scope".to_string());
        }
        let patterns = |list: Option<Vec<String>>| -> Result<Option<Vec<TopicPattern>>, String> {
            list.map(|list| {
                list.iter()
                    .map(|p| TopicPattern::new(p).map_err(|e| format!("the token's topics: {e}")))
                    .collect()
            })
            .transpose()
        };
        let rights = TopicRights {
            publish: patterns(claims.publish)?,
            subscribe: patterns(claims.subscribe)?,
        };
        let limited = rights.publish.is_some() || rights.subscribe.is_some();
        tracing::debug!(sub = claims.sub.as_deref(), "signed token accepted");
        Ok(Access::new(
            &scopes,
            limited.then_some(rights),
            Some(expires_at),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a-backend-secret-of-32-bytes-or-more!";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs256(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn an_hs256_token_grants_its_scopes_topics_and_expiry() {
        let signed = SignedTokens::hs256(SECRET).unwrap();
        let exp = now() + 60;
        let token = hs256(
            json!({"sub": "u1", "exp": exp, "scope": "publish subscribe", "publish": ["orders.*"]}),
            SECRET,
        );
        let access = signed.verify(&token).unwrap();
        assert!(access.allows(Scope::Publish) && access.allows(Scope::Subscribe));
        assert!(!access.allows(Scope::Enqueue));
        assert!(access.may_publish("orders.new").is_ok());
        assert!(access.may_publish("news").is_err());
        assert!(
            access.may_subscribe("anything").is_ok(),
            "subscribe is not limited"
        );
        assert_eq!(
            access.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(exp))
        );
    }

    #[test]
    fn bad_tokens_grant_nothing_and_say_why() {
        let signed = SignedTokens::hs256(SECRET).unwrap();
        let expired = hs256(json!({"exp": now() - 1, "scope": "subscribe"}), SECRET);
        assert_eq!(signed.verify(&expired).unwrap_err(), "the token expired");
        let forged = hs256(
            json!({"exp": now() + 60, "scope": "admin"}),
            b"another-secret-that-is-32-bytes-long!",
        );
        assert_eq!(
            signed.verify(&forged).unwrap_err(),
            "the token's signature is not valid"
        );
        let no_exp = hs256(json!({"scope": "subscribe"}), SECRET);
        assert!(signed.verify(&no_exp).is_err(), "exp is required");
        let unknown = hs256(json!({"exp": now() + 60, "scope": "root"}), SECRET);
        assert!(signed
            .verify(&unknown)
            .unwrap_err()
            .contains("unknown scope"));
        // alg "none": a header that asks not to be checked.
        let unsigned = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJleHAiOjQxMDI0NDQ4MDAsInNjb3BlIjoiYWRtaW4ifQ"
        );
        assert!(signed.verify(&unsigned).is_err());
        assert!(SignedTokens::hs256(b"short").is_err());
    }

    /// An ES256 key pair made here: the public key as a PEM `PUBLIC KEY` (SPKI).
    fn es256_keys() -> (EncodingKey, Vec<u8>) {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // SubjectPublicKeyInfo for P-256: a fixed prefix, then the uncompressed point.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki));
        (EncodingKey::from_ec_der(pkcs8.as_ref()), pem.into_bytes())
    }

    #[test]
    fn an_es256_token_is_checked_with_the_public_key_alone() {
        let (private, public_pem) = es256_keys();
        let signed = SignedTokens::es256(&public_pem).unwrap();
        let token = encode(
            &Header::new(Algorithm::ES256),
            &json!({"exp": now() + 60, "scope": ["subscribe"], "subscribe": ["chat.>"]}),
            &private,
        )
        .unwrap();
        let access = signed.verify(&token).unwrap();
        assert!(access.may_subscribe("chat.lobby").is_ok());
        assert!(access.may_subscribe("news").is_err());
        // An HS256 token "signed" with the public key, the classic confusion: refused.
        let confused = hs256(json!({"exp": now() + 60, "scope": "admin"}), &public_pem);
        assert!(signed.verify(&confused).is_err());
        assert!(SignedTokens::es256(b"not a key").is_err());
    }
}
