//! Holding machines for one run or one person: queue a request, wait for
//! the grant (woken by `NOTIFY`, polling once a second for expired
//! leases), keep the lease fresh, give the machines back. While waiting,
//! a controller also heals dirty machines of its pool: it asks each
//! agent whether its journal is empty and marks it healthy if so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lnst_common::secure::ClientAuth;
use lnst_common::{Request as AgentRequest, Response};
use tokio::runtime::Handle;
use tokio_postgres::Client;

use crate::client::{AgentAddr, AgentClient};
use crate::mapper::Mapping;
use crate::pool::Pool;
use crate::recipe::Cancel;

use super::queue::{self, Request};
use super::{PgPool, ReserveError};

/// How long a waiter sleeps without a notification before it runs the
/// step again (leases expire without anyone saying so).
const POLL: Duration = Duration::from_secs(1);

/// Granted machines, held until [`Held::release`] or drop.
pub struct Held {
    /// The reservation's id.
    pub id: i64,
    /// The grant's fencing token, sent to the agents in the hello.
    pub fence: u64,
    pub machines: Vec<String>,
    /// The mapping the scheduler chose (requests by requirements).
    pub mapping: Option<Mapping>,
    /// How long the request waited in the queue.
    pub waited: Duration,
    pg: Option<PgPool>,
    refresher: Option<tokio::task::JoinHandle<()>>,
    rt: Handle,
}

impl Held {
    /// Gives the machines back and lets the next request have them.
    pub fn release(mut self) -> Result<(), ReserveError> {
        self.release_now()
    }

    /// Leaves the machines held after this process ends (a person's
    /// reservation: its lease runs out by itself or `lnst-ctl release`).
    pub fn keep(mut self) -> i64 {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        self.pg = None;
        self.id
    }

    fn release_now(&mut self) -> Result<(), ReserveError> {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        let Some(mut pg) = self.pg.take() else {
            return Ok(());
        };
        let id = self.id;
        self.rt.block_on(async move {
            tokio::time::timeout(Duration::from_secs(10), queue::release(&mut pg.client, id))
                .await
                .map_err(|_| ReserveError::Sql(format!("releasing #{id} timed out")))?
                .map(|_| ())
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Err(e) = self.release_now() {
            eprintln!(
                "lnst-ctl: could not release reservation #{}: {e}; its lease expires by itself",
                self.id
            );
        }
    }
}

/// Keeps the lease of `id` fresh every third of `lease` until aborted.
fn refresher(aux: Arc<Client>, id: i64, lease: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = (lease / 3).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(every).await;
            match queue::refresh(&aux, id).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(id, "reservation lease lost (expired or released)");
                    eprintln!(
                        "lnst-ctl: WARNING: reservation #{id} expired; its agents will refuse \
                         this controller from now on"
                    );
                    return;
                }
                Err(e) => tracing::warn!(id, error = %e, "cannot refresh the lease"),
            }
        }
    })
}

/// Queues `req` and waits for its grant. `on_wait` hears why it waits
/// (each time the reason changes). `pool` and `auths`: the machines this
/// controller may probe when they are dirty. On Ctrl-C the request is
/// withdrawn. With `refresh` false (a person's reservation) the lease is
/// not refreshed: it lasts the time asked for.
#[allow(clippy::too_many_arguments)]
pub fn acquire(
    rt: &Handle,
    url: &str,
    req: Request,
    pool: Option<&Pool>,
    auths: &BTreeMap<String, Option<ClientAuth>>,
    refresh: bool,
    cancel: &Cancel,
    on_wait: &mut dyn FnMut(&str),
) -> Result<Held, ReserveError> {
    let t0 = Instant::now();
    rt.block_on(async {
        let mut pg = PgPool::open(url).await?;
        if let Some(p) = pool {
            pg.check_pool(p).await?;
        }
        let (aux, mut notes) = pg.listener().await?;
        let aux = Arc::new(aux);
        let id = queue::submit(&pg.client, &req).await?;
        let refresher = refresher(Arc::clone(&aux), id, req.lease);
        let st = match wait_for_grant(
            &mut pg,
            &mut notes,
            id,
            req.priority,
            pool,
            auths,
            cancel,
            on_wait,
        )
        .await
        {
            Ok(st) => st,
            Err(e) => {
                refresher.abort();
                let _ = queue::release(&mut pg.client, id).await;
                return Err(e);
            }
        };
        let refresher = if refresh {
            Some(refresher)
        } else {
            refresher.abort();
            None
        };
        Ok(Held {
            id,
            fence: st.fence.unwrap_or(0) as u64,
            machines: st.machines,
            mapping: st.mapping,
            waited: t0.elapsed(),
            pg: Some(pg),
            refresher,
            rt: rt.clone(),
        })
    })
}

