//! What can go wrong opening, connecting to or migrating a database.

use std::fmt;
use std::time::Duration;

/// Why a database could not be opened, reached or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The PostgreSQL URL cannot be parsed.
    #[error("invalid PostgreSQL URL: {0}")]
    Url(#[source] tokio_postgres::Error),
    /// The TLS settings (`sslmode`, `sslrootcert`) cannot be used, or the handshake failed.
    #[error("PostgreSQL TLS: {0}")]
    Tls(String),
    /// A schema name that could not be used safely in SQL.
    #[error("schema name `{0}` must be lowercase letters, digits and _")]
    SchemaName(String),
    /// Connecting or a statement took longer than its deadline.
    #[error("PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    /// PostgreSQL refused or failed.
    #[error("{}", PostgresText(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// SQLite failed while opening the file, setting it up or applying a migration step.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was migrated by a newer Weir than this one.
    #[error("{place}: the {component} schema has version {found}, newer than this Weir knows ({known}); use a newer Weir")]
    NewerSchema {
        /// Where the schema was found: the SQLite file's path, or `PostgreSQL`.
        place: String,
        /// The component whose schema is newer.
        component: &'static str,
        /// The version found in the database.
        found: i64,
        /// The last version this build knows.
        known: usize,
    },
}

impl DbError {
    /// Whether the connection this came from is unusable (a failed statement on a healthy
    /// connection is not): the caller should connect again.
    pub fn lost_connection(&self) -> bool {
        match self {
            DbError::Postgres(error) => error.is_closed(),
            DbError::Timeout(_) => true,
            _ => false,
        }
    }
}

/// A PostgreSQL error as its server tells it (code, message) when there is one: the
/// server's text says more than the driver's summary ("db error"). Otherwise the driver's
/// text with its causes ("error performing TLS handshake: invalid peer certificate: …"):
/// the summary alone does not say what to fix.
struct PostgresText<'a>(&'a tokio_postgres::Error);

impl fmt::Display for PostgresText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(db) = self.0.as_db_error() {
            return write!(f, "{}: {}", db.code().code(), db.message());
        }
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
