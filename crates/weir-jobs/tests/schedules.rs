//! Periodic jobs through the service: a due schedule fires once and moves to its next
//! slot; a new schedule starts at its next match, not at once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use weir_jobs::{
    Jobs, JobsConfig, ListQuery, NewJob, Schedule, SqliteStore, Store, StoreOptions, Timestamp,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_schedule_fires_once_and_a_new_one_waits_for_its_slot() {
    let dir = std::env::temp_dir().join(format!("weir-schedules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("jobs.db"), StoreOptions::default()).unwrap());
    let payload = RawValue::from_string("{}".into()).unwrap();
    let schedule = |name: &str, queue: &str| Schedule {
        name: name.into(),
        // Yearly: no slot can come round again while the test runs.
        cron: "0 0 1 1 *".parse().unwrap(),
        job: NewJob::new(queue, "tick", payload.clone()),
    };
    // `overdue` was due a minute ago (the cluster was down); `fresh` was never seen.
    let a_minute_ago = Timestamp(Timestamp::now().0 - 60_000);
    store
        .start_schedule("overdue".into(), a_minute_ago)
        .await
        .unwrap();
    let jobs = Jobs::new(
        Arc::clone(&store),
        JobsConfig {
            rescue_interval: Duration::from_millis(50),
            schedules: vec![schedule("overdue", "late"), schedule("fresh", "new")],
            ..JobsConfig::default()
        },
        None,
    );
    let stop = CancellationToken::new();
    let maintenance = tokio::spawn({
        let jobs = jobs.clone();
        let stop = stop.clone();
        async move { jobs.maintain(stop).await }
    });
    // Several maintenance rounds pass.
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.cancel();
    maintenance.await.unwrap();

    let late = jobs
        .list(ListQuery {
            queue: Some("late".into()),
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        late.len(),
        1,
        "the missed slot fires once, not once per round"
    );
    let next = store.schedule_due("overdue".into()).await.unwrap().unwrap();
    assert!(next > Timestamp::now(), "moved to its next slot");
    assert_eq!(next.0 % 60_000, 0, "on a minute boundary");

    let fresh = jobs
        .list(ListQuery {
            queue: Some("new".into()),
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert!(fresh.is_empty(), "a new schedule does not fire at start-up");
    assert!(store.schedule_due("fresh".into()).await.unwrap().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
