//! Who may do what: access tokens with scopes.
//!
//! With no token configured Weir is open, and the configuration check keeps it on loopback
//! (see `config`). Once any token is set, every request must carry a valid one: HTTP in an
//! `Authorization: Bearer …` header or a `?token=` query parameter (browsers cannot set
//! headers on `EventSource` or `WebSocket`), the line protocol with `AUTH <token>`.
//! A request without a valid token gets 401 and changes nothing; a valid token that lacks
//! the scope gets 403.

//! - [`Scope`] and [`Access`]: what a client may do, as a set of scopes.
//! - [`Tokens`]: the configured tokens and what a presented one grants, with
//!   [`SignedTokens`] for tokens a backend signs (JWT, HS256 or ES256) with an expiry and
//!   the topics they reach.
//! - [`denial`] and [`Tokens::authorize`]: the same rules applied to an HTTP request.
//! - [`Access::may_publish`] and [`Access::may_subscribe`]: which topics, system topics
//!   (`$…`) included.

mod http;
mod scope;
mod signed;
mod tokens;
mod topics;

pub use http::{denial, topic_denial, unauthenticated};
pub use scope::{Access, Scope, TopicRights};
pub use signed::{SignedTokens, MIN_SECRET_BYTES};
pub use tokens::Tokens;
pub use topics::{TopicDenied, SYSTEM_NAMESPACES};
