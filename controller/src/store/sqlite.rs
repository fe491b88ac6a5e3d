//! The embedded backend: one SQLite file (rusqlite, SQLite compiled in).
//! WAL journal so `history` reads while a run writes, `synchronous=NORMAL`
//! (a committed run survives a crash of lnst-ctl; a power cut may lose the
//! last one, never corrupt the file), and a 10 s busy timeout so parallel
//! runs queue for the write lock instead of failing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};

use super::db::{Db, DbError, DbResult, Dialect, Row, Val};

/// How long a writer waits for another one before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Sqlite {
    conn: Connection,
    pub path: PathBuf,
}

impl ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::I64(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Val::F64(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Val::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Val::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn err(e: rusqlite::Error) -> DbError {
    let unique = matches!(
        &e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    );
    DbError {
        msg: e.to_string(),
        unique_violation: unique,
    }
}

impl Sqlite {
    /// Opens (creating it and its directory, mode 0700, if missing) the
    /// file. `create: false` opens an existing file only.
    pub fn open(path: &Path, create: bool) -> DbResult<Sqlite> {
        if create {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| DbError::new(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        conn.set_prepared_statement_cache_capacity(64);
        // The first statement that reads the file: a corrupt or foreign
        // file fails here ("file is not a database").
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        Ok(Sqlite {
            conn,
            path: path.to_owned(),
        })
    }
}

impl Db for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn exec(&mut self, sql: &str, params: &[Val]) -> DbResult<u64> {
        let mut st = self.conn.prepare_cached(sql).map_err(err)?;
        let n = st
            .execute(rusqlite::params_from_iter(params.iter()))
            .map_err(err)?;
        Ok(n as u64)
    }

    fn batch(&mut self, sql: &str) -> DbResult<()> {
        self.conn.execute_batch(sql).map_err(err)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> DbResult<Vec<Row>> {
        let mut st = self.conn.prepare_cached(sql).map_err(err)?;
        let n = st.column_count();
        let mut rows = st
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(err)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i).map_err(err)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(i) => Val::I64(i),
                    ValueRef::Real(f) => Val::F64(f),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Val::Blob(b.to_vec()),
                });
            }
            out.push(row);
        }
        Ok(out)
    }

    fn begin(&mut self) -> DbResult<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(err)
    }

    fn commit(&mut self) -> DbResult<()> {
        self.conn.execute_batch("COMMIT").map_err(err)
    }

    fn rollback(&mut self) -> DbResult<()> {
        self.conn.execute_batch("ROLLBACK").map_err(err)
    }

    fn lock_for_migration(&mut self) -> DbResult<()> {
        Ok(())
    }

    fn tables(&mut self) -> DbResult<Vec<String>> {
        Ok(self
            .query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                &[],
            )?
            .into_iter()
            .map(|r| r[0].string())
            .collect())
    }
}
