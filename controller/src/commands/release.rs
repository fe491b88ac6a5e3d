//! `lnst-ctl release ID..|HOST..`: gives a shared-pool reservation back
//! (by its id, or by a machine it holds); the next request in the queue
//! is granted at once.

use anyhow::anyhow;
use tokio::runtime::Handle;

use crate::exit::{ExitCode, Failure};
use crate::reserve::pg::{queue, PgPool, ReserveError};

use super::reserve::{pg_failure, pg_url};

pub fn exec(targets: &[String], db: Option<&str>, rt: Handle) -> Result<ExitCode, Failure> {
    let url = pg_url(db)?;
    if targets.is_empty() {
        return Err(Failure::new(
            ExitCode::Usage,
            anyhow!("name a reservation id (`lnst-ctl status` lists them) or a machine it holds"),
        ));
    }
    let done = rt
        .block_on(async {
            let mut pg = PgPool::open(&url).await?;
            let mut done = Vec::new();
            for t in targets {
                let id = match t.trim_start_matches('#').parse::<i64>() {
                    Ok(id) => id,
                    Err(_) => queue::holder_of(&pg.client, t).await?.ok_or_else(|| {
                        ReserveError::Usage(format!("machine {t} is not held by any reservation"))
                    })?,
                };
                queue::release(&mut pg.client, id).await?;
                done.push(id);
            }
            Ok::<_, ReserveError>(done)
        })
        .map_err(pg_failure)?;
    for id in done {
        println!("released #{id}");
    }
    Ok(ExitCode::Pass)
}
