//! Who may do what: access tokens with scopes.
//!
//! With no token configured Weir is open, and the configuration check keeps it on loopback
//! (see `config`). Once any token is set, every request must carry a valid one: HTTP in an
//! `Authorization: Bearer …` header or a `?token=` query parameter (browsers cannot set
//! headers on `EventSource` or `WebSocket`), the line protocol with `AUTH <token>`.
//! A request without a valid token gets 401 and changes nothing; a valid token that lacks
//! the scope gets 403.

//! - [`Scope`] and [`Access`]: what a client may do, as a set of scopes.
//! - [`Tokens`]: the configured tokens and what a presented one grants.
//! - [`denial`] and [`Tokens::authorize`]: the same rules applied to an HTTP request.
//! - [`Access::may_publish`] and [`Access::may_subscribe`]: which topics, system topics
//!   (`$…`) included.

mod http;
mod scope;
mod tokens;
mod topics;

pub use http::{denial, topic_denial};
pub use scope::{Access, Scope};
pub use tokens::Tokens;
pub use topics::{TopicDenied, SYSTEM_NAMESPACES};
