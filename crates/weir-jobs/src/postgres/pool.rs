//! A small pool of PostgreSQL connections, each with the statements prepared on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, GenericClient, Statement};
use weir_db::postgres::Connector;
use weir_db::DbError;

use crate::store::StoreError;

pub(super) fn failed(error: tokio_postgres::Error) -> StoreError {
    // The server's message (with its detail) says more than the driver's summary.
    match error.as_db_error() {
        Some(db) => StoreError::Database(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Database(error.to_string()),
    }
}

/// A small connection pool: at most `size` connections, reused while healthy.
#[derive(Debug)]
pub(super) struct Pool {
    pub(super) connector: Connector,
    pub(super) idle: Mutex<Vec<(Client, StatementCache)>>,
    pub(super) slots: Arc<Semaphore>,
}

/// Statements prepared on one connection, by SQL text. A query sent as text is prepared
/// again on every call: a round trip more per statement, which doubled the time of a lease.
pub(super) type StatementCache = Arc<Mutex<HashMap<String, Statement>>>;

/// A pooled connection; goes back to the pool when dropped (unless it broke).
pub(super) struct Pooled {
    client: Option<Client>,
    pub(super) cache: StatementCache,
    pool: Arc<Pool>,
    _slot: OwnedSemaphorePermit,
}

impl std::ops::Deref for Pooled {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !client.is_closed() {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push((client, Arc::clone(&self.cache)));
                }
            }
        }
    }
}

impl Pool {
    pub(super) async fn get(self: &Arc<Pool>) -> Result<Pooled, StoreError> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let (client, cache) = match reused {
            Some(pair) => pair,
            None => (
                self.connector
                    .connect()
                    .await
                    .map_err(unreachable_database)?,
                StatementCache::default(),
            ),
        };
        Ok(Pooled {
            client: Some(client),
            cache,
            pool: Arc::clone(self),
            _slot: slot,
        })
    }
}

/// The statement for `sql` on this connection, prepared on first use.
pub(super) async fn prepared(
    db: &impl GenericClient,
    cache: &StatementCache,
    sql: &str,
) -> Result<Statement, StoreError> {
    if let Some(statement) = cache.lock().ok().and_then(|c| c.get(sql).cloned()) {
        return Ok(statement);
    }
    let statement = db.prepare(sql).await.map_err(failed)?;
    if let Ok(mut c) = cache.lock() {
        c.insert(sql.to_owned(), statement.clone());
    }
    Ok(statement)
}

/// A failure to connect or migrate, as the store reports it.
pub(super) fn unreachable_database(error: DbError) -> StoreError {
    StoreError::Database(error.to_string())
}
