//! The PostgreSQL store: several `weir serve` nodes share one database.
//!
//! Claims lock candidate rows with `FOR UPDATE SKIP LOCKED`, so nodes leasing at the same
//! moment take different jobs without waiting on each other. Queue limits and concurrency
//! keys are counted under transaction-scoped advisory locks (a blocking one per limited
//! queue, taken in name order; a `try` one per key, skipping the job when another node holds
//! it), so a limit holds across nodes without deadlocks. Enqueues and releases `NOTIFY`
//! channel `weir_jobs`; every node `LISTEN`s and wakes its waiting leases.
//!
//! Tables live in their own schema (`weir` by default), set as the connections' search path.

mod claim;
mod notifications;
mod pool;
mod queries;
mod schema;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use weir_db::postgres::{migrate, Connector};

use crate::lifecycle::{self, Change, ChangeError};
use crate::model::{Enqueued, Job, JobId, JobState, NewJob};
use crate::row::{
    all_counts_sql, prune_sql, shown_state_sql, unfinished_counts_sql, unique_key_holder_sql,
    COLUMNS,
};
use crate::store::{Claim, ListQuery, QueueCount, Store, StoreError, StoreFuture, StoreOptions};
use crate::time::Timestamp;
use crate::wakeups::{Ready, Wakeups};

use claim::claim;
use notifications::{listen, notify, Listener};
use pool::{failed, prepared, unreachable_database, Pool, StatementCache};
use queries::{enqueue_one, insert_all, jobs, save_all};
use schema::MIGRATIONS;

/// The PostgreSQL job store.
#[derive(Debug)]
pub struct PostgresStore {
    pool: Arc<Pool>,
    options: StoreOptions,
    wakeups: Arc<Wakeups>,
    /// This store's name in its notifications, so it can skip its own (the service has
    /// already woken this node's leases).
    node: u64,
}

impl PostgresStore {
    /// Checks that `url` is a connection string this store can use, without connecting.
    pub fn check_url(url: &str) -> Result<(), String> {
        Connector::parse(url)
            .map(drop)
            .map_err(|error| error.to_string())
    }

    /// Connects to `url` (`postgres://user:password@host:port/database`), keeps the tables
    /// in `schema` (created if needed), migrates, and starts listening for other nodes.
    pub async fn open(
        url: &str,
        schema: &str,
        pool_size: usize,
        options: StoreOptions,
    ) -> Result<PostgresStore, StoreError> {
        let connector = Connector::parse(url)
            .and_then(|connector| connector.in_schema(schema))
            .map_err(unreachable_database)?;
        connector
            .create_schema()
            .await
            .map_err(unreachable_database)?;
        let mut client = connector.connect().await.map_err(unreachable_database)?;
        migrate(&mut client, &MIGRATIONS)
            .await
            .map_err(unreachable_database)?;
        let pool = Arc::new(Pool {
            connector: connector.clone(),
            idle: Mutex::new(vec![(client, StatementCache::default())]),
            slots: Arc::new(Semaphore::new(pool_size.max(2))),
        });
        let wakeups = Arc::new(Wakeups::new());
        let node = fastrand::u64(..);
        tokio::spawn(listen(
            connector,
            Listener {
                wakeups: Arc::clone(&wakeups),
                node,
            },
        ));
        Ok(PostgresStore {
            pool,
            options,
            wakeups,
            node,
        })
    }
}

impl PostgresStore {
    /// Runs a query of (queue, state, count) rows whose `$1` is now.
    async fn count_rows(&self, sql: String, now: Timestamp) -> Result<Vec<QueueCount>, StoreError> {
        let db = self.pool.get().await?;
        let rows = db.query(&sql, &[&now.0]).await.map_err(failed)?;
        rows.iter()
            .map(|row| {
                Ok(QueueCount {
                    queue: row.get(0),
                    state: row
                        .get::<_, &str>(1)
                        .parse()
                        .map_err(StoreError::Database)?,
                    count: row.get::<_, i64>(2) as u64,
                })
            })
            .collect()
    }
}

