//! `lnst-ctl import RUNDIR… [--db URL]`: records run directories left by
//! earlier runs (before the store existed, or while it was unreachable)
//! in the results store. A directory already recorded is left as it is; a
//! directory that is not a run directory is an error naming it, and the
//! others are still imported.

use std::path::PathBuf;

use anyhow::anyhow;

use crate::db::DbTarget;
use crate::exit::{ExitCode, Failure};
use crate::store::{Store, StoreError};

pub fn exec(dirs: &[PathBuf], db: Option<&str>) -> Result<ExitCode, Failure> {
    let target = DbTarget::resolve(db);
    let mut store = Store::open(&target).map_err(|e| Failure::new(ExitCode::Infra, anyhow!(e)))?;
    let mut bad = 0;
    for d in dirs {
        match store.import(d) {
            Ok((id, true)) => println!("imported {} as run {id}", d.display()),
            Ok((id, false)) => println!("{} is already recorded as run {id}", d.display()),
            Err(e @ StoreError::NotARunDir(_)) => {
                eprintln!("lnst-ctl: {e}");
                bad += 1;
            }
            Err(e) => return Err(Failure::new(ExitCode::Infra, anyhow!(e))),
        }
    }
    if bad > 0 {
        return Err(Failure::new(
            ExitCode::Usage,
            anyhow!(
                "{bad} of {} director{} not imported",
                dirs.len(),
                if dirs.len() == 1 { "y" } else { "ies" }
            ),
        ));
    }
    Ok(ExitCode::Pass)
}
