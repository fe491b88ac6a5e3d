//! `lnst-ctl api`: prints the recipe API reference.

use crate::exit::{ExitCode, Failure};
use crate::recipe::api::API;

pub fn exec() -> Result<ExitCode, Failure> {
    println!("lnst recipe API (RECIPES.md). Declaration phase first, then fn test(m).\n");
    for it in API {
        println!("{}\n    {}\n", it.sig, it.doc);
    }
    Ok(ExitCode::Pass)
}
