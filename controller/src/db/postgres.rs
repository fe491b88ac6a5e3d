//! Opening a PostgreSQL connection with errors a user can act on.

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use super::redact_password;

/// How long a connection attempt may take before it is an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a PostgreSQL database could not be used. Every message names the
/// database (password redacted) and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("--db {url}: not a PostgreSQL connection string ({reason}); write postgres://USER[:PASSWORD]@HOST[:PORT]/DB")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach PostgreSQL at {url}: {reason}; is the server running and is this the right host and port? (or leave out --db/LNST_DB to use the embedded store)")]
    Unreachable { url: String, reason: String },
    #[error("PostgreSQL at {url} refused the login: {reason}; check the user, password and database name in the URL, and pg_hba.conf on the server")]
    Refused { url: String, reason: String },
    #[error("PostgreSQL at {url}: {reason}")]
    Other { url: String, reason: String },
}

/// Connects and spawns the connection's task on the current runtime. The
/// task ends when the returned client is dropped.
pub async fn connect_postgres(url: &str) -> Result<Client, PgError> {
    let shown = redact_password(url);
    let mut config: Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| PgError::BadUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("lnst-ctl");
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| classify(&shown, e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

fn classify(url: &str, e: tokio_postgres::Error) -> PgError {
    let url = url.to_owned();
    let reason = error_chain(&e);
    if let Some(db) = e.as_db_error() {
        // Class 28: invalid authorization; 3D000: no such database.
        let code = db.code().code();
        if code.starts_with("28") || code == "3D000" {
            return PgError::Refused { url, reason };
        }
        return PgError::Other { url, reason };
    }
    // No server answer at all: refused, unreachable, timed out, no socket.
    PgError::Unreachable { url, reason }
}

/// The error with its causes (`tokio_postgres::Error`'s Display alone says
/// only "error connecting to server").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
#[path = "../../tests/support/postgres.rs"]
pub(crate) mod test_pg;

#[cfg(test)]
mod tests {
    use super::*;
    use test_pg::TestPostgres;

    #[tokio::test]
    async fn connects_and_queries_a_real_server() {
        let Some(pg) = TestPostgres::get() else {
            return;
        };
        let client = connect_postgres(&pg.new_db()).await.unwrap();
        let row = client.query_one("SELECT 1 + 1", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 2);
    }

    #[tokio::test]
    async fn a_server_that_is_down_says_so() {
        let e = connect_postgres(&TestPostgres::down_url())
            .await
            .unwrap_err();
        assert!(matches!(e, PgError::Unreachable { .. }), "{e:?}");
        assert!(e.to_string().contains("is the server running"), "{e}");
        assert!(e.to_string().contains("nonexistent-lnst-pg"), "{e}");
    }

    #[tokio::test]
    async fn a_refused_login_names_what_to_check() {
        let Some(pg) = TestPostgres::get() else {
            return;
        };
        let e = connect_postgres(&pg.url("no_such_database"))
            .await
            .unwrap_err();
        assert!(matches!(e, PgError::Refused { .. }), "{e:?}");
        assert!(e.to_string().contains("database name"), "{e}");
    }

    #[tokio::test]
    async fn a_malformed_url_is_a_usage_error() {
        let e = connect_postgres("postgres://u@h:notaport/db")
            .await
            .unwrap_err();
        assert!(matches!(e, PgError::BadUrl { .. }), "{e:?}");
    }
}
