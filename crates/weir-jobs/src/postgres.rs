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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{AsyncMessage, Client, Config, GenericClient, NoTls, Row, Statement};

use crate::lifecycle::{self, Change, ChangeError};
use crate::model::{Enqueued, Job, JobId, JobState, NewJob};
use crate::row::{
    all_counts_sql, prune_sql, shown_state_sql, unfinished_counts_sql, MutableColumns, RawJob,
    COLUMNS, KEY_NOT_SATURATED,
};
use crate::store::{Claim, ListQuery, QueueCount, Store, StoreError, StoreFuture, StoreOptions};
use crate::time::Timestamp;
use crate::wakeups::{Ready, Wakeups};

/// Each entry moves the schema one version up; applied in order, each in a transaction.
const MIGRATIONS: &[&str] = &[
    // 1: jobs and periodic schedules.
    "CREATE TABLE job (
        id BIGSERIAL PRIMARY KEY,
        queue TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        priority BIGINT NOT NULL,
        state TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        max_attempts BIGINT NOT NULL,
        timeout_ms BIGINT NOT NULL,
        unique_key TEXT,
        concurrency_key TEXT,
        key_limit BIGINT,
        run_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        finished_at BIGINT,
        fencing_token BIGINT NOT NULL,
        lease_worker TEXT,
        lease_expires_at BIGINT,
        cancel_requested BOOLEAN NOT NULL,
        progress_percent DOUBLE PRECISION,
        progress_message TEXT,
        result TEXT,
        errors TEXT NOT NULL
    );
    CREATE INDEX job_queued ON job (queue, priority, run_at, id)
        WHERE state IN ('scheduled', 'available', 'retrying');
    CREATE INDEX job_leases ON job (lease_expires_at) WHERE state = 'running';
    CREATE INDEX job_running_keys ON job (concurrency_key)
        WHERE state = 'running' AND concurrency_key IS NOT NULL;
    CREATE UNIQUE INDEX job_unique_key ON job (unique_key)
        WHERE unique_key IS NOT NULL AND state NOT IN ('completed', 'cancelled', 'discarded');
    CREATE TABLE schedule (name TEXT PRIMARY KEY, next_at BIGINT NOT NULL);",
    // 2: finished jobs by the time they finished, for deleting them after their retention.
    "CREATE INDEX job_finished ON job (finished_at)
        WHERE state IN ('completed', 'cancelled', 'discarded');",
    // 3: what each node's pub/sub subscribers want, so that other nodes relay only that
    // (the binary's `relay` module; kept here because this list owns the schema).
    "CREATE TABLE pubsub_node (
        node BIGINT PRIMARY KEY,
        interest TEXT[] NOT NULL,
        seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );",
];

/// The notification channel for "jobs may be ready".
const CHANNEL: &str = "weir_jobs";
/// Advisory lock key serialising migrations across nodes starting together.
const MIGRATION_LOCK: i64 = 0x7765_6972_6a6f_6273; // "weirjobs"

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

/// Longest notification payload sent. PostgreSQL refuses 8000 bytes or more; past this,
/// the list of queues is left out and every node wakes all its waiting leases instead.
const MAX_PAYLOAD: usize = 7_900;

