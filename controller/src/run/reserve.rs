//! Stage 3, reservation: before any pool machine is contacted, the run
//! holds every machine it will use, all at once. With a PostgreSQL `--db`
//! it queues in the shared pool ([`crate::reserve::pg`]) and uses the
//! mapping the scheduler grants; otherwise it takes the local lock of each
//! machine ([`crate::reserve::local`]): when some are held by another run
//! it first looks for another match on the free machines, and if there is
//! none it waits, saying for which machines and who holds them, until
//! they are free or Ctrl-C. Labs are built for the run and need neither.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use crate::exit::{Classify, ExitCode, Failure};
use crate::mapper;
use crate::pool::Pool;
use crate::recipe::Cancel;
use crate::reserve::local::{default_dir, Busy, Held, LocalLocks};
use crate::reserve::pg::{self, hold, queue, ReserveError};

use super::load::Recipe;
use super::log::Log;
use super::map::{auths, Mapped};
use super::Options;

/// How often a waiting run looks again.
const POLL: Duration = Duration::from_millis(200);

/// What the run holds until it ends (released on drop).
pub struct Reservation {
    pub local: Option<Held>,
    pub shared: Option<hold::Held>,
}

/// Locks the machines of `m` (pool runs only), re-mapping onto free
/// machines when the first match's are busy.
pub fn reserve(
    r: &Recipe,
    m: &mut Mapped,
    o: &Options,
    log: &Log,
    rt: &tokio::runtime::Handle,
    cancel: &Cancel,
) -> Result<Reservation, Failure> {
    if o.pool.is_none() {
        return Ok(Reservation {
            local: None,
            shared: None,
        });
    }
    if let crate::db::DbTarget::Postgres(url) = &o.db {
        return shared(r, m, o, url, log, rt, cancel);
    }
    let dir = default_dir();
    let locks = LocalLocks::open(&dir)
        .with_context(|| format!("cannot create the lock directory {}", dir.display()))
        .infra()?;
    let who = format!(
        "pid {} ({} on {}) since {} UTC",
        std::process::id(),
        r.file,
        m.pool_name,
        crate::report::rundir::stamp(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        )
    );
    let t0 = Instant::now();
    let mut said: Option<String> = None;
    loop {
        if cancel.is_cancelled() {
            return Err(Failure::new(
                ExitCode::Interrupted,
                anyhow!("interrupted while waiting for pool machines"),
            ));
        }
        // One match: any match on the free machines will do.
        if !o.all_matches {
            if let Some(other) = free_match(r, &m.pool, &locks) {
                if other != m.mappings[0] {
                    m.mappings = vec![other];
                    m.auths = auths(m, o)?;
                }
            }
        }
        let want = addresses(m);
        match locks.try_lock_all(&want, &who) {
            Ok(held) => {
                let line = format!(
                    "locked pool machines {} ({})",
                    held.machines().join(", "),
                    dir.display()
                );
                if said.is_some() {
                    eprintln!(
                        "lnst-ctl: {}: got pool machines {} after {:.1} s",
                        r.file,
                        held.machines().join(", "),
                        t0.elapsed().as_secs_f64()
                    );
                }
                log.borrow_mut().line(line);
                return Ok(Reservation {
                    local: Some(held),
                    shared: None,
                });
            }
            Err(Busy { machine, holder }) => {
                // Taken between the probe and the lock: another free match
                // may exist now, try it before saying we wait.
                if !o.all_matches {
                    if let Some(other) = free_match(r, &m.pool, &locks) {
                        if other != m.mappings[0] {
                            continue;
                        }
                    }
                }
                let msg = format!(
                    "{}: waiting for pool machine{} {}: {machine} is held by {holder}",
                    r.file,
                    if want.len() == 1 { "" } else { "s" },
                    want.iter()
                        .map(|(id, _)| id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                if said.as_deref() != Some(msg.as_str()) {
                    eprintln!("lnst-ctl: {msg}");
                    log.borrow_mut().line(msg.clone());
                    said = Some(msg);
                }
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Reserves on the shared pool at `url`: one request for the recipe's
/// requirements among this pool directory's machines (or, with
/// `--all-matches`, for every machine the matches use), granted whole.
fn shared(
    r: &Recipe,
    m: &mut Mapped,
    o: &Options,
    url: &str,
    log: &Log,
    rt: &tokio::runtime::Handle,
    cancel: &Cancel,
) -> Result<Reservation, Failure> {
    let want = if o.all_matches {
        queue::Want {
            machines: Some(m.machines()),
            ..Default::default()
        }
    } else {
        queue::Want {
            requirements: Some(r.loaded.declared.requirements.clone()),
            within: Some(m.pool.machines.iter().map(|x| x.id.clone()).collect()),
            ..Default::default()
        }
    };
    let req = queue::Request {
        kind: "run",
        who: crate::client::controller_identity(),
        what: format!("{} on {}", r.file, m.pool_name),
        priority: o.priority,
        want,
        lease: o.lease,
    };
    // Dirty machines of this pool are probed with the run's credentials;
    // without them (TCP and no key) they are left to another controller.
    let all: Vec<&crate::pool::Machine> = m.pool.machines.iter().collect();
    let probe_auths = crate::commands::auth_for(&o.auth, &all).unwrap_or_default();
    let file = r.file.clone();
    let mut on_wait = |w: &str| {
        eprintln!("lnst-ctl: {file}: {w}");
        log.borrow_mut().line(w.to_string());
    };
    let held = hold::acquire(
        rt,
        url,
        req,
        Some(&m.pool),
        &probe_auths,
        true,
        cancel,
        &mut on_wait,
    )
    .map_err(|e| match e {
        ReserveError::Usage(_) => Failure::new(ExitCode::Usage, anyhow!(e)),
        ReserveError::Interrupted => Failure::new(ExitCode::Interrupted, anyhow!(e)),
        ReserveError::Connect(_) | ReserveError::Sql(_) => Failure::new(
            ExitCode::Infra,
            anyhow!(e).context("cannot reserve pool machines; nothing was reserved"),
        ),
    })?;
    if let Some(mp) = held.mapping.clone() {
        if m.mappings.first() != Some(&mp) {
            m.mappings = vec![mp];
            m.auths = auths(m, o)?;
        }
    }
    m.fence = Some(held.fence);
    log.borrow_mut().line(format!(
        "reserved pool machines {} as #{} (fencing token {}) in {} after {:.3} s",
        held.machines.join(", "),
        held.id,
        held.fence,
        pg::redact(url),
        held.waited.as_secs_f64()
    ));
    Ok(Reservation {
        local: None,
        shared: Some(held),
    })
}

/// `(machine id, agent address)` of every machine the mappings use.
fn addresses(m: &Mapped) -> Vec<(String, String)> {
    m.machines()
        .into_iter()
        .map(|id| {
            let addr = m
                .pool
                .machines
                .iter()
                .find(|x| x.id == id)
                .map(|x| x.address.clone())
                .unwrap_or_default();
            (id, addr)
        })
        .collect()
}

/// The first match onto machines nobody holds right now, if any.
fn free_match(r: &Recipe, pool: &Pool, locks: &LocalLocks) -> Option<mapper::Mapping> {
    let free = Pool {
        machines: pool
            .machines
            .iter()
            .filter(|x| locks.is_free(&x.address))
            .cloned()
            .collect(),
    };
    mapper::map_first(&r.loaded.declared.requirements, &free).ok()
}
