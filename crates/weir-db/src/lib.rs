//! Database plumbing shared by Weir's stores, so that every store opens, connects and
//! migrates the same way, and a change to how (TLS, a pragma, a deadline) is made once.
//!
//! - [`sqlite`]: opening an embedded SQLite file with Weir's pragmas and migrating it.
//! - [`postgres`]: connecting to PostgreSQL with a deadline, TCP keepalives, a statement
//!   deadline and TLS ([`tls`]: libpq's `sslmode` and `sslrootcert`, with rustls), a task
//!   that drives each connection and hands its notifications on, and migrating a schema.
//! - [`Migrations`]: a component's numbered schema steps. Each component (the job store,
//!   the topic store, the pub/sub relay) has its own version, so components that share a
//!   database evolve independently.
//!
//! This crate depends on no other Weir crate.

mod error;
mod migrations;
pub mod postgres;
pub mod sqlite;
pub mod tls;

pub use error::DbError;
pub use migrations::Migrations;
