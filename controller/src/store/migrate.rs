//! Versioned migrations, one SQL file per version and dialect in `sql/`.
//! Each runs in its own transaction together with the version bump, so a
//! migration interrupted half-way leaves the schema as it was. Before
//! anything is written, the database is checked: empty (made from
//! scratch), lnst's (migrated up to [`LATEST`]), from a newer lnst
//! (refused: this build does not know its tables), or another
//! application's (refused, untouched).

use super::db::{in_tx, Db, DbError, Dialect, Val};

/// One schema step: `sql/<dialect>/NNNN_<name>.sql`.
struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("sql/sqlite/0001_init.sql"),
        postgres: include_str!("sql/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "environments_per_match",
        sqlite: include_str!("sql/sqlite/0002_environments_per_match.sql"),
        postgres: include_str!("sql/postgres/0002_environments_per_match.sql"),
    },
];

/// The schema this build writes and reads.
pub const LATEST: i64 = 2;

/// Marks the database as lnst's (`lnst_meta.app`).
pub const APP: &str = "lnst results store";

/// Why the schema could not be brought up to date.
#[derive(Debug)]
pub enum MigrateError {
    /// The database has tables, none of them lnst's.
    Foreign(Vec<String>),
    /// Written by a newer lnst.
    TooNew(i64),
    Db(DbError),
}

impl From<DbError> for MigrateError {
    fn from(e: DbError) -> Self {
        MigrateError::Db(e)
    }
}

/// The schema version recorded in the database; 0 for an empty one.
pub fn version(db: &mut dyn Db) -> Result<i64, MigrateError> {
    let tables = db.tables()?;
    if !tables.iter().any(|t| t == "lnst_meta") {
        if tables.is_empty() {
            return Ok(0);
        }
        return Err(MigrateError::Foreign(tables));
    }
    let rows = db.query(
        "SELECT key, value FROM lnst_meta WHERE key IN ('app', 'schema_version')",
        &[],
    )?;
    let get = |k: &str| {
        rows.iter()
            .find(|r| r[0].text() == Some(k))
            .map(|r| r[1].string())
    };
    if get("app").as_deref() != Some(APP) {
        return Err(MigrateError::Foreign(tables));
    }
    Ok(get("schema_version")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Brings the schema up to [`LATEST`]; returns the version found before.
pub fn migrate(db: &mut dyn Db) -> Result<i64, MigrateError> {
    migrate_to(db, LATEST)
}

/// Brings the schema up to `target` (tests make older stores with it).
pub(crate) fn migrate_to(db: &mut dyn Db, target: i64) -> Result<i64, MigrateError> {
    let found = version(db)?;
    if found > LATEST {
        return Err(MigrateError::TooNew(found));
    }
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > found && m.version <= target)
    {
        let r = in_tx(db, |db| {
            db.lock_for_migration()?;
            // Another controller may have migrated while we waited.
            let now = match version(db) {
                Ok(v) => v,
                Err(MigrateError::Db(e)) => return Err(e),
                Err(_) => return Err(DbError::new("the database changed while migrating")),
            };
            if now >= m.version {
                return Ok(());
            }
            db.batch(match db.dialect() {
                Dialect::Sqlite => m.sqlite,
                Dialect::Postgres => m.postgres,
            })?;
            let applied = super::record::rfc3339(super::record::now_unix());
            if m.version == 1 {
                db.exec(
                    "INSERT INTO lnst_meta (key, value) VALUES ('app', ?1)",
                    &[APP.into()],
                )?;
                db.exec(
                    "INSERT INTO lnst_meta (key, value) VALUES ('schema_version', '0')",
                    &[],
                )?;
            }
            db.exec(
                "UPDATE lnst_meta SET value = ?1 WHERE key = 'schema_version'",
                &[m.version.to_string().into()],
            )?;
            db.exec(
                "INSERT INTO lnst_migrations (version, name, applied) VALUES (?1, ?2, ?3)",
                &[Val::I64(m.version), m.name.into(), applied.into()],
            )?;
            Ok(())
        });
        r?;
    }
    Ok(found)
}
