//! `lnst-ctl pool sync --pool DIR --db URL`: registers the pool's machines
//! in the shared pool (RECIPES.md §13); changed files update their
//! machine, new ones are added. Machines are never removed here.

use std::path::Path;

use tokio::runtime::Handle;

use crate::exit::{Classify, ExitCode, Failure};
use crate::pool;
use crate::reserve::pg::PgPool;

use super::reserve::{pg_failure, pg_url};

pub fn exec(pool_dir: &Path, db: Option<&str>, rt: Handle) -> Result<ExitCode, Failure> {
    let url = pg_url(db)?;
    let p = pool::load_dir(pool_dir).usage()?;
    let (added, updated, same) = rt
        .block_on(async {
            let mut pg = PgPool::open(&url).await?;
            pg.sync(&p).await
        })
        .map_err(pg_failure)?;
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    println!(
        "pool {}: {} added ({}), {} updated ({}), {same} unchanged",
        pool_dir.display(),
        added.len(),
        list(&added),
        updated.len(),
        list(&updated)
    );
    Ok(ExitCode::Pass)
}
