//! The JSON summary (`--json` on stdout and `summary.json`), RECIPES.md §9.

use super::RunReport;

/// Pretty JSON of the whole run.
pub fn render(r: &RunReport) -> String {
    serde_json::to_string_pretty(r)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode summary: {e}\"}}"))
}
