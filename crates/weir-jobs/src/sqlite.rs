//! The embedded default store: one SQLite file, one writer thread that batches.
//!
//! SQLite allows one writer at a time, so the store gives it exactly one: a thread that owns
//! the connection. Every operation is a closure sent to it; the thread takes everything
//! queued (up to [`BATCH`]), runs each closure in its own savepoint inside one transaction,
//! commits once, and only then answers. Under load, hundreds of enqueues and completions
//! share one commit; an answer always means the commit happened.
//!
//! WAL journal with `synchronous = NORMAL`: a commit survives `kill -9` of Weir (the
//! operating system has it), not a power cut.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::{mpsc, oneshot};
use weir_db::Migrations;

use crate::lifecycle::{self, Change, ChangeError};
use crate::model::{Enqueued, Job, JobId, JobState, NewJob};
use crate::row::{
    all_counts_sql, job_finished_index, job_indexes, job_queued_by_kind_index, prune_sql,
    shown_state_sql, unfinished_counts_sql, unique_key_holder_sql, MutableColumns, RawJob, COLUMNS,
    KEY_NOT_SATURATED, UPDATE,
};
use crate::store::{Claim, ListQuery, QueueCount, Store, StoreError, StoreFuture, StoreOptions};
use crate::time::Timestamp;

/// Most operations in one transaction.
const BATCH: usize = 512;

/// The job store's schema. A step is never removed or edited: databases count them.
const MIGRATIONS: Migrations = Migrations {
    component: "jobs",
    steps: &[
        // 1: jobs and periodic schedules.
        concat!(
            "CREATE TABLE job (
                id INTEGER PRIMARY KEY,
                queue TEXT NOT NULL,
                kind TEXT NOT NULL,
                payload TEXT NOT NULL,
                priority INTEGER NOT NULL,
                state TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                max_attempts INTEGER NOT NULL,
                timeout_ms INTEGER NOT NULL,
                unique_key TEXT,
                concurrency_key TEXT,
                key_limit INTEGER,
                run_at INTEGER NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                finished_at INTEGER,
                fencing_token INTEGER NOT NULL,
                lease_worker TEXT,
                lease_expires_at INTEGER,
                cancel_requested INTEGER NOT NULL,
                progress_percent REAL,
                progress_message TEXT,
                result TEXT,
                errors TEXT NOT NULL
            );",
            job_indexes!(),
            "CREATE TABLE schedule (name TEXT PRIMARY KEY, next_at INTEGER NOT NULL) WITHOUT ROWID;"
        ),
        // 2: finished jobs by the time they finished, for deleting them after their retention.
        job_finished_index!(),
        // 3: the waiting jobs' index by kind too: leases name the kinds they run.
        job_queued_by_kind_index!(),
    ],
};

type Answer = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// Runs one operation; says whether it succeeded (so its savepoint is kept or undone) and
/// returns how to answer once the batch's commit outcome is known.
type Work = Box<dyn FnOnce(&Connection, &StoreOptions) -> (bool, Answer) + Send>;

/// The SQLite job store. Cheap to share: the connection lives on its own thread.
#[derive(Debug)]
pub struct SqliteStore {
    work: mpsc::Sender<Work>,
}

