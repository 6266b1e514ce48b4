//! The job store's tables in PostgreSQL, as numbered steps (see `weir_db::Migrations`).

use weir_db::Migrations;

use crate::row::{job_finished_index, job_indexes, job_queued_by_kind_index};

/// The job store's schema. A step is never removed or edited: databases count them.
pub(super) const MIGRATIONS: Migrations = Migrations {
    component: "jobs",
    steps: &[
        // 1: jobs and periodic schedules.
        concat!(
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
            );",
            job_indexes!(),
            "CREATE TABLE schedule (name TEXT PRIMARY KEY, next_at BIGINT NOT NULL);"
        ),
        // 2: finished jobs by the time they finished, for deleting them after their retention.
        job_finished_index!(),
        // 3: once the pub/sub relay's table, which the relay's own migrations now create
        // (weir-pubsub's `relay_postgres`); kept so that every database counts the same steps.
        "SELECT 1",
        // 4: the waiting jobs' index by kind too: leases name the kinds they run.
        job_queued_by_kind_index!(),
    ],
};
