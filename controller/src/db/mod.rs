//! Where the controller keeps what outlives a run: the results store
//! (RECIPES.md §12) and, on PostgreSQL, the shared pool's reservations
//! (§13). This module only says *which* database and opens the connection;
//! the schemas live with their users (`store`, the reservation scheduler).
//!
//! - No `--db` and no `LNST_DB`: the embedded SQLite file in the user's data
//!   directory, `$XDG_DATA_HOME/lnst/results.db` (default
//!   `~/.local/share/lnst/results.db`).
//! - `--db postgres://…` / `postgresql://…` (or the same in `LNST_DB`): a
//!   shared PostgreSQL. A unix-socket server is reached with
//!   `postgres://user@%2Frun%2Fpostgresql/db` or the key=value form
//!   `host=/run/postgresql user=… dbname=…`.
//! - `--db sqlite:PATH` or a plain path: that SQLite file.

mod postgres;

pub use postgres::{connect_postgres, error_chain, PgError};

/// The throwaway PostgreSQL of the tests (one server per test process).
#[cfg(test)]
pub(crate) use postgres::test_pg;

use std::fmt;
use std::path::PathBuf;

/// The environment variable that names the database when `--db` is absent.
pub const DB_ENV: &str = "LNST_DB";

/// Which database a command uses.
#[derive(Clone, PartialEq, Eq)]
pub enum DbTarget {
    /// An embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (URL or key=value form).
    Postgres(String),
}

impl DbTarget {
    /// `--db` if given, else `LNST_DB`, else the embedded default.
    pub fn resolve(flag: Option<&str>) -> DbTarget {
        let env = std::env::var(DB_ENV).ok().filter(|s| !s.trim().is_empty());
        match flag.map(str::to_owned).or(env) {
            Some(s) => DbTarget::parse(&s),
            None => DbTarget::Sqlite(default_sqlite_path()),
        }
    }

    /// Reads a `--db` value: a PostgreSQL URL or key=value string, else an
    /// SQLite path (with or without `sqlite:`).
    pub fn parse(s: &str) -> DbTarget {
        let t = s.trim();
        if t.starts_with("postgres://")
            || t.starts_with("postgresql://")
            || (t.contains('=') && (t.contains("host=") || t.contains("dbname=")))
        {
            return DbTarget::Postgres(t.to_owned());
        }
        let path = t
            .strip_prefix("sqlite://")
            .or_else(|| t.strip_prefix("sqlite:"))
            .unwrap_or(t);
        DbTarget::Sqlite(PathBuf::from(path))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, DbTarget::Postgres(_))
    }
}

/// Shown in messages: a PostgreSQL URL without its password.
impl fmt::Display for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbTarget::Sqlite(p) => write!(f, "{}", p.display()),
            DbTarget::Postgres(s) => f.write_str(&redact_password(s)),
        }
    }
}

impl fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbTarget({self})")
    }
}

/// `$XDG_DATA_HOME/lnst/results.db`, else `~/.local/share/lnst/results.db`.
pub fn default_sqlite_path() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/root".into());
            home.join(".local/share")
        });
    base.join("lnst").join("results.db")
}

/// `postgres://u:secret@h/db` → `postgres://u:***@h/db`; `password=x` → `password=***`.
pub fn redact_password(s: &str) -> String {
    if let Some(rest) = s.split_once("://").map(|(_, r)| r) {
        if let Some((auth, _)) = rest.split_once('@') {
            if let Some((user, _pw)) = auth.split_once(':') {
                let scheme = &s[..s.len() - rest.len()];
                let after = &rest[auth.len()..];
                return format!("{scheme}{user}:***{after}");
            }
        }
        return s.to_owned();
    }
    s.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***".to_owned()
            } else {
                kv.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_tells_postgres_from_sqlite() {
        assert!(DbTarget::parse("postgres://u@h/db").is_postgres());
        assert!(DbTarget::parse("postgresql://u@%2Ftmp/db").is_postgres());
        assert!(DbTarget::parse("host=/tmp dbname=lnst user=x").is_postgres());
        assert_eq!(
            DbTarget::parse("sqlite:/tmp/r.db"),
            DbTarget::Sqlite("/tmp/r.db".into())
        );
        assert_eq!(
            DbTarget::parse("/tmp/r.db"),
            DbTarget::Sqlite("/tmp/r.db".into())
        );
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_password("postgres://u:s3cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_password("host=h password=s3cret dbname=d"),
            "host=h password=*** dbname=d"
        );
        assert!(!DbTarget::parse("postgres://u:pw@h/db")
            .to_string()
            .contains("pw"));
    }
}
