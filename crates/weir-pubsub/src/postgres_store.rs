//! Durable topics in PostgreSQL, shared by every node of a cluster: one log per topic,
//! one offset sequence and one epoch for the whole cluster.
//!
//! A publish on any node is numbered and committed here, under the topic's row lock, and
//! answered only then; the same transaction says `NOTIFY weir_pubsub_durable` with the
//! topic's new end, and every node reads what it lacks from the table
//! ([`Hub::catch_up`](crate::Hub::catch_up)), so a message has the same position on every
//! node and a client resumes on any node exactly where it was. A node that was cut off
//! reads what it missed when it is back ([`Hub::catch_up_all`](crate::Hub::catch_up_all)),
//! instead of counting a loss.
//!
//! The store is used by the hub's writer thread, which is not a Tokio worker: its
//! statements run with [`Handle::block_on`] on the runtime the store was opened on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio_postgres::{Client, Statement};
use weir_db::postgres::{migrate, within, Connector};
use weir_db::{DbError, Migrations};

use crate::durable::contiguous_tail;
use crate::{Append, Retention, StoreError, StoredMessage, StoredTopic, TopicName, TopicStore};

/// The channel on which a commit tells every node a topic's new end: `NAME NEXT_OFFSET`.
pub const DURABLE_CHANNEL: &str = "weir_pubsub_durable";

/// The store's tables. A step is never removed or edited: databases count them.
const MIGRATIONS: Migrations = Migrations {
    component: "pubsub_topics",
    steps: &[
        // 1: durable topics, and the salt of their epochs.
        "CREATE TABLE pubsub_topic (
            name TEXT PRIMARY KEY,
            epoch BIGINT NOT NULL,
            next_offset BIGINT NOT NULL
        );
        CREATE TABLE pubsub_message (
            topic TEXT NOT NULL,
            \"offset\" BIGINT NOT NULL,
            payload BYTEA NOT NULL,
            published_at_ms BIGINT NOT NULL,
            PRIMARY KEY (topic, \"offset\")
        );
        CREATE TABLE pubsub_epoch_salt (salt BIGINT NOT NULL);
        INSERT INTO pubsub_epoch_salt (salt)
            VALUES ((random() * 4503599627370496)::BIGINT);",
    ],
};

/// The shared store of durable topics.
#[derive(Debug)]
pub struct PostgresTopicStore {
    connector: Connector,
    runtime: Handle,
    connected: Option<Connected>,
    salt: u64,
    /// Read at open (in async code): [`TopicStore::load`] runs where nothing may block on
    /// the runtime.
    loaded: Option<Vec<StoredTopic>>,
}

