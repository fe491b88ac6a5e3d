//! The queue: a request waits until the scheduling step grants it all its
//! machines at once, highest priority first, then in order of arrival.
//!
//! [`step`] runs in one transaction under an advisory lock, by whichever
//! controller calls it (a new request, a release, a waiter woken by a
//! notification or its poll): it expires leases that were not refreshed
//! (their machines become dirty), withdraws waiters that stopped
//! refreshing, then walks the queue in order and grants each request
//! whose machines are free and healthy. It stops at the first request it
//! cannot grant, so nothing overtakes a request ahead of it. Grants are
//! rows of `hold` (one holder per machine, by its primary key) and a
//! `NOTIFY`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::mapper::{self, Mapping, Requirements};
use crate::pool::{Machine, Pool};

use super::{ReserveError, CHANNEL};

/// Advisory lock of the scheduling step.
const STEP_LOCK: i64 = 0x6c6e_7374_7374_6570;

/// What a request asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Want {
    /// A recipe's requirements, mapped onto free machines at grant time.
    #[serde(default)]
    pub requirements: Option<Requirements>,
    /// Exactly these machines.
    #[serde(default)]
    pub machines: Option<Vec<String>>,
    /// Only machines among these (a run's pool directory).
    #[serde(default)]
    pub within: Option<Vec<String>>,
}

/// A request to queue.
#[derive(Debug, Clone)]
pub struct Request {
    /// `run` (the controller refreshes the lease) or `person`.
    pub kind: &'static str,
    /// Who asks: `user@host pid N`.
    pub who: String,
    /// For what: the recipe, or `hosts m1, m2`.
    pub what: String,
    pub priority: i32,
    pub want: Want,
    /// How long a grant lasts without a refresh.
    pub lease: Duration,
}

/// A request's state as the database has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub state: String,
    /// The fencing token of a grant.
    pub fence: Option<i64>,
    pub machines: Vec<String>,
    pub mapping: Option<Mapping>,
}

/// What one scheduling step did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stepped {
    pub granted: Vec<i64>,
    pub expired: Vec<i64>,
    /// Machines now dirty (their holder's lease expired), all of them.
    pub dirty: Vec<String>,
}

/// Which machines `want` gets from the `free` ones, and the mapping.
pub fn fit(want: &Want, free: &[Machine]) -> Option<(Vec<String>, Option<Mapping>)> {
    if let Some(ms) = &want.machines {
        let ids: BTreeSet<&str> = free.iter().map(|m| m.id.as_str()).collect();
        return ms
            .iter()
            .all(|m| ids.contains(m.as_str()))
            .then(|| (ms.clone(), None));
    }
    let req = want.requirements.as_ref()?;
    let pool = Pool {
        machines: free
            .iter()
            .filter(|m| want.within.as_ref().is_none_or(|w| w.contains(&m.id)))
            .cloned()
            .collect(),
    };
    let mapping = mapper::map_first(req, &pool).ok()?;
    let mut ids: Vec<String> = mapping.values().map(|h| h.machine.clone()).collect();
    ids.sort();
    ids.dedup();
    Some((ids, Some(mapping)))
}

async fn machines(
    c: &impl tokio_postgres::GenericClient,
    sql: &str,
) -> Result<Vec<Machine>, ReserveError> {
    let rows = c.query(sql, &[]).await?;
    Ok(rows
        .iter()
        .filter_map(|r| serde_json::from_str::<Machine>(r.get::<_, &str>(1)).ok())
        .collect())
}