fn failed(error: tokio_postgres::Error) -> StoreError {
    // The server's message (with its detail) says more than the driver's summary.
    match error.as_db_error() {
        Some(db) => StoreError::Database(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Database(error.to_string()),
    }
}

/// A small connection pool: at most `size` connections, reused while healthy.
#[derive(Debug)]
struct Pool {
    config: Config,
    idle: Mutex<Vec<(Client, StatementCache)>>,
    slots: Arc<Semaphore>,
}

/// Statements prepared on one connection, by SQL text. A query sent as text is prepared
/// again on every call: a round trip more per statement, which doubled the time of a lease.
type StatementCache = Arc<Mutex<HashMap<String, Statement>>>;

/// A pooled connection; goes back to the pool when dropped (unless it broke).
struct Pooled {
    client: Option<Client>,
    cache: StatementCache,
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

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Pool {
    async fn get(self: &Arc<Pool>) -> Result<Pooled, StoreError> {
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
                connect(&self.config, None).await?,
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

/// Where a listening connection's notifications go: this node's waiting leases, woken one
/// per job that another node made ready, on that job's queue.
#[derive(Debug, Clone)]
struct Listener {
    wakeups: Arc<Wakeups>,
    node: u64,
}

/// The payload of a notification: `"{node} {jobs} {queue}:{count} …"`. The node and the
/// total come first because nodes of the previous format (`"{node} {jobs}"`, which wakes
/// that many leases of any queue) read only those two, and a cluster is upgraded a node at a
/// time; nodes from before that ignore the payload and wake every lease. The queues follow
/// unless they would make the payload longer than [`MAX_PAYLOAD`]. Queue names hold no space or colon (see
/// [`validate`](crate::validate)).
fn notification_payload(node: u64, ready: &Ready) -> String {
    let mut payload = format!("{node} {}", ready.total());
    let fixed = payload.len();
    for (queue, jobs) in ready.queues() {
        payload.push_str(&format!(" {queue}:{jobs}"));
        if payload.len() > MAX_PAYLOAD {
            payload.truncate(fixed);
            break;
        }
    }
    payload
}

impl Listener {
    /// One wake-up per job, on the job's queue, like the service's own wake-ups (waking
    /// every waiting lease for each enqueue made them all query at once). A node skips its
    /// own notifications: its service already woke those leases. A payload without queues
    /// (from an older Weir, or too long to list them) wakes every waiting lease.
    fn on_notification(&self, payload: &str) {
        let mut fields = payload.split(' ');
        let node = fields.next().and_then(|node| node.parse::<u64>().ok());
        if node == Some(self.node) {
            return;
        }
        // The total is for nodes of the previous format; the queues say the same, finer.
        let _total = fields.next();
        let mut ready = Ready::default();
        for field in fields {
            match field.split_once(':').map(|(q, n)| (q, n.parse::<usize>())) {
                Some((queue, Ok(jobs))) if !queue.is_empty() => ready.add(queue, jobs),
                _ => return self.wakeups.wake_all(),
            }
        }
        if ready.is_empty() {
            self.wakeups.wake_all();
        } else {
            self.wakeups.wake(&ready);
        }
    }
}

/// Opens a connection and drives it on a task; notifications go to `listener`.
async fn connect(config: &Config, listener: Option<Listener>) -> Result<Client, StoreError> {
    let (client, mut connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| StoreError::Database("connecting to PostgreSQL timed out".into()))?
        .map_err(failed)?;
    tokio::spawn(async move {
        // Polling the connection is what makes the client's queries progress; it ends when
        // the client is dropped or the server goes away.
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if let Some(listener) = &listener {
                        listener.on_notification(notification.payload());
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "PostgreSQL connection ended");
                    break;
                }
            }
        }
    });
    Ok(client)
}

impl PostgresStore {
    /// Checks that `url` is a connection string this store can use, without connecting.
    pub fn check_url(url: &str) -> Result<(), String> {
        url.parse::<Config>()
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
        if schema.is_empty()
            || !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::Database(format!(
                "schema name `{schema}` must be lowercase letters, digits and _"
            )));
        }
        let mut config: Config = url
            .parse()
            .map_err(|error| StoreError::Database(format!("invalid database URL: {error}")))?;
        {
            let bootstrap = connect(&config, None).await?;
            bootstrap
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await
                .map_err(failed)?;
        }
        config.options(format!("-c search_path={schema}"));
        config.application_name("weir");
        let mut client = connect(&config, None).await?;
        migrate(&mut client).await?;
        let pool = Arc::new(Pool {
            config: config.clone(),
            idle: Mutex::new(vec![(client, StatementCache::default())]),
            slots: Arc::new(Semaphore::new(pool_size.max(2))),
        });
        let wakeups = Arc::new(Wakeups::new());
        let node = fastrand::u64(..);
        tokio::spawn(listen(
            config,
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

/// Keeps one connection `LISTEN`ing, reconnecting after failures.
async fn listen(config: Config, listener: Listener) {
    loop {
        match connect(&config, Some(listener.clone())).await {
            Ok(client) => {
                if client
                    .batch_execute(&format!("LISTEN {CHANNEL}"))
                    .await
                    .is_ok()
                {
                    // Anything may have been enqueued while not listening.
                    listener.wakeups.wake_all();
                    // Held until the connection breaks; then listen again.
                    while !client.is_closed() {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot listen for job notifications"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await
        .map_err(failed)?;
    let current: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await
        .map_err(failed)?
        .get(0);
    if current > MIGRATIONS.len() as i64 {
        return Err(StoreError::Database(format!(
            "the jobs schema has version {current}, newer than this Weir knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(index as i64 + 1)],
        )
        .await
        .map_err(failed)?;
    }
    tx.commit().await.map_err(failed)
}

fn raw_job(row: &Row) -> RawJob {
    RawJob {
        id: row.get(0),
        queue: row.get(1),
        kind: row.get(2),
        payload: row.get(3),
        priority: row.get(4),
        state: row.get(5),
        attempt: row.get(6),
        max_attempts: row.get(7),
        timeout_ms: row.get(8),
        unique_key: row.get(9),
        concurrency_key: row.get(10),
        key_limit: row.get(11),
        run_at: row.get(12),
        created_at: row.get(13),
        updated_at: row.get(14),
        finished_at: row.get(15),
        fencing_token: row.get(16),
        lease_worker: row.get(17),
        lease_expires_at: row.get(18),
        cancel_requested: row.get(19),
        progress_percent: row.get(20),
        progress_message: row.get(21),
        result: row.get(22),
        errors: row.get(23),
    }
}

/// The statement for `sql` on this connection, prepared on first use.
async fn prepared(
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

async fn jobs(
    db: &impl GenericClient,
    cache: &StatementCache,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Job>, StoreError> {
    let statement = prepared(db, cache, sql).await?;
    let rows = db.query(&statement, params).await.map_err(failed)?;
    rows.iter().map(|row| raw_job(row).into_job()).collect()
}

/// Writes back every changed job in one statement (a round trip per job made claims and
/// batch completions slow: measured 240 jobs/s before, on the bench/jobs workload).
async fn save_all(
    db: &impl GenericClient,
    cache: &StatementCache,
    jobs: &[&Job],
) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let columns: Vec<MutableColumns<'_>> = jobs.iter().map(|job| MutableColumns::of(job)).collect();
    let ids: Vec<i64> = jobs.iter().map(|job| job.id.0).collect();
    let states: Vec<&str> = columns.iter().map(|c| c.state).collect();
    let attempts: Vec<i64> = columns.iter().map(|c| c.attempt).collect();
    let max_attempts: Vec<i64> = columns.iter().map(|c| c.max_attempts).collect();
    let run_at: Vec<i64> = columns.iter().map(|c| c.run_at).collect();
    let updated_at: Vec<i64> = columns.iter().map(|c| c.updated_at).collect();
    let finished_at: Vec<Option<i64>> = columns.iter().map(|c| c.finished_at).collect();
    let tokens: Vec<i64> = columns.iter().map(|c| c.fencing_token).collect();
    let workers: Vec<Option<&str>> = columns.iter().map(|c| c.lease_worker).collect();
    let expires: Vec<Option<i64>> = columns.iter().map(|c| c.lease_expires_at).collect();
    let cancels: Vec<bool> = columns.iter().map(|c| c.cancel_requested).collect();
    let percents: Vec<Option<f64>> = columns.iter().map(|c| c.progress_percent).collect();
    let messages: Vec<Option<&str>> = columns.iter().map(|c| c.progress_message).collect();
    let results: Vec<Option<&str>> = columns.iter().map(|c| c.result).collect();
    let errors: Vec<&str> = columns.iter().map(|c| c.errors.as_str()).collect();
    let statement = prepared(
        db,
        cache,
        "UPDATE job SET state = u.state, attempt = u.attempt, max_attempts = u.max_attempts, \
         run_at = u.run_at, updated_at = u.updated_at, finished_at = u.finished_at, \
         fencing_token = u.fencing_token, lease_worker = u.lease_worker, \
         lease_expires_at = u.lease_expires_at, cancel_requested = u.cancel_requested, \
         progress_percent = u.progress_percent, progress_message = u.progress_message, \
         result = u.result, errors = u.errors \
         FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], \
         $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], $11::bool[], \
         $12::float8[], $13::text[], $14::text[], $15::text[]) \
         AS u(id, state, attempt, max_attempts, run_at, updated_at, finished_at, fencing_token, \
         lease_worker, lease_expires_at, cancel_requested, progress_percent, progress_message, \
         result, errors) WHERE job.id = u.id",
    )
    .await?;
    db.execute(
        &statement,
        &[
            &ids,
            &states,
            &attempts,
            &max_attempts,
            &run_at,
            &updated_at,
            &finished_at,
            &tokens,
            &workers,
            &expires,
            &cancels,
            &percents,
            &messages,
            &results,
            &errors,
        ],
    )
    .await
    .map_err(failed)?;
    Ok(())
}

/// Inserts jobs without unique keys in one statement; returns them with their ids, in order.
async fn insert_all(
    db: &impl GenericClient,
    cache: &StatementCache,
    batch: Vec<NewJob>,
    now: Timestamp,
) -> Result<Vec<Job>, StoreError> {
    let mut jobs: Vec<Job> = batch
        .into_iter()
        .map(|new| Job::from_new(JobId(0), new, now))
        .collect();
    if jobs.is_empty() {
        return Ok(jobs);
    }
    let queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    let kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
    let payloads: Vec<&str> = jobs.iter().map(|j| j.payload.get()).collect();
    let priorities: Vec<i64> = jobs.iter().map(|j| i64::from(j.priority)).collect();
    let states: Vec<&str> = jobs.iter().map(|j| j.state.as_str()).collect();
    let max_attempts: Vec<i64> = jobs.iter().map(|j| i64::from(j.max_attempts)).collect();
    let timeouts: Vec<i64> = jobs.iter().map(|j| j.timeout_ms as i64).collect();
    let keys: Vec<Option<&str>> = jobs.iter().map(|j| j.concurrency_key.as_deref()).collect();
    let limits: Vec<Option<i64>> = jobs.iter().map(|j| j.key_limit.map(i64::from)).collect();
    let run_at: Vec<i64> = jobs.iter().map(|j| j.run_at.0).collect();
    // Ids come from the sequence in insertion order, which follows `ORDER BY ord`: sorted,
    // they line up with the input.
    let statement = prepared(
        db,
        cache,
        "INSERT INTO job (queue, kind, payload, priority, state, attempt, max_attempts, \
             timeout_ms, concurrency_key, key_limit, run_at, created_at, updated_at, \
             fencing_token, cancel_requested, errors) \
             SELECT q, k, p, pr, st, 0, ma, t, ck, kl, ra, $11, $11, 0, false, '[]' \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], \
             $6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::bigint[]) \
             WITH ORDINALITY AS u(q, k, p, pr, st, ma, t, ck, kl, ra, ord) ORDER BY ord \
             RETURNING id",
    )
    .await?;
    let rows = db
        .query(
            &statement,
            &[
                &queues,
                &kinds,
                &payloads,
                &priorities,
                &states,
                &max_attempts,
                &timeouts,
                &keys,
                &limits,
                &run_at,
                &now.0,
            ],
        )
        .await
        .map_err(failed)?;
    let mut ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    ids.sort_unstable();
    if ids.len() != jobs.len() {
        return Err(StoreError::Database(format!(
            "inserted {} jobs, expected {}",
            ids.len(),
            jobs.len()
        )));
    }
    for (job, id) in jobs.iter_mut().zip(ids) {
        job.id = JobId(id);
    }
    Ok(jobs)
}

/// Tells every listening node (this one included, which skips it) which jobs became ready,
/// by queue. Delivered at commit; nothing is sent when nothing became ready.
async fn notify(
    db: &impl GenericClient,
    cache: &StatementCache,
    node: u64,
    ready: &Ready,
) -> Result<(), StoreError> {
    if ready.is_empty() {
        return Ok(());
    }
    // pg_notify with parameters, not NOTIFY with a literal: nothing to quote.
    let statement = prepared(db, cache, "SELECT pg_notify($1, $2)").await?;
    db.execute(&statement, &[&CHANNEL, &notification_payload(node, ready)])
        .await
        .map_err(failed)?;
    Ok(())
}

async fn enqueue_one(
    db: &impl GenericClient,
    cache: &StatementCache,
    new: NewJob,
    now: Timestamp,
) -> Result<Enqueued, StoreError> {
    let existing = format!(
        "SELECT {COLUMNS} FROM job WHERE unique_key = $1 \
         AND state NOT IN ('completed', 'cancelled', 'discarded')"
    );
    if let Some(key) = &new.unique_key {
        if let Some(job) = jobs(db, cache, &existing, &[key]).await?.pop() {
            return Ok(Enqueued {
                job,
                existing: true,
            });
        }
    }
    let mut job = Job::from_new(JobId(0), new, now);
    // A concurrent enqueue of the same unique key (on another node) wins the index; this
    // one then returns it instead of failing.
    let inserted = db
        .query_opt(
            "INSERT INTO job (queue, kind, payload, priority, state, attempt, max_attempts, \
             timeout_ms, unique_key, concurrency_key, key_limit, run_at, created_at, \
             updated_at, fencing_token, cancel_requested, errors) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $10, $11, $12, $12, 0, false, '[]') \
             ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL \
             AND state NOT IN ('completed', 'cancelled', 'discarded') DO NOTHING \
             RETURNING id",
            &[
                &job.queue,
                &job.kind,
                &job.payload.get(),
                &i64::from(job.priority),
                &job.state.as_str(),
                &i64::from(job.max_attempts),
                &(job.timeout_ms as i64),
                &job.unique_key,
                &job.concurrency_key,
                &job.key_limit.map(i64::from),
                &job.run_at.0,
                &now.0,
            ],
        )
        .await
        .map_err(failed)?;
    match inserted {
        Some(row) => {
            job.id = JobId(row.get(0));
            Ok(Enqueued {
                job,
                existing: false,
            })
        }
        None => {
            let key = job.unique_key.clone().unwrap_or_default();
            let job = jobs(db, cache, &existing, &[&key])
                .await?
                .pop()
                .ok_or_else(|| {
                    StoreError::Database(format!("unique key `{key}` conflicted but no job has it"))
                })?;
            Ok(Enqueued {
                job,
                existing: true,
            })
        }
    }
}

async fn count_running(
    db: &impl GenericClient,
    cache: &StatementCache,
    column: &str,
    value: &str,
) -> Result<u32, StoreError> {
    let sql = format!("SELECT count(*) FROM job WHERE state = 'running' AND {column} = $1");
    let statement = prepared(db, cache, &sql).await?;
    let row = db.query_one(&statement, &[&value]).await.map_err(failed)?;
    Ok(row.get::<_, i64>(0) as u32)
}

async fn claim(
    db: &impl GenericClient,
    cache: &StatementCache,
    options: &StoreOptions,
    claim: &Claim,
    now: Timestamp,
) -> Result<Vec<Job>, StoreError> {
    // Limited queues first, each under its lock, in name order (BTreeMap) so two claims
    // never wait on each other in opposite orders.
    let mut running_per_queue: HashMap<&str, u32> = HashMap::new();
    for (queue, _) in options
        .queue_limits
        .iter()
        .filter(|(queue, _)| claim.queues.contains(queue))
    {
        db.execute(
            "SELECT pg_advisory_xact_lock(hashtext('weir.queue.' || $1))",
            &[queue],
        )
        .await
        .map_err(failed)?;
        running_per_queue.insert(queue, count_running(db, cache, "queue", queue).await?);
    }
    // Queues at their limit are left out of the query (see `KEY_NOT_SATURATED` for why).
    let open_queues: Vec<&String> = claim
        .queues
        .iter()
        .filter(|queue| match options.queue_limits.get(*queue) {
            Some(&limit) => running_per_queue.get(queue.as_str()).copied().unwrap_or(0) < limit,
            None => true,
        })
        .collect();
    if open_queues.is_empty() {
        return Ok(Vec::new());
    }
    let scan = i64::from(claim.max.saturating_mul(2).saturating_add(16));
    // One query per queue, each walking the index `job_queued (queue, priority, run_at, id)`
    // in order and stopping at the limit; the candidates are then merged here. A single
    // query with `queue = ANY($2)` cannot use that order: it read and sorted every ready
    // job of the queues on every claim (measured: 100 jobs/s with 68,000 jobs waiting).
    let sql = format!(
        "SELECT {COLUMNS} FROM job WHERE state IN ('scheduled', 'available', 'retrying') \
         AND run_at <= $1 AND queue = $2 AND {KEY_NOT_SATURATED} \
         ORDER BY priority, run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED"
    );
    let mut candidates = Vec::new();
    for queue in open_queues {
        candidates.extend(jobs(db, cache, &sql, &[&now.0, queue, &scan]).await?);
    }
    candidates.sort_by_key(|job| (job.priority, job.run_at, job.id));
    let mut running_per_key: HashMap<String, u32> = HashMap::new();
    let mut leased = Vec::new();
    for mut job in candidates {
        if leased.len() as u32 >= claim.max {
            break;
        }
        if let Some(&limit) = options.queue_limits.get(&job.queue) {
            if running_per_queue
                .get(job.queue.as_str())
                .copied()
                .unwrap_or(0)
                >= limit
            {
                continue;
            }
        }
        if let Some(key) = job.concurrency_key.clone() {
            let running = match running_per_key.get(&key) {
                Some(&n) => n,
                None => {
                    let locked: bool = db
                        .query_one(
                            "SELECT pg_try_advisory_xact_lock(hashtext('weir.key.' || $1))",
                            &[&key],
                        )
                        .await
                        .map_err(failed)?
                        .get(0);
                    if !locked {
                        // Another node is deciding about this key right now: leave its
                        // jobs for the next claim.
                        running_per_key.insert(key, u32::MAX);
                        continue;
                    }
                    count_running(db, cache, "concurrency_key", &key).await?
                }
            };
            if running >= job.key_limit.unwrap_or(1) {
                running_per_key.insert(key, running);
                continue;
            }
            running_per_key.insert(key, running + 1);
        }
        if let Some(n) = running_per_queue.get_mut(job.queue.as_str()) {
            *n += 1;
        }
        lifecycle::lease(&mut job, &claim.worker, claim.lease_ttl, now);
        leased.push(job);
    }
    save_all(db, cache, &leased.iter().collect::<Vec<_>>()).await?;
    Ok(leased)
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
        now: Timestamp,
    ) -> StoreFuture<'_, Option<Timestamp>> {
        Box::pin(async move {
            let db = self.pool.get().await?;
            let row = db
                .query_one(
                    "SELECT min(run_at) FROM job WHERE state IN ('scheduled', 'available', 'retrying') \
                     AND run_at > $1 AND queue = ANY($2)",
                    &[&now.0, &queues],
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Waker};

    /// Which of the leases waiting on `queues` (one entry per lease) a notification with
    /// `payload` wakes.
    fn woken_by(payload: &str, queues: &[&str]) -> Vec<bool> {
        let listener = Listener {
            wakeups: Arc::new(Wakeups::new()),
            node: 7,
        };
        let leases: Vec<_> = queues
            .iter()
            .map(|queue| listener.wakeups.register(&[(*queue).to_owned()]))
            .collect();
        listener.on_notification(payload);
        let mut context = Context::from_waker(Waker::noop());
        leases
            .iter()
            .map(|lease| std::pin::pin!(lease.woken()).poll(&mut context).is_ready())
            .collect()
    }

    #[test]
    fn a_notification_wakes_one_lease_per_job_on_its_queue_from_other_nodes_only() {
        let waiting = ["a", "a", "a", "b", "b"];
        assert_eq!(
            woken_by("3 3 a:2 b:1", &waiting),
            [true, true, false, true, false],
            "two jobs on a and one on b from node 3: three leases look"
        );
        assert_eq!(
            woken_by("3 9 b:9", &waiting),
            [false, false, false, true, true],
            "more jobs than waiters on b: all of b look, none of a"
        );
        assert_eq!(
            woken_by("7 2 a:2", &waiting),
            [false; 5],
            "this node's own: already woken locally"
        );
        assert_eq!(
            woken_by("3 2", &waiting),
            [true; 5],
            "no queues (an older Weir, or too many to list): everyone looks"
        );
        assert_eq!(
            woken_by("", &waiting),
            [true; 5],
            "no payload: everyone looks"
        );
        assert_eq!(
            woken_by("3 1 a:x", &waiting),
            [true; 5],
            "unreadable: everyone looks"
        );
    }

    #[test]
    fn a_payload_lists_queues_while_it_fits() {
        let mut ready = Ready::default();
        ready.add("mail", 2);
        ready.add("crawl", 1);
        assert_eq!(notification_payload(5, &ready), "5 3 crawl:1 mail:2");
        let mut many = Ready::default();
        for i in 0..100 {
            many.add(&format!("{i:0>100}"), 1);
        }
        let payload = notification_payload(5, &many);
        assert_eq!(payload, "5 100", "too long to list: the total only");

        // At the edge: "5 1 " + name + ":1" is the name's length plus 6 bytes.
        let at_limit = |name_len: usize| {
            let mut one = Ready::default();
            one.add(&"q".repeat(name_len), 1);
            notification_payload(5, &one)
        };
        assert_eq!(
            at_limit(MAX_PAYLOAD - 6).len(),
            MAX_PAYLOAD,
            "exactly at the cap: listed"
        );
        assert_eq!(
            at_limit(MAX_PAYLOAD - 5),
            "5 1",
            "one byte over: the total only"
        );
    }
}
