//! `lnst-ctl reserve --pool DIR [HOST..|RECIPE] --for 2h`: holds machines
//! of the shared pool for a person (RECIPES.md §13). Queues like a run,
//! waits for the grant (Ctrl-C withdraws the request), prints what it got
//! and until when, and leaves it held after exiting: the lease is the
//! time asked for, `--renew ID` extends it, `lnst-ctl release` ends it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::runtime::Handle;

use crate::db::DbTarget;
use crate::exit::{Classify, ExitCode, Failure};
use crate::recipe::{self, Cancel};
use crate::reserve::pg::{hold, queue, PgPool, ReserveError};
use crate::{commands::auth_for, pool};

use super::ReserveArgs;

/// The PostgreSQL URL of `--db`/`LNST_DB`; anything else is exit 2.
pub fn pg_url(db: Option<&str>) -> Result<String, Failure> {
    match DbTarget::resolve(db) {
        DbTarget::Postgres(u) => Ok(u),
        DbTarget::Sqlite(p) => Err(Failure::new(
            ExitCode::Usage,
            anyhow!(
                "the shared pool needs a PostgreSQL database: give --db postgres://USER@HOST/DB \
                 (or LNST_DB); {} is an embedded SQLite file",
                p.display()
            ),
        )),
    }
}

/// A reservation error with its exit status: 2 for the request, 3 for
/// the database, 130 for Ctrl-C.
pub fn pg_failure(e: ReserveError) -> Failure {
    match e {
        ReserveError::Usage(_) => Failure::new(ExitCode::Usage, e),
        ReserveError::Interrupted => Failure::new(ExitCode::Interrupted, e),
        ReserveError::Connect(_) | ReserveError::Sql(_) => Failure::new(
            ExitCode::Infra,
            anyhow!(e).context("shared pool; nothing was reserved or released"),
        ),
    }
}

/// `2h`, `30m`, `90s`, `1h30m`, `45` (seconds).
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let mut total = 0.0;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num
            .parse()
            .with_context(|| format!("bad duration {s:?}: write 2h, 30m, 90s or 1h30m"))?;
        num.clear();
        total += n * match c {
            'd' => 86400.0,
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => bail!("bad duration {s:?}: unit {c:?}; write 2h, 30m, 90s or 1h30m"),
        };
    }
    if !num.is_empty() {
        total += num
            .parse::<f64>()
            .with_context(|| format!("bad duration {s:?}"))?;
    }
    if total <= 0.0 {
        bail!("bad duration {s:?}: must be more than 0");
    }
    Ok(Duration::from_secs_f64(total))
}

pub fn exec(a: ReserveArgs, rt: Handle, cancel: Cancel) -> Result<ExitCode, Failure> {
    let url = pg_url(a.db.as_deref())?;
    let lease = parse_duration(&a.r#for).usage()?;
    if let Some(id) = a.renew {
        let until = rt
            .block_on(async {
                let pg = PgPool::open(&url).await?;
                queue::renew(&pg.client, id, lease).await
            })
            .map_err(pg_failure)?;
        println!("reservation #{id} renewed until {until} UTC");
        return Ok(ExitCode::Pass);
    }
    let p = pool::load_dir(&a.pool).usage()?;
    let want = match a.targets.as_slice() {
        [] => {
            return Err(Failure::new(
                ExitCode::Usage,
                anyhow!(
                "name the machines to reserve (HOST..) or a recipe whose requirements say which"
            ),
            ))
        }
        [r] if r.ends_with(".rhai") => {
            let path = PathBuf::from(r);
            let sink: recipe::engine::LogSink = std::rc::Rc::new(|_| {});
            let l = recipe::load(&path, &BTreeMap::new(), sink, cancel.clone()).usage()?;
            queue::Want {
                requirements: Some(l.declared.requirements),
                within: Some(p.machines.iter().map(|m| m.id.clone()).collect()),
                ..Default::default()
            }
        }
        hosts => queue::Want {
            machines: Some(hosts.to_vec()),
            ..Default::default()
        },
    };
    let what = a.targets.join(" ");
    let req = queue::Request {
        kind: "person",
        who: crate::client::controller_identity().replace("lnst-ctl ", ""),
        what: a.note.clone().unwrap_or(what),
        priority: a.priority,
        want,
        lease,
    };
    let all: Vec<&pool::Machine> = p.machines.iter().collect();
    let auths = auth_for(&a.auth, &all).unwrap_or_default();
    let mut on_wait = |w: &str| eprintln!("lnst-ctl: reserve: {w}");
    let held = hold::acquire(
        &rt,
        &url,
        req,
        Some(&p),
        &auths,
        false,
        &cancel,
        &mut on_wait,
    )
    .map_err(pg_failure)?;
    let machines = held.machines.join(", ");
    let id = held.keep();
    let until = std::time::SystemTime::now() + lease;
    let secs = until
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    println!(
        "reserved {machines} as #{id} until {} UTC; `lnst-ctl release {id}` gives them back, \
         `lnst-ctl reserve --renew {id} --for DURATION` extends it",
        crate::report::rundir::stamp(secs)
    );
    Ok(ExitCode::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
