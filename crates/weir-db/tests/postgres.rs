//! Migrations against a real PostgreSQL: `WEIR_TEST_DATABASE_URL` (scripts/test.sh starts
//! one); the tests fail, naming the variable, unless `WEIR_TEST_POSTGRES=skip`.

use weir_db::postgres::{migrate, Connector};
use weir_db::Migrations;

fn database_url() -> Option<String> {
    match std::env::var("WEIR_TEST_DATABASE_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("WEIR_TEST_POSTGRES").as_deref() == Ok("skip") => None,
        Err(_) => panic!(
            "WEIR_TEST_DATABASE_URL is not set: run scripts/test.sh (it starts PostgreSQL), \
             or set WEIR_TEST_POSTGRES=skip"
        ),
    }
}

async fn fresh_schema(url: &str, name: &str) -> Connector {
    let schema = format!("weir_db_{name}_{}", std::process::id());
    let admin = Connector::parse(url).unwrap().connect().await.unwrap();
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    let connector = Connector::parse(url).unwrap().in_schema(&schema).unwrap();
    connector.create_schema().await.unwrap();
    connector
}

async fn version(client: &tokio_postgres::Client, component: &str) -> i64 {
    client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_version WHERE component = $1",
            &[&component],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn components_migrate_independently_and_a_legacy_table_is_the_job_stores() {
    let Some(url) = database_url() else { return };
    let connector = fresh_schema(&url, "legacy").await;
    let mut client = connector.connect().await.unwrap();
    // A schema as the previous release left it: one version column, three job steps.
    client
        .batch_execute(
            "CREATE TABLE schema_version (version BIGINT NOT NULL);
             INSERT INTO schema_version (version) VALUES (1), (2), (3);
             CREATE TABLE pubsub_node (node BIGINT PRIMARY KEY);",
        )
        .await
        .unwrap();
    let relay = Migrations {
        component: "pubsub_relay",
        steps: &["CREATE TABLE IF NOT EXISTS pubsub_node (node BIGINT PRIMARY KEY)"],
    };
    migrate(&mut client, &relay).await.unwrap();
    assert_eq!(version(&client, "jobs").await, 3);
    assert_eq!(version(&client, "pubsub_relay").await, 1);
    let jobs = Migrations {
        component: "jobs",
        steps: &[
            "SELECT 1",
            "SELECT 1",
            "SELECT 1",
            "CREATE TABLE job_new (x INT)",
        ],
    };
    migrate(&mut client, &jobs).await.unwrap();
    assert_eq!(version(&client, "jobs").await, 4);
    client
        .batch_execute("INSERT INTO job_new VALUES (1)")
        .await
        .unwrap();
    let older = Migrations {
        component: "jobs",
        steps: &["SELECT 1"],
    };
    let error = migrate(&mut client, &older).await.unwrap_err();
    assert!(
        error.to_string().contains("newer than this Weir knows"),
        "{error}"
    );
}

#[tokio::test]
async fn nodes_starting_together_apply_each_step_once() {
    let Some(url) = database_url() else { return };
    let connector = fresh_schema(&url, "together").await;
    let steps = Migrations {
        component: "counted",
        steps: &["CREATE TABLE counted (x INT)"],
    };
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connector.connect().await.unwrap();
            migrate(&mut client, &steps).await
        }));
    }
    for task in tasks {
        task.await
            .unwrap()
            .expect("each node migrates or finds it done");
    }
    let client = connector.connect().await.unwrap();
    assert_eq!(version(&client, "counted").await, 1);
}

#[tokio::test]
async fn a_bad_schema_name_is_refused_before_connecting() {
    let error = Connector::parse("postgres://nobody@127.0.0.1:1/x")
        .unwrap()
        .in_schema("weir; DROP TABLE job")
        .unwrap_err();
    assert!(error.to_string().contains("lowercase letters"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_create_one_schema_without_failing() {
    let Some(url) = database_url() else { return };
    for round in 0..5 {
        let schema = format!("weir_db_together_{round}_{}", std::process::id());
        let admin = Connector::parse(&url).unwrap().connect().await.unwrap();
        admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .unwrap();
        let connector = Connector::parse(&url).unwrap().in_schema(&schema).unwrap();
        let starts: Vec<_> = (0..8)
            .map(|_| {
                let connector = connector.clone();
                tokio::spawn(async move { connector.create_schema().await })
            })
            .collect();
        for start in starts {
            start.await.unwrap().expect("every node starts");
        }
    }
}