/// Waits until request `id` is granted and returns its status. A grant
/// names the granted ids in its `NOTIFY`: a waiter not named goes back to
/// sleep without a query, so 20 waiters woken at once do not queue up
/// behind each other's scheduling steps; the one granted reads its status
/// at once. A step runs at the start, on a notification without ids (a
/// machine healed, a lease expired), and every [`POLL`] (leases expire
/// silently). `pool`/`auths`: dirty machines this controller may probe.
/// Errors leave the request in place (the caller withdraws it).
#[allow(clippy::too_many_arguments)]
pub async fn wait_for_grant(
    pg: &mut PgPool,
    notes: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    id: i64,
    priority: i32,
    pool: Option<&Pool>,
    auths: &BTreeMap<String, Option<ClientAuth>>,
    cancel: &Cancel,
    on_wait: &mut dyn FnMut(&str),
) -> Result<queue::Status, ReserveError> {
    let mut said = String::new();
    let mut stepped = Some(queue::step(&mut pg.client).await?);
    loop {
        let st = queue::status(&pg.client, id).await?;
        match st.state.as_str() {
            "granted" => return Ok(st),
            "waiting" => {}
            other => {
                return Err(ReserveError::Sql(format!(
                    "reservation #{id} became {other} while waiting"
                )))
            }
        }
        if let Some(s) = stepped.take() {
            if let Some(p) = pool {
                for m in s
                    .dirty
                    .iter()
                    .filter(|d| p.machines.iter().any(|x| &x.id == *d))
                {
                    if probe_clean(p, auths, m).await {
                        let _ = queue::mark_healthy(&pg.client, m).await;
                    }
                }
            }
            let why = format!(
                "waiting (reservation #{id}, priority {priority}): {}",
                queue::why_waiting(&pg.client, id).await?
            );
            if why != said {
                on_wait(&why);
                said = why;
            }
        }
        // Sleep until something concerns us.
        let mine = id.to_string();
        loop {
            tokio::select! {
                n = notes.recv() => match n {
                    Some(p) if p.split(',').any(|x| x == mine) => break,
                    // Granted to others: nothing changes for us.
                    Some(p) if !p.is_empty() => continue,
                    Some(_) => {
                        stepped = Some(queue::step(&mut pg.client).await?);
                        break;
                    }
                    None => return Err(ReserveError::Sql("the PostgreSQL listener connection ended".into())),
                },
                _ = tokio::time::sleep(POLL) => {
                    stepped = Some(queue::step(&mut pg.client).await?);
                    break;
                }
                _ = cancel.cancelled() => return Err(ReserveError::Interrupted),
            }
        }
    }
}

/// Whether the agent of dirty machine `id` reports an empty journal (it
/// must accept a session: a dead controller's session has ended there).
async fn probe_clean(pool: &Pool, auths: &BTreeMap<String, Option<ClientAuth>>, id: &str) -> bool {
    let Some(m) = pool.machines.iter().find(|m| m.id == id) else {
        return false;
    };
    let Ok(addr) = m.address.parse::<AgentAddr>() else {
        return false;
    };
    let auth = auths.get(id).cloned().flatten();
    let Ok(c) = AgentClient::connect_with(id, &addr, auth.as_ref()).await else {
        return false;
    };
    let clean = matches!(
        c.request(AgentRequest::JournalEmpty).await,
        Ok(Response::Bool(true))
    );
    let _ = c.close_waiting(true).await;
    if clean {
        tracing::info!(
            machine = id,
            "dirty machine's agent reports an empty journal"
        );
    }
    clean
}