fn failed(error: impl std::fmt::Display) -> StoreError {
    StoreError(error.to_string())
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn stored_message(row: &tokio_postgres::Row) -> StoredMessage {
    StoredMessage {
        offset: row.get::<_, i64>(0) as u64,
        payload: Bytes::from(row.get::<_, Vec<u8>>(1)),
        published_at: UNIX_EPOCH + Duration::from_millis(row.get::<_, i64>(2) as u64),
    }
}

/// A connection with the statements a publish runs, prepared once: `execute` with SQL text
/// prepares it again on every call, a second round trip for each.
#[derive(Debug)]
struct Connected {
    client: Client,
    /// Takes the topic's row lock (making the row the first time) and reads its epoch and
    /// next offset: one statement.
    lock_topic: Statement,
    /// Inserts a batch's messages, moves the topic's end and notifies the nodes: one
    /// statement.
    write: Statement,
}

impl Connected {
    async fn prepare(client: Client) -> Result<Connected, DbError> {
        // `DO UPDATE` (to the same name) rather than `DO NOTHING`: it locks an existing
        // row as `FOR UPDATE` would, and returns it.
        let lock_topic = within(client.prepare(
            "INSERT INTO pubsub_topic AS t (name, epoch, next_offset) VALUES ($1, $2, 0)
             ON CONFLICT (name) DO UPDATE SET name = t.name
             RETURNING epoch, next_offset",
        ))
        .await?;
        let write = within(client.prepare(
            "WITH written AS (
                 INSERT INTO pubsub_message (topic, \"offset\", payload, published_at_ms)
                 SELECT $1, o, p, t FROM unnest($2::BIGINT[], $3::BYTEA[], $4::BIGINT[]) AS m(o, p, t)
             ), moved AS (
                 UPDATE pubsub_topic SET next_offset = $5 WHERE name = $1
             )
             SELECT pg_notify($6, $1 || ' ' || $5::TEXT)",
        ))
        .await?;
        Ok(Connected {
            client,
            lock_topic,
            write,
        })
    }
}

impl PostgresTopicStore {
    /// Connects to the database at `url`, keeps the tables in `schema` (created and
    /// migrated here), and reads every topic it holds with the tail of its log that
    /// `retention` keeps (what [`TopicStore::load`] then gives the hub). Statements later
    /// run on the runtime this is called on.
    pub async fn open(
        url: &str,
        schema: &str,
        retention: &(dyn Fn(&TopicName) -> Retention + Sync),
    ) -> Result<PostgresTopicStore, DbError> {
        let connector = Connector::parse(url)?.in_schema(schema)?;
        connector.create_schema().await?;
        let mut client = connector.connect().await?;
        migrate(&mut client, &MIGRATIONS).await?;
        let salt = within(client.query_one("SELECT salt FROM pubsub_epoch_salt LIMIT 1", &[]))
            .await?
            .get::<_, i64>(0) as u64;
        let rows = within(client.query(
            "SELECT name, epoch, next_offset FROM pubsub_topic ORDER BY name",
            &[],
        ))
        .await?;
        let mut topics = Vec::with_capacity(rows.len());
        for row in rows {
            let Ok(name) = TopicName::new(row.get::<_, &str>(0)) else {
                continue;
            };
            let (epoch, next_offset) = (row.get::<_, i64>(1) as u64, row.get::<_, i64>(2) as u64);
            let keep = retention(&name).max_messages;
            let messages = messages_from(&client, name.as_str(), 0, next_offset, keep).await?;
            topics.push(StoredTopic {
                name,
                epoch,
                next_offset,
                messages: contiguous_tail(messages, next_offset),
            });
        }
        Ok(PostgresTopicStore {
            connector,
            runtime: Handle::current(),
            connected: Some(Connected::prepare(client).await?),
            salt,
            loaded: Some(topics),
        })
    }

    /// Runs `work` with a connection (made again after one was lost), on the runtime.
    fn run<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut Connected) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        let runtime = self.runtime.clone();
        runtime.block_on(async {
            if self.connected.as_ref().is_none_or(|c| c.client.is_closed()) {
                let client = self.connector.connect().await.map_err(failed)?;
                self.connected = Some(Connected::prepare(client).await.map_err(failed)?);
            }
            let connected = self.connected.as_mut().expect("connected above");
            let outcome = work(connected).await;
            if let Err(error) = &outcome {
                if error.lost_connection() {
                    self.connected = None;
                }
            }
            outcome.map_err(failed)
        })
    }
}

