//! Durable topics in SQLite: the embedded default store (`{data_dir}/weir.db`).
//!
//! WAL journal with `synchronous = NORMAL`: a commit is in the operating system's hands
//! when `append` returns, so it survives `kill -9` of Weir (not the loss of power, which
//! would need `FULL` and an fsync per commit). Schema changes are numbered migrations run
//! at start-up.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{params, Connection};
use weir_db::Migrations;

use crate::durable::contiguous_tail;
use crate::{Append, Retention, StoreError, StoredMessage, StoredTopic, TopicName, TopicStore};

/// The topic store's schema. A step is never removed or edited: databases count them.
const MIGRATIONS: Migrations = Migrations {
    component: "topics",
    steps: &[
        // 1: durable topics.
        "CREATE TABLE topic (
            name TEXT PRIMARY KEY,
            epoch INTEGER NOT NULL,
            next_offset INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE topic_message (
            topic TEXT NOT NULL,
            offset INTEGER NOT NULL,
            payload BLOB NOT NULL,
            published_at_ms INTEGER NOT NULL,
            PRIMARY KEY (topic, offset)
        ) WITHOUT ROWID;",
    ],
};

/// The SQLite topic store.
#[derive(Debug)]
pub struct SqliteTopicStore {
    db: Connection,
}

fn failed(error: rusqlite::Error) -> StoreError {
    StoreError(error.to_string())
}

impl SqliteTopicStore {
    /// Opens (creating if needed) the database at `path`, committing with `synchronous`,
    /// and brings its schema up to date.
    pub fn open(
        path: &Path,
        synchronous: weir_db::sqlite::Synchronous,
    ) -> Result<SqliteTopicStore, StoreError> {
        let db = weir_db::sqlite::open(path, &MIGRATIONS, synchronous)
            .map_err(|error| StoreError(error.to_string()))?;
        Ok(SqliteTopicStore { db })
    }
}

fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl TopicStore for SqliteTopicStore {
    fn load(
        &mut self,
        retention: &dyn Fn(&TopicName) -> Retention,
    ) -> Result<Vec<StoredTopic>, StoreError> {
        let topics: Vec<(String, i64, i64)> = self
            .db
            .prepare("SELECT name, epoch, next_offset FROM topic ORDER BY name")
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                    .collect()
            })
            .map_err(failed)?;
        let now = SystemTime::now();
        let mut loaded = Vec::with_capacity(topics.len());
        for (name, epoch, next_offset) in topics {
            let name = TopicName::new(&name)
                .map_err(|e| StoreError(format!("stored topic {name:?}: {e}")))?;
            let keep = retention(&name);
            let from = (next_offset - keep.max_messages as i64).max(0);
            let oldest = millis(now.checked_sub(keep.max_age).unwrap_or(UNIX_EPOCH));
            let mut statement = self
                .db
                .prepare_cached(
                    "SELECT offset, payload, published_at_ms FROM topic_message
                     WHERE topic = ?1 AND offset >= ?2 AND published_at_ms >= ?3 ORDER BY offset",
                )
                .map_err(failed)?;
            let messages: Vec<StoredMessage> = statement
                .query_map(params![name.as_str(), from, oldest], |row| {
                    Ok(StoredMessage {
                        offset: row.get::<_, i64>(0)? as u64,
                        payload: Bytes::from(row.get::<_, Vec<u8>>(1)?),
                        published_at: UNIX_EPOCH
                            + Duration::from_millis(row.get::<_, i64>(2)? as u64),
                    })
                })
                .and_then(|rows| rows.collect())
                .map_err(failed)?;
            let next_offset = next_offset as u64;
            let messages = contiguous_tail(messages, next_offset);
            loaded.push(StoredTopic {
                name,
                epoch: epoch as u64,
                next_offset,
                messages,
            });
        }
        Ok(loaded)
    }

    fn append(&mut self, batch: &mut [Append]) -> Result<Vec<Append>, StoreError> {
        let tx = self.db.transaction().map_err(failed)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO topic_message (topic, offset, payload, published_at_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(failed)?;
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO topic (name, epoch, next_offset) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET next_offset = excluded.next_offset",
                )
                .map_err(failed)?;
            for append in batch.iter() {
                insert
                    .execute(params![
                        append.topic.as_str(),
                        append.offset as i64,
                        &append.payload[..],
                        millis(append.published_at),
                    ])
                    .map_err(failed)?;
                upsert
                    .execute(params![
                        append.topic.as_str(),
                        append.epoch as i64,
                        append.offset as i64 + 1,
                    ])
                    .map_err(failed)?;
            }
        }
        // One node's own store: the offsets it was given are the ones it keeps.
        tx.commit().map(|()| Vec::new()).map_err(failed)
    }

    fn trim(&mut self, topic: &TopicName, keep_from: u64) -> Result<(), StoreError> {
        self.db
            .execute(
                "DELETE FROM topic_message WHERE topic = ?1 AND offset < ?2",
                params![topic.as_str(), keep_from as i64],
            )
            .map(|_| ())
            .map_err(failed)
    }
}