fn failed(error: rusqlite::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, brings its schema up to date and
    /// starts the writer thread.
    pub fn open(path: &Path, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        let db = weir_db::sqlite::open(path, &MIGRATIONS, options.synchronous)
            .map_err(|error| StoreError::Database(error.to_string()))?;
        // The store's own statements and the nine sizes of `insert_plain`, with room.
        db.set_prepared_statement_cache_capacity(64);
        let (work, mut queue) = mpsc::channel::<Work>(4 * BATCH);
        std::thread::Builder::new()
            .name("weir-jobs-sqlite".into())
            .spawn(move || write_loop(&db, &options, &mut queue))
            .map_err(|error| StoreError::Database(format!("cannot start writer: {error}")))?;
        Ok(SqliteStore { work })
    }

    /// Runs `op` on the writer thread inside the next batch; resolves after the commit.
    fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection, &StoreOptions) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let (answer, answered) = oneshot::channel();
        let work: Work = Box::new(move |db, options| {
            let outcome = op(db, options);
            let ok = outcome.is_ok();
            let reply: Answer = Box::new(move |commit: Result<(), StoreError>| {
                let _ = answer.send(commit.and(outcome));
            });
            (ok, reply)
        });
        Box::pin(async move {
            // The channel is bounded: a full queue makes callers wait here (backpressure)
            // rather than grow memory.
            self.work.send(work).await.map_err(|_| StoreError::Closed)?;
            answered.await.map_err(|_| StoreError::Closed)?
        })
    }
}

fn write_loop(db: &Connection, options: &StoreOptions, queue: &mut mpsc::Receiver<Work>) {
    let mut answers: Vec<Answer> = Vec::with_capacity(BATCH);
    while let Some(first) = queue.blocking_recv() {
        let begun = db.execute_batch("BEGIN IMMEDIATE").map_err(failed);
        if let Err(error) = begun {
            // Not even a transaction: answer this one with the error, keep serving.
            first(db, options).1(Err(error));
            continue;
        }
        let mut next = Some(first);
        while let Some(work) = next.take() {
            let _ = db.execute_batch("SAVEPOINT op");
            let (ok, answer) = work(db, options);
            if !ok {
                // The failed operation may have left statements half done: undo just
                // those; the others in the batch still commit.
                let _ = db.execute_batch("ROLLBACK TO op");
            }
            let _ = db.execute_batch("RELEASE op");
            answers.push(answer);
            if answers.len() < BATCH {
                next = queue.try_recv().ok();
            }
        }
        let committed = db.execute_batch("COMMIT").map_err(failed);
        if committed.is_err() {
            let _ = db.execute_batch("ROLLBACK");
        }
        for answer in answers.drain(..) {
            answer(committed.clone());
        }
    }
}

fn raw_job(row: &Row<'_>) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        id: row.get(0)?,
        queue: row.get(1)?,
        kind: row.get(2)?,
        payload: row.get(3)?,
        priority: row.get(4)?,
        state: row.get(5)?,
        attempt: row.get(6)?,
        max_attempts: row.get(7)?,
        timeout_ms: row.get(8)?,
        unique_key: row.get(9)?,
        concurrency_key: row.get(10)?,
        key_limit: row.get(11)?,
        run_at: row.get(12)?,
        created_at: row.get(13)?,
        updated_at: row.get(14)?,
        finished_at: row.get(15)?,
        fencing_token: row.get(16)?,
        lease_worker: row.get(17)?,
        lease_expires_at: row.get(18)?,
        cancel_requested: row.get(19)?,
        progress_percent: row.get(20)?,
        progress_message: row.get(21)?,
        result: row.get(22)?,
        errors: row.get(23)?,
    })
}

fn jobs(db: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Job>, StoreError> {
    let mut statement = db.prepare_cached(sql).map_err(failed)?;
    let rows = statement.query_map(params, raw_job).map_err(failed)?;
    rows.map(|row| row.map_err(failed)?.into_job()).collect()
}

fn load(db: &Connection, id: JobId) -> Result<Option<Job>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM job WHERE id = ?1");
    Ok(jobs(db, &sql, [id.0])?.pop())
}

fn save(db: &Connection, job: &Job) -> Result<(), StoreError> {
    let c = MutableColumns::of(job);
    db.prepare_cached(UPDATE)
        .and_then(|mut update| {
            update.execute(params![
                c.state,
                c.attempt,
                c.max_attempts,
                c.run_at,
                c.updated_at,
                c.finished_at,
                c.fencing_token,
                c.lease_worker,
                c.lease_expires_at,
                c.cancel_requested,
                c.progress_percent,
                c.progress_message,
                c.result,
                c.errors,
                job.id.0,
            ])
        })
        .map_err(failed)?;
    Ok(())
}

