//! `lnst-ctl api`: prints the recipe API reference.

use std::io::Write;

use crate::exit::{ExitCode, Failure};
use crate::recipe::api::API;

pub fn exec() -> Result<ExitCode, Failure> {
    let mut text =
        String::from("lnst recipe API (RECIPES.md). Declaration phase first, then fn test(m).\n\n");
    for it in API {
        text.push_str(&format!("{}\n    {}\n\n", it.sig, it.doc));
    }
    // A reader that stops early (`lnst-ctl api | head`) is not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::from(
            anyhow::anyhow!("cannot write to stdout: {e}"),
        )),
        _ => Ok(ExitCode::Pass),
    }
}