impl Store for PostgresStore {
    fn enqueue(&self, batch: Vec<NewJob>, now: Timestamp) -> StoreFuture<'_, Vec<Enqueued>> {
        Box::pin(async move {
            let mut db = self.pool.get().await?;
            let cache = Arc::clone(&db.cache);
            let tx = db.transaction().await.map_err(failed)?;
            // Jobs without a unique key go in with one statement; the others one by one
            // (each must look for its key first). Answers keep the input's order.
            let (plain, unique): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .enumerate()
                .partition(|(_, new)| new.unique_key.is_none());
            let mut enqueued: Vec<Option<Enqueued>> =
                (0..plain.len() + unique.len()).map(|_| None).collect();
            let (plain_at, plain): (Vec<usize>, Vec<NewJob>) = plain.into_iter().unzip();
            for (at, job) in plain_at
                .into_iter()
                .zip(insert_all(&tx, &cache, plain, now).await?)
            {
                enqueued[at] = Some(Enqueued {
                    job,
                    existing: false,
                });
            }
            for (at, new) in unique {
                enqueued[at] = Some(enqueue_one(&tx, &cache, new, now).await?);
            }
            let added = enqueued
                .iter()
                .flatten()
                .filter(|one| !one.existing)
                .map(|one| &one.job);
            notify(&tx, &cache, self.node, &Ready::of(added)).await?;
            tx.commit().await.map_err(failed)?;
            Ok(enqueued.into_iter().flatten().collect())
        })
    }

    fn get(&self, id: JobId) -> StoreFuture<'_, Option<Job>> {
        Box::pin(async move {
            let db = self.pool.get().await?;
            let cache = Arc::clone(&db.cache);
            let sql = format!("SELECT {COLUMNS} FROM job WHERE id = $1");
            Ok(jobs(&*db, &cache, &sql, &[&id.0]).await?.pop())
        })
    }

    fn list(&self, query: ListQuery, now: Timestamp) -> StoreFuture<'_, Vec<Job>> {
        Box::pin(async move {
            let db = self.pool.get().await?;
            let cache = Arc::clone(&db.cache);
            let sql = format!(
                "SELECT {COLUMNS} FROM job WHERE ($1::text IS NULL OR queue = $1) \
                 AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR {} = $3) \
                 AND ($4::bigint IS NULL OR id < $4) ORDER BY id DESC LIMIT $5",
                shown_state_sql("$6")
            );
            jobs(
                &*db,
                &cache,
                &sql,
                &[
                    &query.queue,
                    &query.kind,
                    &query.state.map(JobState::as_str),
                    &query.before.map(|id| id.0),
                    &i64::from(query.limit),
                    &now.0,
                ],
            )
            .await
        })
    }

    fn claim(&self, request: Claim, now: Timestamp) -> StoreFuture<'_, Vec<Job>> {
        Box::pin(async move {
            if request.queues.is_empty() || request.max == 0 {
                return Ok(Vec::new());
            }
            let mut db = self.pool.get().await?;
            let cache = Arc::clone(&db.cache);
            let tx = db.transaction().await.map_err(failed)?;
            let leased = claim(&tx, &cache, &self.options, &request, now).await?;
            tx.commit().await.map_err(failed)?;
            Ok(leased)
        })
    }

    fn change(
        &self,
        changes: Vec<Change>,
        now: Timestamp,
    ) -> StoreFuture<'_, Vec<Result<Job, ChangeError>>> {
        Box::pin(async move {
            let mut db = self.pool.get().await?;
            let cache = Arc::clone(&db.cache);
            let tx = db.transaction().await.map_err(failed)?;
            // Every named row, locked in id order (two batches never wait on each other in
            // opposite orders), changed in memory, written back in one statement.
            let ids: Vec<i64> = changes.iter().map(|change| change.id.0).collect();
            let sql =
                format!("SELECT {COLUMNS} FROM job WHERE id = ANY($1) ORDER BY id FOR UPDATE");
            let mut loaded: HashMap<i64, Job> = jobs(&tx, &cache, &sql, &[&ids])
                .await?
                .into_iter()
                .map(|job| (job.id.0, job))
                .collect();
            let mut outcomes = Vec::with_capacity(changes.len());
            let mut made_ready = Ready::default();
            let mut changed: Vec<i64> = Vec::new();
            for change in changes {
                let Some(job) = loaded.get_mut(&change.id.0) else {
                    outcomes.push(Err(ChangeError::NotFound(change.id)));
                    continue;
                };
                if let Some(key) = lifecycle::key_taken_back(job, &change.action) {
                    let held = tx
                        .query_opt(&unique_key_holder_sql(["$1", "$2"]), &[&key, &job.id.0])
                        .await
                        .map_err(failed)?;
                    if held.is_some() {
                        outcomes.push(Err(ChangeError::UniqueKeyTaken {
                            id: job.id,
                            key: key.to_owned(),
                        }));
                        continue;
                    }
                }
                match lifecycle::apply(job, change.action, &self.options.retry, now) {
                    Ok(()) => {
                        // A released or retried job, or a keyed one that stopped (`Ready::add_job`).
                        made_ready.add_job(job);
                        if !changed.contains(&job.id.0) {
                            changed.push(job.id.0);
                        }
                        outcomes.push(Ok(job.clone()));
                    }
                    Err(refused) => outcomes.push(Err(refused)),
                }
            }
            let to_save: Vec<&Job> = changed.iter().filter_map(|id| loaded.get(id)).collect();
            save_all(&tx, &cache, &to_save).await?;
            notify(&tx, &cache, self.node, &made_ready).await?;
            tx.commit().await.map_err(failed)?;
            Ok(outcomes)
        })
    }

    fn rescue(&self, now: Timestamp) -> StoreFuture<'_, Vec<Job>> {
        Box::pin(async move {
            let mut db = self.pool.get().await?;
            let cache = Arc::clone(&db.cache);
            let tx = db.transaction().await.map_err(failed)?;
            let sql = format!(
                "SELECT {COLUMNS} FROM job WHERE state = 'running' AND lease_expires_at < $1 \
                 LIMIT 1000 FOR UPDATE SKIP LOCKED"
            );
            let mut expired = jobs(&tx, &cache, &sql, &[&now.0]).await?;
            for job in &mut expired {
                lifecycle::rescue(job, &self.options.retry, now);
            }
            save_all(&tx, &cache, &expired.iter().collect::<Vec<_>>()).await?;
            notify(&tx, &cache, self.node, &Ready::of(&expired)).await?;
            tx.commit().await.map_err(failed)?;
            Ok(expired)
        })
    }

    fn next_run_at(
        &self,
        queues: Vec<String>,
        kinds: Vec<String>,
        now: Timestamp,
    ) -> StoreFuture<'_, Option<Timestamp>> {
        Box::pin(async move {
            let db = self.pool.get().await?;
            let row = db
                .query_one(
                    "SELECT min(run_at) FROM job WHERE state IN ('scheduled', 'available', 'retrying') \
                     AND run_at > $1 AND queue = ANY($2) AND kind = ANY($3)",
                    &[&now.0, &queues, &kinds],
                )
                .await
                .map_err(failed)?;
            Ok(row.get::<_, Option<i64>>(0).map(Timestamp))
        })
    }

    fn counts(&self, now: Timestamp) -> StoreFuture<'_, Vec<QueueCount>> {
        Box::pin(self.count_rows(all_counts_sql("$1"), now))
    }

    fn unfinished_counts(&self, now: Timestamp) -> StoreFuture<'_, Vec<QueueCount>> {
        Box::pin(self.count_rows(unfinished_counts_sql("$1"), now))
    }

    fn prune(&self, state: JobState, before: Timestamp, limit: u32) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let db = self.pool.get().await?;
            // SKIP LOCKED: nodes pruning at once take different rows instead of queueing
            // behind each other's locks.
            let sql = prune_sql(["$1", "$2", "$3"], " FOR UPDATE SKIP LOCKED");
            let statement = prepared(&*db, &db.cache, &sql).await?;
            let deleted = db
                .execute(&statement, &[&state.as_str(), &before.0, &i64::from(limit)])
                .await
                .map_err(failed)?;
            Ok(deleted)
        })
    }

    fn fire_schedule(
        &self,
        name: String,
        due: Timestamp,
        next: Timestamp,
        job: NewJob,
        now: Timestamp,
    ) -> StoreFuture<'_, Option<Enqueued>> {
        Box::pin(async move {
            let mut db = self.pool.get().await?;
            let cache = Arc::clone(&db.cache);
            let tx = db.transaction().await.map_err(failed)?;
            // Insert-or-lock the schedule row: of two nodes firing the same slot, the second
            // waits here, then sees the moved `next_at` and backs off.
            tx.execute(
                "INSERT INTO schedule (name, next_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &due.0],
            )
            .await
            .map_err(failed)?;
            let stored: i64 = tx
                .query_one(
                    "SELECT next_at FROM schedule WHERE name = $1 FOR UPDATE",
                    &[&name],
                )
                .await
                .map_err(failed)?
                .get(0);
            if stored != due.0 {
                return Ok(None);
            }
            tx.execute(
                "UPDATE schedule SET next_at = $2 WHERE name = $1",
                &[&name, &next.0],
            )
            .await
            .map_err(failed)?;
            let enqueued = enqueue_one(&tx, &cache, job, now).await?;
            notify(&tx, &cache, self.node, &Ready::of([&enqueued.job])).await?;
            tx.commit().await.map_err(failed)?;
            Ok(Some(enqueued))
        })
    }

    fn start_schedule(&self, name: String, first: Timestamp) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let db = self.pool.get().await?;
            db.execute(
                "INSERT INTO schedule (name, next_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &first.0],
            )
            .await
            .map_err(failed)?;
            Ok(())
        })
    }

    fn schedule_due(&self, name: String) -> StoreFuture<'_, Option<Timestamp>> {
        Box::pin(async move {
            let db = self.pool.get().await?;
            let row = db
                .query_opt("SELECT next_at FROM schedule WHERE name = $1", &[&name])
                .await
                .map_err(failed)?;
            Ok(row.map(|row| Timestamp(row.get(0))))
        })
    }

    fn wakeups(&self) -> Option<Arc<Wakeups>> {
        Some(Arc::clone(&self.wakeups))
    }
}
