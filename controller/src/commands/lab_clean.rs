//! `lnst-ctl lab clean`: removes netns labs whose controller is gone.

use crate::exit::{ExitCode, Failure};
use crate::lab;

pub fn exec() -> Result<ExitCode, Failure> {
    let cleaned = lab::clean_stale();
    if cleaned.is_empty() {
        println!("no leftover labs under {}", lab::LABS_DIR);
    }
    for l in cleaned {
        println!("{l}");
    }
    Ok(ExitCode::Pass)
}
