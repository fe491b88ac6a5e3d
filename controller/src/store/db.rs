//! The one trait both backends implement: plain SQL in, rows of [`Val`]
//! out, and explicit transactions. Everything above it (migrations,
//! recording, queries) is written once; the SQL is written with SQLite's
//! `?N` placeholders and [`pg_sql`] turns them into PostgreSQL's `$N`.

use std::fmt;

/// A column value or a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    I64(i64),
    F64(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Val {
    pub fn i64(&self) -> Option<i64> {
        match self {
            Val::I64(i) => Some(*i),
            Val::F64(f) => Some(*f as i64),
            Val::Text(t) => t.parse().ok(),
            _ => None,
        }
    }
    pub fn f64(&self) -> Option<f64> {
        match self {
            Val::F64(f) => Some(*f),
            Val::I64(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub fn text(&self) -> Option<&str> {
        match self {
            Val::Text(t) => Some(t),
            _ => None,
        }
    }
    pub fn string(&self) -> String {
        match self {
            Val::Text(t) => t.clone(),
            Val::I64(i) => i.to_string(),
            Val::F64(f) => f.to_string(),
            Val::Null => String::new(),
            Val::Blob(_) => "<blob>".into(),
        }
    }
    pub fn blob(&self) -> &[u8] {
        match self {
            Val::Blob(b) => b,
            _ => &[],
        }
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::I64(v)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Val {
        Val::F64(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}
impl From<Vec<u8>> for Val {
    fn from(v: Vec<u8>) -> Val {
        Val::Blob(v)
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

pub type Row = Vec<Val>;

/// A database error with the backend's own message.
#[derive(Debug)]
pub struct DbError {
    pub msg: String,
    /// A unique or primary-key constraint was violated.
    pub unique_violation: bool,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for DbError {}

impl DbError {
    pub fn new(msg: impl Into<String>) -> DbError {
        DbError {
            msg: msg.into(),
            unique_violation: false,
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// A connection to one backend. Statements are cached by their text.
pub trait Db: Send {
    /// `sqlite` or `postgres`: which schema files apply.
    fn dialect(&self) -> Dialect;
    /// Runs one statement; returns the rows it changed.
    fn exec(&mut self, sql: &str, params: &[Val]) -> DbResult<u64>;
    /// Runs several statements without parameters (schema files).
    fn batch(&mut self, sql: &str) -> DbResult<()>;
    /// Runs a query; every row as values in column order.
    fn query(&mut self, sql: &str, params: &[Val]) -> DbResult<Vec<Row>>;
    /// Starts a transaction that writes (SQLite: `BEGIN IMMEDIATE`, so two
    /// writers queue instead of failing on upgrade).
    fn begin(&mut self) -> DbResult<()>;
    fn commit(&mut self) -> DbResult<()>;
    fn rollback(&mut self) -> DbResult<()>;
    /// Serialises migrations between processes (PostgreSQL: an advisory
    /// lock held until the transaction ends; SQLite: the write lock of
    /// `BEGIN IMMEDIATE` already does it).
    fn lock_for_migration(&mut self) -> DbResult<()>;
    /// The tables of the database's own schema (to tell an empty database
    /// from one of another application).
    fn tables(&mut self) -> DbResult<Vec<String>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

/// `?1` → `$1` (PostgreSQL's placeholders). The SQL of this module has no
/// `?` inside string literals.
pub fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut it = sql.chars().peekable();
    while let Some(c) = it.next() {
        if c == '?' && it.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `f` in a write transaction: committed when it returns `Ok`, rolled
/// back otherwise (nothing half-written stays).
pub fn in_tx<T>(db: &mut dyn Db, f: impl FnOnce(&mut dyn Db) -> DbResult<T>) -> DbResult<T> {
    db.begin()?;
    match f(db) {
        Ok(v) => {
            db.commit()?;
            Ok(v)
        }
        Err(e) => {
            let _ = db.rollback();
            Err(e)
        }
    }
}

/// Samples as little-endian f64s: 8 bytes each, read back exactly.
pub fn samples_blob(s: &[f64]) -> Vec<u8> {
    s.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn blob_samples(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_blobs() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE b = ?1 AND c IN (?2, ?10)"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $10)"
        );
        let s = [1.5, -0.0, 1e300, f64::MIN_POSITIVE];
        assert_eq!(blob_samples(&samples_blob(&s)), s);
    }
}