/// The machines waiting for their agents to report an empty journal.
async fn dirty_machines(
    c: &impl tokio_postgres::GenericClient,
) -> Result<Vec<String>, ReserveError> {
    let rows = c
        .query(
            "SELECT id FROM lnst_pool.machine WHERE state = 'dirty' ORDER BY id",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Queues `r` (state `waiting`). Exit-2 errors first: machines that do
/// not exist, requirements no registered machine meets (ignoring who
/// holds what), so a request that can never be granted never blocks the
/// queue. Returns the request's id.
pub async fn submit(c: &Client, r: &Request) -> Result<i64, ReserveError> {
    let all = machines(c, "SELECT id, spec FROM lnst_pool.machine ORDER BY id").await?;
    if let Some(ms) = &r.want.machines {
        let unknown: Vec<&str> = ms
            .iter()
            .filter(|m| !all.iter().any(|x| &x.id == *m))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(ReserveError::Usage(format!(
                "no such machine{} registered: {} (registered: {})",
                if unknown.len() == 1 { "" } else { "s" },
                unknown.join(", "),
                all.iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if fit(&r.want, &all).is_none() {
        let why = match (&r.want.requirements, &r.want.within) {
            (Some(req), w) => {
                let pool = Pool {
                    machines: all
                        .iter()
                        .filter(|m| w.as_ref().is_none_or(|w| w.contains(&m.id)))
                        .cloned()
                        .collect(),
                };
                mapper::map_first(req, &pool)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            }
            _ => String::new(),
        };
        return Err(ReserveError::Usage(format!(
            "{}: no registered machines can ever satisfy it: {why}",
            r.what
        )));
    }
    let want = serde_json::to_string(&r.want).map_err(|e| ReserveError::Sql(e.to_string()))?;
    let secs = r.lease.as_secs_f64();
    let row = c
        .query_one(
            "INSERT INTO lnst_pool.reservation
                 (kind, who, what, priority, want, state, lease_secs, lease_until)
             VALUES ($1, $2, $3, $4, $5, 'waiting', $6,
                     clock_timestamp() + make_interval(secs => $6))
             RETURNING id",
            &[&r.kind, &r.who, &r.what, &r.priority, &want, &secs],
        )
        .await?;
    Ok(row.get(0))
}

/// The scheduling step (see the module doc).
pub async fn step(c: &mut Client) -> Result<Stepped, ReserveError> {
    let tx = c.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&STEP_LOCK])
        .await?;
    let expired: Vec<i64> = tx
        .query(
            "UPDATE lnst_pool.reservation SET state = 'expired', ended = clock_timestamp()
             WHERE state = 'granted' AND lease_until < clock_timestamp() RETURNING id",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Stepped {
        expired,
        ..Default::default()
    };
    if !out.expired.is_empty() {
        tx.execute(
            "UPDATE lnst_pool.machine SET state = 'dirty', dirty_since = clock_timestamp()
             WHERE id IN (SELECT machine FROM lnst_pool.hold WHERE reservation = ANY($1))",
            &[&out.expired],
        )
        .await?;
        tx.execute(
            "DELETE FROM lnst_pool.hold WHERE reservation = ANY($1)",
            &[&out.expired],
        )
        .await?;
    }
    tx.execute(
        "UPDATE lnst_pool.reservation SET state = 'abandoned', ended = clock_timestamp()
         WHERE state = 'waiting' AND lease_until < clock_timestamp()",
        &[],
    )
    .await?;
    let mut free = machines(
        &tx,
        "SELECT id, spec FROM lnst_pool.machine m
         WHERE state = 'healthy'
           AND NOT EXISTS (SELECT 1 FROM lnst_pool.hold h WHERE h.machine = m.id)
         ORDER BY id",
    )
    .await?;
    let queue = tx
        .query(
            "SELECT id, want FROM lnst_pool.reservation
             WHERE state = 'waiting' ORDER BY priority DESC, id",
            &[],
        )
        .await?;
    for q in &queue {
        let id: i64 = q.get(0);
        let want: Want = match serde_json::from_str(q.get::<_, &str>(1)) {
            Ok(w) => w,
            Err(_) => continue,
        };
        let Some((ids, mapping)) = fit(&want, &free) else {
            // Nothing overtakes the head of the queue.
            break;
        };
        tx.execute(
            "INSERT INTO lnst_pool.hold (machine, reservation) SELECT unnest($1::text[]), $2",
            &[&ids, &id],
        )
        .await?;
        let mapping = mapping.map(|m| serde_json::to_string(&m).unwrap_or_default());
        tx.execute(
            "UPDATE lnst_pool.reservation
             SET state = 'granted', machines = $2, mapping = $3, granted = clock_timestamp(),
                 fence = nextval('lnst_pool.fence'),
                 lease_until = clock_timestamp() + make_interval(secs => lease_secs)
             WHERE id = $1",
            &[&id, &ids, &mapping],
        )
        .await?;
        free.retain(|m| !ids.contains(&m.id));
        out.granted.push(id);
    }
    out.dirty = dirty_machines(&tx).await?;
    if !out.granted.is_empty() || !out.expired.is_empty() {
        let payload = out
            .granted
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await?;
    }
    tx.commit().await?;
    Ok(out)
}

/// The state of request `id`.
pub async fn status(c: &Client, id: i64) -> Result<Status, ReserveError> {
    let row = c
        .query_opt(
            "SELECT state, coalesce(machines, '{}'), mapping, fence
             FROM lnst_pool.reservation WHERE id = $1",
            &[&id],
        )
        .await?
        .ok_or_else(|| ReserveError::Sql(format!("reservation #{id} is gone")))?;
    Ok(Status {
        state: row.get(0),
        fence: row.get(3),
        machines: row.get(1),
        mapping: row
            .get::<_, Option<&str>>(2)
            .and_then(|m| serde_json::from_str(m).ok()),
    })
}

/// Extends the lease of `id` by its length from now; false when it is no
/// longer waiting or granted (it expired: the machines are not ours).
pub async fn refresh(c: &Client, id: i64) -> Result<bool, ReserveError> {
    let n = c
        .execute(
            "UPDATE lnst_pool.reservation
             SET lease_until = clock_timestamp() + make_interval(secs => lease_secs)
             WHERE id = $1 AND state IN ('waiting', 'granted')",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// Ends `id` (granted: `released`; waiting: `abandoned`), frees its
/// machines and runs a step so the next in the queue gets them at once.
pub async fn release(c: &mut Client, id: i64) -> Result<Stepped, ReserveError> {
    {
        // Under the step's lock: a release and a step touch the same rows
        // in different orders.
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&STEP_LOCK])
            .await?;
        tx.execute("DELETE FROM lnst_pool.hold WHERE reservation = $1", &[&id])
            .await?;
        tx.execute(
            "UPDATE lnst_pool.reservation
             SET state = CASE state WHEN 'waiting' THEN 'abandoned' ELSE 'released' END,
                 ended = clock_timestamp()
             WHERE id = $1 AND state IN ('waiting', 'granted')",
            &[&id],
        )
        .await?;
        tx.commit().await?;
    }
    step(c).await
}

/// A dirty machine whose agent reported an empty journal is healthy again.
pub async fn mark_healthy(c: &Client, machine: &str) -> Result<bool, ReserveError> {
    let n = c
        .execute(
            "UPDATE lnst_pool.machine SET state = 'healthy', dirty_since = NULL
             WHERE id = $1 AND state = 'dirty'",
            &[&machine],
        )
        .await?;
    if n == 1 {
        c.execute("SELECT pg_notify($1, '')", &[&CHANNEL]).await?;
    }
    Ok(n == 1)
}

/// Why request `id` waits, one line: its place in the queue and who holds
/// the machines it could use.
pub async fn why_waiting(c: &Client, id: i64) -> Result<String, ReserveError> {
    let ahead: i64 = c
        .query_one(
            "SELECT count(*) FROM lnst_pool.reservation q, lnst_pool.reservation me
             WHERE me.id = $1 AND q.state = 'waiting'
               AND (q.priority > me.priority OR (q.priority = me.priority AND q.id < me.id))",
            &[&id],
        )
        .await?
        .get(0);
    let held = c
        .query(
            "SELECT h.machine, r.id, r.who, r.what,
                    to_char(r.lease_until AT TIME ZONE 'UTC', 'HH24:MI:SS')
             FROM lnst_pool.hold h JOIN lnst_pool.reservation r ON r.id = h.reservation
             ORDER BY h.machine",
            &[],
        )
        .await?;
    let dirty = dirty_machines(c).await?;
    let mut parts = vec![format!("{ahead} request(s) ahead in the queue")];
    if !held.is_empty() {
        parts.push(format!(
            "held: {}",
            held.iter()
                .map(|r| format!(
                    "{} by #{} ({}, {}) until {} UTC",
                    r.get::<_, &str>(0),
                    r.get::<_, i64>(1),
                    r.get::<_, &str>(2),
                    r.get::<_, &str>(3),
                    r.get::<_, &str>(4)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if !dirty.is_empty() {
        parts.push(format!(
            "dirty (waiting for their agents to report a clean journal): {}",
            dirty.join(", ")
        ));
    }
    Ok(parts.join("; "))
}

/// Extends a person's granted reservation `id` to `lease` from now.
pub async fn renew(c: &Client, id: i64, lease: Duration) -> Result<String, ReserveError> {
    let secs = lease.as_secs_f64();
    let row = c
        .query_opt(
            "UPDATE lnst_pool.reservation
             SET lease_secs = $2, lease_until = clock_timestamp() + make_interval(secs => $2)
             WHERE id = $1 AND state = 'granted'
             RETURNING to_char(lease_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
            &[&id, &secs],
        )
        .await?
        .ok_or_else(|| ReserveError::Usage(format!("no granted reservation #{id} to renew")))?;
    Ok(row.get(0))
}

/// The granted or waiting reservations holding or asking for `machine`.
pub async fn holder_of(c: &Client, machine: &str) -> Result<Option<i64>, ReserveError> {
    Ok(c.query_opt(
        "SELECT reservation FROM lnst_pool.hold WHERE machine = $1",
        &[&machine],
    )
    .await?
    .map(|r| r.get(0)))
}

/// One line per machine and per live request, for `lnst-ctl status`.
pub async fn overview(c: &Client) -> Result<String, ReserveError> {
    use std::fmt::Write as _;
    let mut s = String::new();
    let rows = c
        .query(
            "SELECT m.id, m.state, r.id, r.kind, r.who, r.what,
                    to_char(r.granted AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    to_char(r.lease_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    to_char(m.dirty_since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
             FROM lnst_pool.machine m
             LEFT JOIN lnst_pool.hold h ON h.machine = m.id
             LEFT JOIN lnst_pool.reservation r ON r.id = h.reservation
             ORDER BY m.id",
            &[],
        )
        .await?;
    let _ = writeln!(s, "{:<16} {:<8} HOLDER", "MACHINE", "STATE");
    for r in &rows {
        let (id, state): (&str, &str) = (r.get(0), r.get(1));
        let holder = match r.get::<_, Option<i64>>(2) {
            Some(res) => format!(
                "#{res} {} {} ({}) since {} until {} UTC",
                r.get::<_, &str>(3),
                r.get::<_, &str>(4),
                r.get::<_, &str>(5),
                r.get::<_, Option<&str>>(6).unwrap_or("?"),
                r.get::<_, &str>(7)
            ),
            None if state == "dirty" => format!(
                "- (dirty since {} UTC: waiting for its agent to report a clean journal)",
                r.get::<_, Option<&str>>(8).unwrap_or("?")
            ),
            None => "-".to_string(),
        };
        let _ = writeln!(s, "{id:<16} {state:<8} {holder}");
    }
    let queue = c
        .query(
            "SELECT id, priority, kind, who, what,
                    to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
             FROM lnst_pool.reservation WHERE state = 'waiting'
             ORDER BY priority DESC, id",
            &[],
        )
        .await?;
    let _ = writeln!(s, "queue: {} waiting", queue.len());
    for (i, r) in queue.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {}. #{} priority {} {} {} ({}) since {} UTC",
            i + 1,
            r.get::<_, i64>(0),
            r.get::<_, i32>(1),
            r.get::<_, &str>(2),
            r.get::<_, &str>(3),
            r.get::<_, &str>(4),
            r.get::<_, &str>(5)
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapper::HostReq;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn machine(id: &str, role: &str) -> Machine {
        Machine {
            id: id.into(),
            address: format!("unix:/{id}"),
            params: BTreeMap::from([("role".to_string(), json!(role))]),
            nics: vec![],
            extra: BTreeMap::new(),
            file: Default::default(),
        }
    }

    fn req(roles: &[&str]) -> Requirements {
        Requirements {
            hosts: roles
                .iter()
                .enumerate()
                .map(|(i, r)| HostReq {
                    name: format!("h{i}"),
                    params: BTreeMap::from([("role".to_string(), json!(r))]),
                    nics: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn fit_by_ids_needs_every_machine_free() {
        let free = [machine("m1", "a"), machine("m2", "a")];
        let w = Want {
            machines: Some(vec!["m1".into(), "m2".into()]),
            ..Default::default()
        };
        assert_eq!(fit(&w, &free).unwrap().0, vec!["m1", "m2"]);
        assert!(fit(&w, &free[..1]).is_none());
    }

    #[test]
    fn fit_by_requirements_maps_onto_free_machines_within_the_pool() {
        let free = [machine("m1", "a"), machine("m2", "b"), machine("m3", "b")];
        let w = Want {
            requirements: Some(req(&["a", "b"])),
            ..Default::default()
        };
        let (ids, mapping) = fit(&w, &free).unwrap();
        assert_eq!(ids, vec!["m1", "m2"]);
        assert_eq!(mapping.unwrap()["h1"].machine, "m2");
        // Only machines of the requester's pool directory count.
        let within = Want {
            within: Some(vec!["m1".into(), "m3".into()]),
            ..w.clone()
        };
        assert_eq!(fit(&within, &free).unwrap().0, vec!["m1", "m3"]);
        assert!(fit(&w, &free[1..]).is_none(), "no free machine has role a");
    }

    #[test]
    fn want_round_trips_as_json() {
        let w = Want {
            requirements: Some(req(&["a"])),
            within: Some(vec!["m1".into()]),
            ..Default::default()
        };
        let s = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<Want>(&s).unwrap(), w);
    }
}
