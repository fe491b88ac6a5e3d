//! Reservations on a shared PostgreSQL (RECIPES.md §13): no daemon of our
//! own. Every controller opens the same database, registers nothing but
//! its requests, and runs the scheduling step itself ([`queue::step`])
//! under a transaction-scoped advisory lock; a grant is announced with
//! `NOTIFY lnst_pool`, which waiting controllers `LISTEN` for.
//!
//! - [`schema.sql`](schema.sql): the tables (schema `lnst_pool`); one holder per
//!   machine is the primary key of `hold`, so double booking cannot be
//!   written;
//! - this file: opening the database, the listener, registering the pool
//!   (`pool sync`) and checking a run's pool files against the registry;
//! - [`queue`]: requests, the scheduling step, leases, release, status;
//! - [`hold`]: waiting for a grant, keeping the lease, healing dirty
//!   machines, giving the machines back.

pub mod hold;
pub mod queue;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use crate::db::{connect_postgres, redact_password, PgError};
use crate::pool::{Machine, Pool};

/// The tables, applied on open.
pub const SCHEMA: &str = include_str!("schema.sql");
/// Advisory lock serialising schema set-up.
const SCHEMA_LOCK: i64 = 0x6c6e_7374_706f_6f6c;
/// The notification channel for grants and releases.
pub const CHANNEL: &str = "lnst_pool";

/// Why a reservation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    /// The database cannot be reached or refused us (exit 3).
    #[error(transparent)]
    Connect(#[from] PgError),
    /// A statement failed (exit 3).
    #[error("PostgreSQL: {0}")]
    Sql(String),
    /// The request cannot be right: a pool file that disagrees with the
    /// registered machine, machines that do not exist, requirements no
    /// registered machine meets (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Ctrl-C while waiting; the request was withdrawn.
    #[error("interrupted while waiting for pool machines; the request was withdrawn")]
    Interrupted,
}

impl From<tokio_postgres::Error> for ReserveError {
    fn from(e: tokio_postgres::Error) -> Self {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(x) = src {
            s.push_str(": ");
            s.push_str(&x.to_string());
            src = x.source();
        }
        ReserveError::Sql(s)
    }
}

/// An open reservation database.
pub struct PgPool {
    /// The connection the scheduling step's transactions run on.
    pub client: Client,
    /// The URL with its password hidden, for messages.
    pub shown: String,
    url: String,
}

impl PgPool {
    /// Connects (errors say what to check) and makes sure the tables exist.
    pub async fn open(url: &str) -> Result<PgPool, ReserveError> {
        let mut client = connect_postgres(url).await?;
        // DDL only when the tables are missing: `CREATE INDEX IF NOT
        // EXISTS` takes a table lock even when the index exists, and that
        // deadlocked with other controllers' releases.
        if !have_schema(&client).await? {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                .await?;
            // Another controller may have made it while we waited.
            if !have_schema(&tx).await? {
                tx.batch_execute(SCHEMA).await?;
            }
            tx.commit().await?;
        }
        Ok(PgPool {
            client,
            shown: redact_password(url),
            url: url.to_string(),
        })
    }