/// Rows one `INSERT` statement of [`insert_plain`] writes at most: 17 parameters a row stay
/// well under SQLite's 32,766.
const ROWS_PER_INSERT: usize = 256;

/// Inserts jobs without a unique key, many rows a statement, with ids given here (one more
/// than the largest, as SQLite itself would: this thread is the only writer).
///
/// One statement for many rows, not one per job: SQLite evaluates the partial indexes'
/// `state IN (…)` terms through a temporary table built per statement execution, three per
/// INSERT, which per job was the largest cost left in a batch enqueue.
fn insert_plain(
    db: &Connection,
    batch: Vec<NewJob>,
    now: Timestamp,
) -> Result<Vec<Enqueued>, StoreError> {
    let mut enqueued = Vec::with_capacity(batch.len());
    let mut batch = batch.into_iter();
    let mut left = batch.len();
    while left > 0 {
        // The largest power of two that fits, at most ROWS_PER_INSERT: nine statement
        // sizes in all, each prepared once and kept in the cache (preparing a statement of
        // a few hundred rows costs more than it saves).
        let rows = ROWS_PER_INSERT.min(1 << left.ilog2());
        left -= rows;
        let chunk: Vec<NewJob> = batch.by_ref().take(rows).collect();
        let first: i64 = db
            .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM job")
            .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
            .map_err(failed)?;
        let row = "(?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, '[]')";
        let sql = format!(
            "INSERT INTO job (id, queue, kind, payload, priority, state, attempt, max_attempts, \
             timeout_ms, unique_key, concurrency_key, key_limit, run_at, created_at, \
             updated_at, fencing_token, cancel_requested, errors) VALUES {}",
            vec![row; chunk.len()].join(", ")
        );
        let jobs: Vec<Job> = chunk
            .into_iter()
            .zip(first..)
            .map(|(new, id)| Job::from_new(JobId(id), new, now))
            .collect();
        let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(jobs.len() * 14);
        for job in &jobs {
            values.extend([
                job.id.0.into(),
                job.queue.clone().into(),
                job.kind.clone().into(),
                job.payload.get().to_owned().into(),
                i64::from(job.priority).into(),
                job.state.as_str().to_owned().into(),
                i64::from(job.max_attempts).into(),
                (job.timeout_ms as i64).into(),
                rusqlite::types::Value::Null,
                job.concurrency_key.clone().into(),
                job.key_limit.map(i64::from).into(),
                job.run_at.0.into(),
                now.0.into(),
                now.0.into(),
            ]);
        }
        db.prepare_cached(&sql)
            .and_then(|mut insert| insert.execute(rusqlite::params_from_iter(values)))
            .map_err(failed)?;
        enqueued.extend(jobs.into_iter().map(|job| Enqueued {
            job,
            existing: false,
        }));
    }
    Ok(enqueued)
}

fn enqueue_one(db: &Connection, new: NewJob, now: Timestamp) -> Result<Enqueued, StoreError> {
    if let Some(key) = &new.unique_key {
        let sql = format!(
            "SELECT {COLUMNS} FROM job WHERE unique_key = ?1 \
             AND state NOT IN ('completed', 'cancelled', 'discarded')"
        );
        if let Some(job) = jobs(db, &sql, [key])?.pop() {
            return Ok(Enqueued {
                job,
                existing: true,
            });
        }
    }
    let mut job = Job::from_new(JobId(0), new, now);
    // A plain INSERT and the connection's last row id, not `RETURNING id`: SQLite gathers
    // a RETURNING statement's rows in a temporary table, made and dropped per job (measured:
    // about a seventh of the writer's time on a batch enqueue).
    db.prepare_cached(
        "INSERT INTO job (queue, kind, payload, priority, state, attempt, max_attempts, \
         timeout_ms, unique_key, concurrency_key, key_limit, run_at, created_at, \
         updated_at, fencing_token, cancel_requested, errors) \
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, 0, 0, '[]')",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            job.queue,
            job.kind,
            job.payload.get(),
            job.priority,
            job.state.as_str(),
            job.max_attempts,
            job.timeout_ms as i64,
            job.unique_key,
            job.concurrency_key,
            job.key_limit,
            job.run_at.0,
            now.0,
        ])
    })
    .map_err(failed)?;
    let id = db.last_insert_rowid();
    job.id = JobId(id);
    Ok(Enqueued {
        job,
        existing: false,
    })
}

