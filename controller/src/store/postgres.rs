//! The shared backend: a PostgreSQL database that many controllers write
//! at once (tokio-postgres). The store's API is synchronous (the run
//! thread and the commands call it), so this backend owns a one-thread
//! runtime and blocks on it; the connection's task runs while a call
//! waits. Concurrency: each run is one transaction; series rows are made
//! with `INSERT .. ON CONFLICT DO NOTHING`, so two controllers recording
//! the first run of a series at once both end up with the same row;
//! migrations take an advisory lock.

use std::collections::HashMap;
use std::error::Error;

use tokio_postgres::types::private::BytesMut;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::db::{pg_sql, Db, DbError, DbResult, Dialect, Row, Val};
use crate::db::{connect_postgres, error_chain, PgError};

/// `pg_advisory_xact_lock` key of lnst's migrations ("LNST" in ASCII).
const MIGRATION_LOCK: i64 = 0x4c4e_5354;

pub struct Postgres {
    rt: tokio::runtime::Runtime,
    client: Client,
    statements: HashMap<String, Statement>,
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::I64(i) => match *ty {
                Type::INT4 => (i32::try_from(*i)?).to_sql(ty, out),
                Type::INT2 => (i16::try_from(*i)?).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Val::F64(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => f.to_sql(ty, out),
            },
            Val::Text(t) => t.as_str().to_sql(ty, out),
            Val::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn err(e: tokio_postgres::Error) -> DbError {
    let unique = e.as_db_error().is_some_and(|d| d.code().code() == "23505");
    DbError {
        msg: error_chain(&e),
        unique_violation: unique,
    }
}

impl Postgres {
    /// Connects (errors name the URL and what to check: [`PgError`]).
    pub fn connect(url: &str) -> Result<Postgres, PgError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PgError::Other {
                url: crate::db::redact_password(url),
                reason: format!("cannot start a runtime: {e}"),
            })?;
        let client = rt.block_on(connect_postgres(url))?;
        Ok(Postgres {
            rt,
            client,
            statements: HashMap::new(),
        })
    }

    fn statement(&mut self, sql: &str) -> DbResult<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let st = self
            .rt
            .block_on(self.client.prepare(&pg_sql(sql)))
            .map_err(err)?;
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

fn params(p: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn value(row: &tokio_postgres::Row, i: usize) -> DbResult<Val> {
    let ty = row.columns()[i].type_().clone();
    let g = |e: tokio_postgres::Error| err(e);
    Ok(match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(g)?.into(),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(g)?
            .map(i64::from)
            .into(),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map_err(g)?
            .map(i64::from)
            .into(),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(g)?.into(),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)
            .map_err(g)?
            .map(f64::from)
            .into(),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map_err(g)?
            .map(i64::from)
            .into(),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map_err(g)?.into(),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
            row.try_get::<_, Option<String>>(i).map_err(g)?.into()
        }
        other => return Err(DbError::new(format!("column {i}: unexpected type {other}"))),
    })
}

impl Db for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn exec(&mut self, sql: &str, p: &[Val]) -> DbResult<u64> {
        let st = self.statement(sql)?;
        self.rt
            .block_on(self.client.execute(&st, &params(p)))
            .map_err(err)
    }

    fn batch(&mut self, sql: &str) -> DbResult<()> {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .map_err(err)
    }

    fn query(&mut self, sql: &str, p: &[Val]) -> DbResult<Vec<Row>> {
        let st = self.statement(sql)?;
        let rows = self
            .rt
            .block_on(self.client.query(&st, &params(p)))
            .map_err(err)?;
        rows.iter()
            .map(|r| (0..r.len()).map(|i| value(r, i)).collect())
            .collect()
    }

    fn begin(&mut self) -> DbResult<()> {
        self.batch("BEGIN")
    }

    fn commit(&mut self) -> DbResult<()> {
        self.batch("COMMIT")
    }

    fn rollback(&mut self) -> DbResult<()> {
        self.batch("ROLLBACK")
    }

    fn lock_for_migration(&mut self) -> DbResult<()> {
        self.exec(
            "SELECT pg_advisory_xact_lock(?1)",
            &[Val::I64(MIGRATION_LOCK)],
        )
        .map(|_| ())
    }

    fn tables(&mut self) -> DbResult<Vec<String>> {
        Ok(self
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
                &[],
            )?
            .into_iter()
            .map(|r| r[0].string())
            .collect())
    }
}
