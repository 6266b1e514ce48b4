//! The [`Directory`] of a cluster on PostgreSQL: nicknames and room members in two tables,
//! each row naming the node that wrote it. A node counts as live while the pub/sub relay
//! refreshes its row in `pubsub_node` (every 5 s; gone after
//! [`PEER_TIMEOUT`](weir_pubsub::postgres_relay::PEER_TIMEOUT)): the nicknames and rooms of
//! a node that died free themselves then, without anyone cleaning up.

use tokio::sync::Mutex;
use tokio_postgres::Client;
use weir_db::postgres::{migrate, within, Connector};
use weir_db::{DbError, Migrations};
use weir_pubsub::postgres_relay::PEER_TIMEOUT;

use crate::directory::{Directory, DirectoryFuture};

/// The directory's tables. A step is never removed or edited: databases count them.
const MIGRATIONS: Migrations = Migrations {
    component: "chat_directory",
    steps: &[
        // 1: nicknames (lowercased) and room members, by node and connection.
        "CREATE TABLE chat_nick (
            nick TEXT PRIMARY KEY,
            node BIGINT NOT NULL,
            connection BIGINT NOT NULL
        );
        CREATE TABLE chat_member (
            room TEXT NOT NULL,
            nick TEXT NOT NULL,
            node BIGINT NOT NULL,
            connection BIGINT NOT NULL,
            PRIMARY KEY (room, node, connection)
        );",
    ],
};

/// The directory of node `node` (the relay's node id).
#[derive(Debug)]
pub struct PostgresDirectory {
    connector: Connector,
    node: i64,
    client: Mutex<Option<Client>>,
}

impl PostgresDirectory {
    /// Opens the directory for node `node` in `schema` of the database at `url`
    /// (creating and migrating its tables), and drops what nodes gone for an hour left.
    pub async fn open(url: &str, schema: &str, node: u64) -> Result<PostgresDirectory, DbError> {
        let connector = Connector::parse(url)?.in_schema(schema)?;
        connector.create_schema().await?;
        let mut client = connector.connect().await?;
        migrate(&mut client, &MIGRATIONS).await?;
        for table in ["chat_nick", "chat_member"] {
            within(client.execute(
                &format!(
                    "DELETE FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM pubsub_node n
                     WHERE n.node = t.node AND n.seen_at > now() - interval '1 hour')"
                ),
                &[],
            ))
            .await?;
        }
        Ok(PostgresDirectory {
            connector,
            node: node as i64,
            client: Mutex::new(Some(client)),
        })
    }

    /// Runs `work` on the connection, connecting again after one was lost.
    async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&Client) -> Result<T, DbError>,
    ) -> Result<T, String> {
        let mut client = self.client.lock().await;
        if client.as_ref().is_none_or(Client::is_closed) {
            *client = Some(self.connector.connect().await.map_err(|e| e.to_string())?);
        }
        let outcome = work(client.as_ref().expect("connected above")).await;
        if let Err(error) = &outcome {
            if error.lost_connection() {
                *client = None;
            }
        }
        outcome.map_err(|e| e.to_string())
    }
}

impl PostgresDirectory {
    /// Runs `sql` on this node's `connection` in `room` (with `nick` when it has a place
    /// for it, as `$2`); a failure is logged as `failure`: the place frees itself when this
    /// node is gone.
    async fn record(
        &self,
        failure: &str,
        room: &str,
        sql: &str,
        nick: Option<&str>,
        connection: u64,
    ) {
        let connection = connection as i64;
        let recorded = self
            .run(async |client| {
                let statement = match nick {
                    Some(nick) => {
                        within(client.execute(sql, &[&room, &nick, &self.node, &connection])).await
                    }
                    None => within(client.execute(sql, &[&room, &self.node, &connection])).await,
                };
                statement
            })
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, room, "{failure}");
        }
    }
}

/// Seconds after which a node not seen is taken to be gone.
fn peer_timeout() -> f64 {
    PEER_TIMEOUT.as_secs_f64()
}

impl Directory for PostgresDirectory {
    fn claim<'a>(
        &'a self,
        nick: &'a str,
        connection: u64,
    ) -> DirectoryFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let key = nick.to_lowercase();
            self.run(async |client| {
                // Taken over only from a node that is gone, or from this very connection.
                let rows = within(client.query(
                    "INSERT INTO chat_nick AS held (nick, node, connection) VALUES ($1, $2, $3)
                     ON CONFLICT (nick) DO UPDATE SET node = excluded.node, connection = excluded.connection
                     WHERE (held.node = excluded.node AND held.connection = excluded.connection)
                        OR NOT EXISTS (SELECT 1 FROM pubsub_node n WHERE n.node = held.node
                                       AND n.seen_at > now() - make_interval(secs => $4))
                     RETURNING 1",
                    &[&key, &self.node, &(connection as i64), &peer_timeout()],
                ))
                .await?;
                Ok(!rows.is_empty())
            })
            .await
        })
    }

    fn release<'a>(&'a self, nick: &'a str, connection: u64) -> DirectoryFuture<'a, ()> {
        Box::pin(async move {
            let key = nick.to_lowercase();
            let released = self
                .run(async |client| {
                    within(client.execute(
                        "DELETE FROM chat_nick WHERE nick = $1 AND node = $2 AND connection = $3",
                        &[&key, &self.node, &(connection as i64)],
                    ))
                    .await
                })
                .await;
            if let Err(error) = released {
                // It frees itself when this node is gone; until then it stays taken.
                tracing::warn!(%error, nick, "could not give a nickname back to the cluster");
            }
        })
    }

    fn joined<'a>(
        &'a self,
        room: &'a str,
        nick: &'a str,
        connection: u64,
    ) -> DirectoryFuture<'a, ()> {
        Box::pin(self.record(
            "could not tell the cluster of a join",
            room,
            "INSERT INTO chat_member (room, nick, node, connection) VALUES ($1, $2, $3, $4)
             ON CONFLICT (room, node, connection) DO UPDATE SET nick = excluded.nick",
            Some(nick),
            connection,
        ))
    }

    fn parted<'a>(&'a self, room: &'a str, connection: u64) -> DirectoryFuture<'a, ()> {
        Box::pin(self.record(
            "could not tell the cluster of a part",
            room,
            "DELETE FROM chat_member WHERE room = $1 AND node = $2 AND connection = $3",
            None,
            connection,
        ))
    }

    fn members<'a>(&'a self, room: &'a str) -> DirectoryFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            self.run(async |client| {
                let rows = within(client.query(
                    "SELECT DISTINCT m.nick FROM chat_member m JOIN pubsub_node n ON n.node = m.node
                     WHERE m.room = $1 AND n.seen_at > now() - make_interval(secs => $2)
                     ORDER BY m.nick",
                    &[&room, &peer_timeout()],
                ))
                .await?;
                Ok(rows.iter().map(|row| row.get::<_, String>(0)).collect())
            })
            .await
        })
    }
}