/// The messages of `topic` from `from` up to `to` (exclusive), the newest `limit` at most.
async fn messages_from(
    client: &impl tokio_postgres::GenericClient,
    topic: &str,
    from: u64,
    to: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, DbError> {
    let from = from.max(to.saturating_sub(limit as u64));
    let rows = within(client.query(
        "SELECT \"offset\", payload, published_at_ms FROM pubsub_message
         WHERE topic = $1 AND \"offset\" >= $2 AND \"offset\" < $3 ORDER BY \"offset\"",
        &[&topic, &(from as i64), &(to as i64)],
    ))
    .await?;
    Ok(rows.iter().map(stored_message).collect())
}

impl TopicStore for PostgresTopicStore {
    fn load(
        &mut self,
        _retention: &dyn Fn(&TopicName) -> Retention,
    ) -> Result<Vec<StoredTopic>, StoreError> {
        // Read at open: this runs on the runtime, where a statement could not be waited for.
        Ok(self.loaded.take().unwrap_or_default())
    }

    fn append(&mut self, batch: &mut [Append]) -> Result<Vec<Append>, StoreError> {
        // Topics in name order: two nodes' batches lock their rows in the same order and
        // so never wait on each other in a circle.
        let mut topics: Vec<TopicName> = batch.iter().map(|a| a.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        let pending: Vec<Append> = batch.to_vec();
        let (numbered, before) = self.run(async |connected| {
            let (lock_topic, write) = (connected.lock_topic.clone(), connected.write.clone());
            let tx = connected.client.transaction().await?;
            let mut numbered = pending;
            let mut before = Vec::new();
            for topic in &topics {
                let mine: Vec<usize> = (0..numbered.len())
                    .filter(|&i| numbered[i].topic == *topic)
                    .collect();
                let first = &numbered[mine[0]];
                let row =
                    within(tx.query_one(&lock_topic, &[&topic.as_str(), &(first.epoch as i64)]))
                        .await?;
                let epoch = row.get::<_, i64>(0) as u64;
                let next = row.get::<_, i64>(1) as u64;
                let known = first.offset;
                if next > known {
                    // Other nodes committed these since this node's log last grew.
                    for message in messages_from(&tx, topic.as_str(), known, next, CATCH_UP).await?
                    {
                        before.push(Append {
                            topic: topic.clone(),
                            epoch,
                            offset: message.offset,
                            payload: message.payload,
                            published_at: message.published_at,
                        });
                    }
                }
                let mut offsets = Vec::with_capacity(mine.len());
                let mut payloads = Vec::with_capacity(mine.len());
                let mut times = Vec::with_capacity(mine.len());
                for (k, &i) in mine.iter().enumerate() {
                    let append = &mut numbered[i];
                    append.offset = next + k as u64;
                    append.epoch = epoch;
                    offsets.push(append.offset as i64);
                    payloads.push(append.payload.to_vec());
                    times.push(millis(append.published_at));
                }
                let end = (next + mine.len() as u64) as i64;
                within(tx.query_one(
                    &write,
                    &[
                        &topic.as_str(),
                        &offsets,
                        &payloads,
                        &times,
                        &end,
                        &DURABLE_CHANNEL,
                    ],
                ))
                .await?;
            }
            within(tx.commit()).await?;
            Ok((numbered, before))
        })?;
        batch.clone_from_slice(&numbered);
        Ok(before)
    }

    fn trim(&mut self, topic: &TopicName, keep_from: u64) -> Result<(), StoreError> {
        self.run(async |connected| {
            within(connected.client.execute(
                "DELETE FROM pubsub_message WHERE topic = $1 AND \"offset\" < $2",
                &[&topic.as_str(), &(keep_from as i64)],
            ))
            .await
            .map(drop)
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn read_from(
        &mut self,
        topic: &TopicName,
        from: u64,
        limit: usize,
    ) -> Result<Option<StoredTopic>, StoreError> {
        self.run(async |connected| {
            let client = &connected.client;
            let Some(row) = within(client.query_opt(
                "SELECT epoch, next_offset FROM pubsub_topic WHERE name = $1",
                &[&topic.as_str()],
            ))
            .await?
            else {
                return Ok(None);
            };
            let next_offset = row.get::<_, i64>(1) as u64;
            let messages = messages_from(client, topic.as_str(), from, next_offset, limit).await?;
            Ok(Some(StoredTopic {
                name: topic.clone(),
                epoch: row.get::<_, i64>(0) as u64,
                next_offset,
                messages,
            }))
        })
    }

    fn heads(&mut self) -> Result<Vec<(TopicName, u64)>, StoreError> {
        self.run(async |connected| {
            let rows = within(
                connected
                    .client
                    .query("SELECT name, next_offset FROM pubsub_topic", &[]),
            )
            .await?;
            Ok(rows
                .iter()
                .filter_map(|row| {
                    let name = TopicName::new(row.get::<_, &str>(0)).ok()?;
                    Some((name, row.get::<_, i64>(1) as u64))
                })
                .collect())
        })
    }

    fn epoch_salt(&self) -> Option<u64> {
        Some(self.salt)
    }
}

/// Messages a publish's transaction reads back at most per topic (what other nodes
/// committed since this node's log last grew); past it the node's log skips ahead.
const CATCH_UP: usize = 10_000;
