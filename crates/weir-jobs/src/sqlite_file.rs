//! Opening an embedded SQLite database the way every Weir store does: WAL journal,
//! `synchronous = NORMAL` (a commit survives `kill -9` of Weir, not a power cut), a busy
//! timeout, and numbered migrations. Shared by the job store and the binary's durable-topic
//! store so both get the same guarantees.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

/// Opens (creating if needed) the database at `path` and applies the `migrations` it lacks.
///
/// Each entry of `migrations` moves the schema one version up. The version is read and the
/// missing entries applied in one immediate (write-locked) transaction, so two processes
/// opening the same new file cannot both apply migration 1.
pub fn open(path: &Path, migrations: &[&str]) -> Result<Connection, String> {
    let failed = |error: rusqlite::Error| error.to_string();
    let mut db = Connection::open(path).map_err(failed)?;
    db.pragma_update(None, "journal_mode", "WAL")
        .map_err(failed)?;
    db.pragma_update(None, "synchronous", "NORMAL")
        .map_err(failed)?;
    db.busy_timeout(Duration::from_secs(5)).map_err(failed)?;
    let tx = db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(failed)?;
    let current: i64 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_version",
            [],
            |row| row.get(0),
        )
        .map_err(failed)?;
    if current > migrations.len() as i64 {
        return Err(format!(
            "{} has schema version {current}, newer than this Weir knows ({}); use a newer Weir",
            path.display(),
            migrations.len()
        ));
    }
    for (index, sql) in migrations.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [index as i64 + 1],
        )
        .map_err(failed)?;
        tracing::info!(database = %path.display(), version = index + 1, "schema migrated");
    }
    tx.commit().map_err(failed)?;
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_a_newer_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("weir-sqlite-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let v1 = ["CREATE TABLE a (x INTEGER)"];
        let v2 = ["CREATE TABLE a (x INTEGER)", "CREATE TABLE b (y INTEGER)"];
        open(&path, &v1).unwrap();
        open(&path, &v1).expect("reopening applies nothing");
        let db = open(&path, &v2).unwrap();
        let version: i64 = db
            .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
        drop(db);
        let error = open(&path, &v1).unwrap_err();
        assert!(error.contains("newer than this Weir knows"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