fn count(db: &Connection, sql: &str, key: &str) -> Result<u32, StoreError> {
    db.prepare_cached(sql)
        .and_then(|mut statement| statement.query_row([key], |row| row.get::<_, i64>(0)))
        .map(|n| n as u32)
        .map_err(failed)
}

fn claim(
    db: &Connection,
    options: &StoreOptions,
    claim: &Claim,
    now: Timestamp,
) -> Result<Vec<Job>, StoreError> {
    if claim.queues.is_empty() || claim.kinds.is_empty() || claim.max == 0 {
        return Ok(Vec::new());
    }
    // Queues at their limit are left out of the query (see `KEY_NOT_SATURATED` for why).
    let mut running_per_queue: HashMap<String, u32> = HashMap::new();
    let mut open_queues = Vec::with_capacity(claim.queues.len());
    for queue in &claim.queues {
        if let Some(&limit) = options.queue_limits.get(queue) {
            let running = count(
                db,
                "SELECT count(*) FROM job WHERE state = 'running' AND queue = ?1",
                queue,
            )?;
            running_per_queue.insert(queue.clone(), running);
            if running >= limit {
                continue;
            }
        }
        open_queues.push(queue.clone());
    }
    if open_queues.is_empty() {
        return Ok(Vec::new());
    }
    // Candidates in lease order; the few that reach a limit during this claim are skipped.
    // One query per queue and kind, each walking the index `job_queued (queue, kind,
    // priority, run_at, id)` in order and stopping at the limit, merged here: with
    // `queue IN (…) AND kind IN (…)` SQLite reads and sorts every ready job of them.
    let scan = i64::from(claim.max.saturating_mul(2).saturating_add(16));
    let sql = format!(
        "SELECT {COLUMNS} FROM job WHERE state IN ('scheduled', 'available', 'retrying') \
         AND run_at <= ?1 AND queue = ?2 AND kind = ?3 AND {KEY_NOT_SATURATED} \
         ORDER BY priority, run_at, id LIMIT ?4"
    );
    let mut candidates = Vec::new();
    for queue in &open_queues {
        for kind in &claim.kinds {
            candidates.extend(jobs(db, &sql, rusqlite::params![now.0, queue, kind, scan])?);
        }
    }
    candidates.sort_by_key(|job| (job.priority, job.run_at, job.id));

    let mut running_per_key: HashMap<String, u32> = HashMap::new();
    let mut leased = Vec::new();
    for mut job in candidates {
        if leased.len() as u32 >= claim.max {
            break;
        }
        if let Some(&limit) = options.queue_limits.get(&job.queue) {
            if running_per_queue.get(&job.queue).copied().unwrap_or(0) >= limit {
                continue;
            }
        }
        if let Some(key) = job.concurrency_key.clone() {
            let running = match running_per_key.get(&key) {
                Some(&n) => n,
                None => count(
                    db,
                    "SELECT count(*) FROM job WHERE state = 'running' AND concurrency_key = ?1",
                    &key,
                )?,
            };
            running_per_key.insert(key.clone(), running);
            if running >= job.key_limit.unwrap_or(1) {
                continue;
            }
            running_per_key.insert(key, running + 1);
        }
        if let Some(n) = running_per_queue.get_mut(&job.queue) {
            *n += 1;
        }
        lifecycle::lease(&mut job, &claim.worker, claim.lease_ttl, now);
        save(db, &job)?;
        leased.push(job);
    }
    Ok(leased)
}

