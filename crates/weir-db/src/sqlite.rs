//! Opening an embedded SQLite database the way every Weir store does: WAL journal, the
//! operator's [`Synchronous`] (by default `FULL`: an answered write survives a power cut),
//! temporary storage in memory, a busy timeout, and the component's migrations.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::{DbError, Migrations};

/// How long a statement waits for another connection's write lock before failing: long
/// enough for a batch commit of the job store's writer, short enough to report a stuck
/// process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How hard a commit waits for the disk (SQLite's `synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// Every commit is on the disk (the WAL is synced) before it is answered: an answered
    /// write survives `kill -9` and a power cut or kernel crash. The default: a job queue's
    /// user takes an accepted job to be kept.
    #[default]
    Full,
    /// A commit is in the operating system's cache when answered, synced at checkpoints:
    /// it survives `kill -9` of Weir, but a power cut or kernel crash may lose the last
    /// commits (never corrupt the file).
    Normal,
}

impl Synchronous {
    /// The pragma's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

impl std::str::FromStr for Synchronous {
    type Err = String;

    fn from_str(text: &str) -> Result<Synchronous, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(Synchronous::Full),
            "normal" => Ok(Synchronous::Normal),
            _ => Err("full (survives a power cut) or normal (survives kill -9)".to_string()),
        }
    }
}

/// Opens (creating if needed) the database at `path` with `synchronous`, and applies the
/// steps of `migrations` it lacks.
///
/// The version is read and the missing steps applied in one immediate (write-locked)
/// transaction, so two processes opening the same new file cannot both apply step 1.
pub fn open(
    path: &Path,
    migrations: &Migrations,
    synchronous: Synchronous,
) -> Result<Connection, DbError> {
    let mut db = Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", synchronous.as_str())?;
    // Temporary tables, sorts and savepoint sub-journals in memory, not in temporary files:
    // the job store's writer wraps each operation of a batch in a savepoint, and writing
    // its sub-journal to a file was a quarter of the writer's time on a batch enqueue.
    db.pragma_update(None, "temp_store", "MEMORY")?;
    db.busy_timeout(BUSY_TIMEOUT)?;
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    prepare_version_table(&tx, migrations.component)?;
    let current: i64 = tx.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_version WHERE component = ?1",
        [migrations.component],
        |row| row.get(0),
    )?;
    if current > migrations.latest() as i64 {
        return Err(DbError::NewerSchema {
            place: path.display().to_string(),
            component: migrations.component,
            found: current,
            known: migrations.latest(),
        });
    }
    for (index, sql) in migrations.steps.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (component, version) VALUES (?1, ?2)",
            rusqlite::params![migrations.component, index as i64 + 1],
        )?;
        tracing::info!(
            database = %path.display(),
            component = migrations.component,
            version = index + 1,
            "schema migrated"
        );
    }
    tx.commit()?;
    Ok(db)
}

/// Creates the version table, or upgrades one from before components had their own
/// versions. Each SQLite file then held one component's schema, so its rows belong to the
/// component opening it.
fn prepare_version_table(db: &Connection, component: &str) -> Result<(), DbError> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (component TEXT NOT NULL, version INTEGER NOT NULL)",
    )?;
    let has_component: Option<String> = db
        .query_row(
            "SELECT name FROM pragma_table_info('schema_version') WHERE name = 'component'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if has_component.is_none() {
        // The component's name is a constant of Weir's own code, never user input; SQLite
        // takes no parameter in a column default.
        debug_assert!(component
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_'));
        db.execute_batch(&format!(
            "ALTER TABLE schema_version ADD COLUMN component TEXT NOT NULL DEFAULT '{component}'"
        ))?;
        tracing::info!(
            component,
            "schema version table given per-component versions"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-db-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("t.db")
    }

    fn version(db: &Connection, component: &str) -> i64 {
        db.query_row(
            "SELECT coalesce(max(version), 0) FROM schema_version WHERE component = ?1",
            [component],
            |r| r.get(0),
        )
        .unwrap()
    }

    const V1: Migrations = Migrations {
        component: "alpha",
        steps: &["CREATE TABLE a (x INTEGER)"],
    };
    const V2: Migrations = Migrations {
        component: "alpha",
        steps: &["CREATE TABLE a (x INTEGER)", "CREATE TABLE b (y INTEGER)"],
    };

    #[test]
    fn migrations_apply_once_and_a_newer_file_is_refused() {
        let path = scratch("once");
        open(&path, &V1, Synchronous::Full).unwrap();
        open(&path, &V1, Synchronous::Full).expect("reopening applies nothing");
        let db = open(&path, &V2, Synchronous::Full).unwrap();
        assert_eq!(version(&db, "alpha"), 2);
        drop(db);
        let error = open(&path, &V1, Synchronous::Full).unwrap_err();
        assert!(
            error.to_string().contains("newer than this Weir knows"),
            "{error}"
        );
    }

    #[test]
    fn components_in_one_file_keep_their_own_versions() {
        let path = scratch("components");
        open(&path, &V2, Synchronous::Full).unwrap();
        let other = Migrations {
            component: "beta",
            steps: &["CREATE TABLE c (z INTEGER)"],
        };
        let db = open(&path, &other, Synchronous::Full).unwrap();
        assert_eq!(version(&db, "alpha"), 2);
        assert_eq!(version(&db, "beta"), 1);
    }

    #[test]
    fn a_version_table_without_components_belongs_to_the_component_opening_it() {
        let path = scratch("legacy");
        {
            let db = Connection::open(&path).unwrap();
            db.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL);
                 CREATE TABLE a (x INTEGER);
                 INSERT INTO schema_version (version) VALUES (1);",
            )
            .unwrap();
        }
        // Step 1 is not applied again (it would fail: table a exists); step 2 is.
        let db = open(&path, &V2, Synchronous::Full).unwrap();
        assert_eq!(version(&db, "alpha"), 2);
        db.execute("INSERT INTO b (y) VALUES (1)", []).unwrap();
    }

    #[test]
    fn the_synchronous_setting_is_applied() {
        let dir = std::env::temp_dir().join(format!("weir-db-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (setting, pragma) in [(Synchronous::Full, 2), (Synchronous::Normal, 1)] {
            let path = dir.join(format!("{}.db", setting.as_str()));
            let db = open(&path, &V1, setting).unwrap();
            let applied: i64 = db
                .query_row("PRAGMA synchronous", [], |row| row.get(0))
                .unwrap();
            assert_eq!(applied, pragma, "{setting:?}");
        }
        assert_eq!("Normal".parse(), Ok(Synchronous::Normal));
        assert!(
            "off".parse::<Synchronous>().is_err(),
            "OFF may corrupt: not offered"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