    /// A second connection that `LISTEN`s on [`CHANNEL`]: notification
    /// payloads arrive on the receiver. Also usable for plain statements
    /// (lease refreshes) while the main connection waits.
    pub async fn listener(
        &self,
    ) -> Result<(Client, mpsc::UnboundedReceiver<String>), ReserveError> {
        let mut config: Config = self
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| ReserveError::Sql(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("lnst-ctl listener");
        let (client, mut conn) = config.connect(NoTls).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(m) = messages.next().await {
                match m {
                    Ok(AsyncMessage::Notification(n)) => {
                        let _ = tx.send(n.payload().to_string());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("PostgreSQL listener ended: {e}");
                        break;
                    }
                }
            }
        });
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        Ok((client, rx))
    }

    /// Registers every machine of `pool` (`lnst-ctl pool sync`): new ones
    /// are added, changed ones updated; returns (added, updated, same).
    pub async fn sync(
        &mut self,
        pool: &Pool,
    ) -> Result<(Vec<String>, Vec<String>, usize), ReserveError> {
        let tx = self.client.transaction().await?;
        let mut added = Vec::new();
        let mut updated = Vec::new();
        let mut same = 0;
        for m in &pool.machines {
            let spec = spec_of(m);
            let other: Option<String> = tx
                .query_opt(
                    "SELECT id FROM lnst_pool.machine WHERE address = $1 AND id <> $2",
                    &[&m.address, &m.id],
                )
                .await?
                .map(|r| r.get(0));
            if let Some(o) = other {
                return Err(ReserveError::Usage(format!(
                    "{}: address {} is already registered as machine {o}; one agent cannot be two machines",
                    m.file.display(),
                    m.address
                )));
            }
            let row = tx
                .query_opt("SELECT spec FROM lnst_pool.machine WHERE id = $1", &[&m.id])
                .await?;
            match row {
                None => {
                    tx.execute(
                        "INSERT INTO lnst_pool.machine (id, address, spec) VALUES ($1, $2, $3)",
                        &[&m.id, &m.address, &spec],
                    )
                    .await?;
                    added.push(m.id.clone());
                }
                Some(r) if r.get::<_, String>(0) != spec => {
                    tx.execute(
                        "UPDATE lnst_pool.machine SET address = $2, spec = $3 WHERE id = $1",
                        &[&m.id, &m.address, &spec],
                    )
                    .await?;
                    updated.push(m.id.clone());
                }
                Some(_) => same += 1,
            }
        }
        tx.commit().await?;
        Ok((added, updated, same))
    }

    /// Every machine of `pool` must be registered and its file must say
    /// what was registered (else exit 2, naming the file and the field).
    pub async fn check_pool(&self, pool: &Pool) -> Result<(), ReserveError> {
        let ids: Vec<String> = pool.machines.iter().map(|m| m.id.clone()).collect();
        let rows = self
            .client
            .query(
                "SELECT id, spec FROM lnst_pool.machine WHERE id = ANY($1)",
                &[&ids],
            )
            .await?;
        let registered: BTreeMap<String, String> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for m in &pool.machines {
            match registered.get(&m.id) {
                None => {
                    return Err(ReserveError::Usage(format!(
                        "{}: machine {} is not registered in {}; register the pool with \
                         `lnst-ctl pool sync --pool DIR --db URL`",
                        m.file.display(),
                        m.id,
                        self.shown
                    )))
                }
                Some(spec) if *spec != spec_of(m) => {
                    let theirs: Option<Machine> = serde_json::from_str(spec).ok();
                    let what = match theirs {
                        Some(t) if t.address != m.address => {
                            format!("address {} here, {} registered", m.address, t.address)
                        }
                        Some(t) if t.params != m.params => "its [params] differ".to_string(),
                        Some(t) if t.nics != m.nics => "its [[nic]] tables differ".to_string(),
                        _ => "its contents differ".to_string(),
                    };
                    return Err(ReserveError::Usage(format!(
                        "{}: disagrees with machine {} as registered in {} ({what}); \
                         if the file is right, run `lnst-ctl pool sync --pool DIR --db URL`",
                        m.file.display(),
                        m.id,
                        self.shown
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// `url` with its password hidden.
pub fn redact(url: &str) -> String {
    redact_password(url)
}

/// Whether the tables exist already.
async fn have_schema(c: &impl tokio_postgres::GenericClient) -> Result<bool, ReserveError> {
    Ok(c.query_one(
        "SELECT to_regclass('lnst_pool.hold') IS NOT NULL \
         AND to_regclass('lnst_pool.fence') IS NOT NULL",
        &[],
    )
    .await?
    .get(0))
}

/// What is registered for a machine: its pool file as JSON, without the
/// file's path (two pool directories may describe one machine).
pub fn spec_of(m: &Machine) -> String {
    let mut m = m.clone();
    m.file = Default::default();
    serde_json::to_string(&m).unwrap_or_default()
}