fn change(
    db: &Connection,
    options: &StoreOptions,
    change: lifecycle::Change,
    now: Timestamp,
) -> Result<Result<Job, ChangeError>, StoreError> {
    let Some(mut job) = load(db, change.id)? else {
        return Ok(Err(ChangeError::NotFound(change.id)));
    };
    if let Some(key) = lifecycle::key_taken_back(&job, &change.action) {
        let held: Option<i64> = db
            .query_row(
                &unique_key_holder_sql(["?1", "?2"]),
                params![key, job.id.0],
                |row| row.get(0),
            )
            .optional()
            .map_err(failed)?;
        if held.is_some() {
            return Ok(Err(ChangeError::UniqueKeyTaken {
                id: job.id,
                key: key.to_owned(),
            }));
        }
    }
    if let Err(refused) = lifecycle::apply(&mut job, change.action, &options.retry, now) {
        return Ok(Err(refused));
    }
    save(db, &job)?;
    Ok(Ok(job))
}

impl Store for SqliteStore {
    fn enqueue(&self, batch: Vec<NewJob>, now: Timestamp) -> StoreFuture<'_, Vec<Enqueued>> {
        self.run(move |db, _| {
            // Runs of jobs without a unique key go in many rows a statement; a job with a
            // key, one by one (it must look for its key first). Ids follow the batch's order.
            let mut enqueued = Vec::with_capacity(batch.len());
            let mut plain = Vec::new();
            for new in batch {
                if new.unique_key.is_none() {
                    plain.push(new);
                    continue;
                }
                enqueued.extend(insert_plain(db, std::mem::take(&mut plain), now)?);
                enqueued.push(enqueue_one(db, new, now)?);
            }
            enqueued.extend(insert_plain(db, plain, now)?);
            Ok(enqueued)
        })
    }

    fn get(&self, id: JobId) -> StoreFuture<'_, Option<Job>> {
        self.run(move |db, _| load(db, id))
    }

    fn list(&self, query: ListQuery, now: Timestamp) -> StoreFuture<'_, Vec<Job>> {
        self.run(move |db, _| {
            let sql = format!(
                "SELECT {COLUMNS} FROM job WHERE (?1 IS NULL OR queue = ?1) \
                 AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR {} = ?3) \
                 AND (?4 IS NULL OR id < ?4) ORDER BY id DESC LIMIT ?5",
                shown_state_sql("?6")
            );
            jobs(
                db,
                &sql,
                params![
                    query.queue,
                    query.kind,
                    query.state.map(JobState::as_str),
                    query.before.map(|id| id.0),
                    query.limit,
                    now.0,
                ],
            )
        })
    }

    fn claim(&self, request: Claim, now: Timestamp) -> StoreFuture<'_, Vec<Job>> {
        self.run(move |db, options| claim(db, options, &request, now))
    }

    fn change(
        &self,
        changes: Vec<Change>,
        now: Timestamp,
    ) -> StoreFuture<'_, Vec<Result<Job, ChangeError>>> {
        self.run(move |db, options| {
            changes
                .into_iter()
                .map(|one| change(db, options, one, now))
                .collect()
        })
    }

    fn rescue(&self, now: Timestamp) -> StoreFuture<'_, Vec<Job>> {
        self.run(move |db, options| {
            let sql = format!(
                "SELECT {COLUMNS} FROM job WHERE state = 'running' AND lease_expires_at < ?1 \
                 LIMIT 1000"
            );
            let mut expired = jobs(db, &sql, [now.0])?;
            for job in &mut expired {
                lifecycle::rescue(job, &options.retry, now);
                save(db, job)?;
            }
            Ok(expired)
        })
    }

    fn next_run_at(
        &self,
        queues: Vec<String>,
        kinds: Vec<String>,
        now: Timestamp,
    ) -> StoreFuture<'_, Option<Timestamp>> {
        self.run(move |db, _| {
            if queues.is_empty() || kinds.is_empty() {
                return Ok(None);
            }
            let placeholders = vec!["?"; queues.len()].join(", ");
            let kind_placeholders = vec!["?"; kinds.len()].join(", ");
            // The state list is the partial index `job_queued`'s, word for word: SQLite uses
            // a partial index only for a query whose terms match its own (with a narrower
            // list this scanned the whole table, on every idle lease's look).
            let sql = format!(
                "SELECT min(run_at) FROM job WHERE state IN ('scheduled', 'available', 'retrying') \
                 AND run_at > ? AND queue IN ({placeholders}) AND kind IN ({kind_placeholders})"
            );
            let mut values: Vec<rusqlite::types::Value> = vec![now.0.into()];
            values.extend(queues.into_iter().map(Into::into));
            values.extend(kinds.into_iter().map(Into::into));
            db.query_row(&sql, rusqlite::params_from_iter(values), |row| {
                row.get::<_, Option<i64>>(0)
            })
            .map(|at| at.map(Timestamp))
            .map_err(failed)
        })
    }

    fn counts(&self, now: Timestamp) -> StoreFuture<'_, Vec<QueueCount>> {
        self.run(move |db, _| count_rows(db, &all_counts_sql("?1"), now))
    }

    fn unfinished_counts(&self, now: Timestamp) -> StoreFuture<'_, Vec<QueueCount>> {
        self.run(move |db, _| count_rows(db, &unfinished_counts_sql("?1"), now))
    }

    fn prune(&self, state: JobState, before: Timestamp, limit: u32) -> StoreFuture<'_, u64> {
        self.run(move |db, _| {
            let sql = prune_sql(["?1", "?2", "?3"], "");
            let deleted = db
                .prepare_cached(&sql)
                .and_then(|mut statement| {
                    statement.execute(params![state.as_str(), before.0, limit])
                })
                .map_err(failed)?;
            Ok(deleted as u64)
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
        self.run(move |db, _| {
            let stored: Option<i64> = db
                .query_row(
                    "SELECT next_at FROM schedule WHERE name = ?1",
                    [&name],
                    |row| row.get(0),
                )
                .optional()
                .map_err(failed)?;
            if stored.is_some_and(|at| at != due.0) {
                return Ok(None);
            }
            db.execute(
                "INSERT INTO schedule (name, next_at) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET next_at = excluded.next_at",
                params![name, next.0],
            )
            .map_err(failed)?;
            enqueue_one(db, job, now).map(Some)
        })
    }

    fn start_schedule(&self, name: String, first: Timestamp) -> StoreFuture<'_, ()> {
        self.run(move |db, _| {
            db.execute(
                "INSERT INTO schedule (name, next_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, first.0],
            )
            .map(drop)
            .map_err(failed)
        })
    }

    fn schedule_due(&self, name: String) -> StoreFuture<'_, Option<Timestamp>> {
        self.run(move |db, _| {
            db.query_row(
                "SELECT next_at FROM schedule WHERE name = ?1",
                [&name],
                |row| row.get(0),
            )
            .optional()
            .map(|at| at.map(Timestamp))
            .map_err(failed)
        })
    }
}

/// Runs a query of (queue, state, count) rows whose `?1` is now.
fn count_rows(db: &Connection, sql: &str, now: Timestamp) -> Result<Vec<QueueCount>, StoreError> {
    let mut statement = db.prepare_cached(sql).map_err(failed)?;
    let rows = statement
        .query_map([now.0], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .map_err(failed)?;
    rows.map(|row| {
        let (queue, state, count) = row.map_err(failed)?;
        let state = state.parse().map_err(StoreError::Database)?;
        Ok(QueueCount {
            queue,
            state,
            count: count as u64,
        })
    })
    .collect()
}
