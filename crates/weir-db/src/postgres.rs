//! Connecting to PostgreSQL the way every Weir component does, and migrating a schema.
//!
//! Every connection gets a deadline to connect, TCP keepalives (a connection that dies
//! without a reset, behind a NAT's idle timeout or a failover, is noticed in about a minute
//! instead of the system's two hours), a statement deadline on the server
//! (`statement_timeout`, so a statement stuck behind a lock ends there too, not only in the
//! caller's wait), the application name `weir`, the component's schema as its search path,
//! and TLS as the connection string's `sslmode` asks (see [`crate::tls`]). A task drives
//! each connection: without it no query progresses. This is the one place connections are
//! made.

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config, Notification};

use crate::tls::{MakeRustls, TlsOptions};
use crate::{DbError, Migrations};

/// Deadline for connecting, and the default for a statement run through [`within`].
pub const DEADLINE: Duration = Duration::from_secs(10);
/// The server ends a statement that runs longer (`statement_timeout`): longer than
/// [`DEADLINE`], so the caller's own wait usually ends first, but a statement whose caller
/// gave up does not hold its locks for ever. Migrations lift it (an index on a large table
/// takes longer).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle time after which TCP keepalive probes start.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Advisory lock key serialising migrations across nodes (and components) starting
/// together: "weirjobs", the key the job store took before components had their own
/// versions, so that a node of the previous release waits on the same lock.
const MIGRATION_LOCK: i64 = 0x7765_6972_6a6f_6273;
/// Before components had their own versions, the one version table of a PostgreSQL
/// schema was the job store's (whose step 3 made the relay's table).
const LEGACY_OWNER: &str = "jobs";

/// How to reach one PostgreSQL database, and in which schema a component's tables live.
#[derive(Debug, Clone)]
pub struct Connector {
    config: Config,
    schema: Option<String>,
    tls: MakeRustls,
}

impl Connector {
    /// Reads a connection string (`postgres://user:password@host:port/database`, or
    /// libpq's `key=value` form, with libpq's `sslmode` and `sslrootcert`) without
    /// connecting; a root certificate file is read now.
    pub fn parse(url: &str) -> Result<Connector, DbError> {
        let (tls, rest) = TlsOptions::split(url)?;
        let mut config: Config = rest.parse().map_err(DbError::Url)?;
        config
            .application_name("weir")
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .connect_timeout(DEADLINE)
            .ssl_mode(tls.driver_mode())
            .options(Connector::options(None));
        Ok(Connector {
            config,
            schema: None,
            tls: tls.connector()?,
        })
    }

    /// The server settings every connection starts with.
    fn options(schema: Option<&str>) -> String {
        let timeout = format!("-c statement_timeout={}", STATEMENT_TIMEOUT.as_millis());
        match schema {
            Some(schema) => format!("{timeout} -c search_path={schema}"),
            None => timeout,
        }
    }

    /// Keeps the component's tables in `schema`: connections made from now on have it as
    /// their search path (create it with [`Connector::create_schema`]). The name must be
    /// lowercase letters, digits and `_`, since it is written into SQL.
    pub fn in_schema(mut self, schema: &str) -> Result<Connector, DbError> {
        if schema.is_empty()
            || !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(DbError::SchemaName(schema.to_owned()));
        }
        self.config.options(Connector::options(Some(schema)));
        self.schema = Some(schema.to_owned());
        Ok(self)
    }

    /// Creates the schema named by [`Connector::in_schema`] if it does not exist.
    pub async fn create_schema(&self) -> Result<(), DbError> {
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        let mut client = self.connect().await?;
        // `IF NOT EXISTS` is not safe against a concurrent creation: two nodes started
        // together on a fresh database both tried, and one failed on the catalog's unique
        // index. The migrations' lock makes them take turns.
        within(async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await?;
            tx.commit().await
        })
        .await
    }

    /// Opens a connection, driven by a task of its own until the client is dropped or the
    /// server goes away. Notifications on it are ignored.
    pub async fn connect(&self) -> Result<Client, DbError> {
        self.open(None).await
    }

    /// Opens a connection whose notifications (after a `LISTEN`) go to `notifications`,
    /// in order.
    ///
    /// The channel is bounded by its creator: while it is full, reading the connection
    /// waits, and PostgreSQL keeps the notifications in its queue meanwhile. That queue is
    /// shared by the whole database (8 GB by default), so a receiver must not stall for long.
    /// The connection ends when the receiver is dropped.
    pub async fn connect_listening(
        &self,
        notifications: mpsc::Sender<Notification>,
    ) -> Result<Client, DbError> {
        self.open(Some(notifications)).await
    }

    async fn open(
        &self,
        notifications: Option<mpsc::Sender<Notification>>,
    ) -> Result<Client, DbError> {
        let (client, mut connection) = within(self.config.connect(self.tls.clone())).await?;
        tokio::spawn(async move {
            // Polling the connection is what makes the client's queries progress.
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(notification)) => {
                        let Some(notifications) = &notifications else {
                            continue;
                        };
                        if notifications.send(notification).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%error, "PostgreSQL connection ended");
                        break;
                    }
                }
            }
        });
        Ok(client)
    }
}

/// `future`, or [`DbError::Timeout`] past [`DEADLINE`].
pub async fn within<T>(
    future: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, DbError> {
    tokio::time::timeout(DEADLINE, future)
        .await
        .map_err(|_| DbError::Timeout(DEADLINE))?
        .map_err(DbError::from)
}

/// Applies the steps of `migrations` that the connection's schema lacks, in one
/// transaction under an advisory lock, so that nodes starting together apply each step
/// once.
pub async fn migrate(client: &mut Client, migrations: &Migrations) -> Result<(), DbError> {
    let component = migrations.component;
    let tx = client.transaction().await?;
    // A step may build an index on a large table: no statement deadline here.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);
         ALTER TABLE schema_version
             ADD COLUMN IF NOT EXISTS component TEXT NOT NULL DEFAULT '{LEGACY_OWNER}';"
    ))
    .await?;
    let current: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_version WHERE component = $1",
            &[&component],
        )
        .await?
        .get(0);
    if current > migrations.latest() as i64 {
        return Err(DbError::NewerSchema {
            place: "PostgreSQL".into(),
            component,
            found: current,
            known: migrations.latest(),
        });
    }
    for (index, sql) in migrations.steps.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_version (component, version) VALUES ($1, $2)",
            &[&component, &(index as i64 + 1)],
        )
        .await?;
        tracing::info!(component, version = index + 1, "schema migrated");
    }
    tx.commit().await?;
    Ok(())
}
