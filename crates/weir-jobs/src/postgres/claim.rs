//! Leasing jobs: the candidates of each queue in priority order, locked with `SKIP LOCKED`,
//! with queue limits and concurrency keys counted under advisory locks.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use super::pool::{failed, StatementCache};
use super::queries::{count_running, jobs, save_all};
use crate::lifecycle;
use crate::model::Job;
use crate::row::{COLUMNS, KEY_NOT_SATURATED};
use crate::store::{Claim, StoreError, StoreOptions};
use crate::time::Timestamp;

pub(super) async fn claim(
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
    // For each queue and kind, a walk of the index `job_queued (queue, kind, priority,
    // run_at, id)` in order, stopping at the limit (a `LATERAL` subquery each, so one
    // round trip); the candidates are then merged here. A single query with
    // `queue = ANY($2)` cannot use that order: it read and sorted every ready job of the
    // queues on every claim (measured: 100 jobs/s with 68,000 jobs waiting).
    let sql = format!(
        "SELECT {COLUMNS} FROM unnest($2::text[]) AS lane_queue(name) \
         CROSS JOIN unnest($3::text[]) AS lane_kind(name) \
         CROSS JOIN LATERAL (SELECT {COLUMNS} FROM job \
            WHERE state IN ('scheduled', 'available', 'retrying') AND run_at <= $1 \
            AND queue = lane_queue.name AND kind = lane_kind.name AND {KEY_NOT_SATURATED} \
            ORDER BY priority, run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) AS candidate"
    );
    let mut candidates = jobs(
        db,
        cache,
        &sql,
        &[&now.0, &open_queues, &claim.kinds, &scan],
    )
    .await?;
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
