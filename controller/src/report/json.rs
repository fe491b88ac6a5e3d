//! The JSON summary (`--json` on stdout and `summary.json`), RECIPES.md §9.
//! Adds `lnst_version` (the controller's version) after the run's fields,
//! so a report or a store reading the run directory later knows which
//! lnst produced it.

use serde::Serialize;

use super::RunReport;

#[derive(Serialize)]
struct Versioned<'a> {
    #[serde(flatten)]
    run: &'a RunReport,
    lnst_version: &'static str,
}

/// Pretty JSON of the whole run.
pub fn render(r: &RunReport) -> String {
    serde_json::to_string_pretty(&Versioned {
        run: r,
        lnst_version: env!("CARGO_PKG_VERSION"),
    })
    .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode summary: {e}\"}}"))
}
