//! `lnst-ctl status`: the shared pool as the database has it — each
//! machine, its state and who holds it since when until when, then the
//! queue in the order it will be served.

use tokio::runtime::Handle;

use crate::exit::{ExitCode, Failure};
use crate::reserve::pg::{queue, PgPool};

use super::reserve::{pg_failure, pg_url};

pub fn exec(db: Option<&str>, rt: Handle) -> Result<ExitCode, Failure> {
    let url = pg_url(db)?;
    let text = rt
        .block_on(async {
            let mut pg = PgPool::open(&url).await?;
            // Expire what is due first, so the picture is current.
            queue::step(&mut pg.client).await?;
            queue::overview(&pg.client).await
        })
        .map_err(pg_failure)?;
    print!("{text}");
    Ok(ExitCode::Pass)
}
