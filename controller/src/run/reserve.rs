//! Stage 3, reservation: before any pool machine is contacted, the run
//! takes the local lock of every machine it will use
//! ([`crate::reserve::local`]), all at once. When some are held by another
//! run it first looks for another match on the free machines; if there is
//! none it waits, saying for which machines and who holds them, until
//! they are free or Ctrl-C. Labs are built for the run and need no lock.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use crate::exit::{Classify, ExitCode, Failure};
use crate::mapper;
use crate::pool::Pool;
use crate::recipe::Cancel;
use crate::reserve::local::{default_dir, Busy, Held, LocalLocks};

use super::load::Recipe;
use super::log::Log;
use super::map::{auths, Mapped};
use super::Options;

/// How often a waiting run looks again.
const POLL: Duration = Duration::from_millis(200);

/// What the run holds until it ends (released on drop).
pub struct Reservation {
    pub local: Option<Held>,
}

/// Locks the machines of `m` (pool runs only), re-mapping onto free
/// machines when the first match's are busy.
pub fn reserve(
    r: &Recipe,
    m: &mut Mapped,
    o: &Options,
    log: &Log,
    cancel: &Cancel,
) -> Result<Reservation, Failure> {
    if o.pool.is_none() {
        return Ok(Reservation { local: None });
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
                return Ok(Reservation { local: Some(held) });
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
