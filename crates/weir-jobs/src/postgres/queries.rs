//! The statements that read and write jobs, shared by the store's operations: one
//! statement per batch wherever PostgreSQL allows (arrays through `unnest`).

use tokio_postgres::{GenericClient, Row};

use super::pool::{failed, prepared, StatementCache};
use crate::model::{Enqueued, Job, JobId, NewJob};
use crate::row::{MutableColumns, RawJob, COLUMNS};
use crate::store::StoreError;
use crate::time::Timestamp;

pub(super) fn raw_job(row: &Row) -> RawJob {
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

pub(super) async fn jobs(
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
pub(super) async fn save_all(
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
pub(super) async fn insert_all(
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

pub(super) async fn enqueue_one(
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

pub(super) async fn count_running(
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
