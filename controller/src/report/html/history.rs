//! A recipe's history page model ([`HistoryModel`]): its runs (id, start,
//! result, params, duration), oldest first, and each measurement series
//! as [`SeriesHistory`] — the type the results store returns.
//!
//! `lnst-ctl report --history` builds it from the results store
//! (`commands/report.rs`); when the store holds no run of the recipe,
//! [`HistoryModel::from_run_dirs`] is the **fallback**: it reads the `summary.json` of every run directory of the
//! recipe under one base directory (`--out`, default `./lnst-runs`). It
//! knows only what run directories hold: each point's verdict is the
//! result line's own (or its `evaluation.verdict` when the run recorded
//! one), no change points are detected and no baseline band is drawn —
//! that analysis is the store's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::model::{self, started_from_name, ModelError, Summary};
use crate::report::series::{HistoryPoint, SeriesHistory, SeriesKey};
use crate::report::Verdict;

/// One run in a recipe's history.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// The run id (the run directory's name, or the store's id).
    pub id: String,
    /// RFC 3339 UTC.
    pub started: Option<String>,
    pub result: Verdict,
    pub params: Map<String, Value>,
    pub duration: f64,
    /// Where its run directory is, when known.
    pub run_dir: Option<PathBuf>,
}

/// What a recipe's history page shows.
#[derive(Debug, Clone)]
pub struct HistoryModel {
    /// The recipe's file name (`perf_demo.rhai`).
    pub recipe: String,
    /// Where the data came from, shown on the page.
    pub source: String,
    /// Oldest first.
    pub runs: Vec<RunRow>,
    /// One per measurement series (params, roles, measurement, metric).
    pub series: Vec<SeriesHistory>,
    /// Directories that looked like runs of the recipe but could not be
    /// read (path and why), shown on the page rather than hidden.
    pub skipped: Vec<String>,
}

/// `perf_demo`, `perf_demo.rhai` or `recipes/perf_demo.rhai` →
/// `perf_demo.rhai`, as `summary.json` names it.
pub fn recipe_file(recipe: &str) -> String {
    let name = Path::new(recipe)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| recipe.to_string());
    if name.ends_with(".rhai") {
        name
    } else {
        format!("{name}.rhai")
    }
}

/// Params as the series key spells them: canonical JSON, keys sorted.
pub fn canonical_params(p: &Map<String, Value>) -> String {
    let sorted: BTreeMap<&String, &Value> = p.iter().collect();
    serde_json::to_string(&sorted).unwrap_or_default()
}

impl HistoryModel {
    /// The fallback without a results store: every run directory of
    /// `recipe` directly under `base`. A missing `base` is an error naming
    /// it; unreadable runs are listed in [`HistoryModel::skipped`].
    pub fn from_run_dirs(base: &Path, recipe: &str) -> Result<HistoryModel, ModelError> {
        let file = recipe_file(recipe);
        let stem = file.trim_end_matches(".rhai").to_string();
        let entries = std::fs::read_dir(base).map_err(|source| ModelError::Read {
            path: base.to_path_buf(),
            error: source,
        })?;
        let mut skipped = Vec::new();
        let mut found: Vec<(RunRow, Summary)> = Vec::new();
        for e in entries.flatten() {
            let dir = e.path();
            if !dir.join("summary.json").is_file() {
                continue;
            }
            let id = e.file_name().to_string_lossy().into_owned();
            let summary: Summary = match model::read_json(&dir, "summary.json") {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(err) => {
                    // Only complain about directories named for this recipe.
                    if id.ends_with(&format!("-{stem}")) || id.contains(&format!("-{stem}.")) {
                        skipped.push(err.to_string());
                    }
                    continue;
                }
            };
            if summary.recipe != file {
                continue;
            }
            let params = model::read_json::<Map<String, Value>>(&dir, "params.json")
                .ok()
                .flatten()
                .unwrap_or_else(|| summary.params.clone());
            found.push((
                RunRow {
                    started: summary.started.clone().or_else(|| started_from_name(&id)),
                    id,
                    result: summary.result,
                    params,
                    duration: summary.duration,
                    run_dir: Some(dir),
                },
                summary,
            ));
        }
        found.sort_by(|a, b| (&a.0.started, &a.0.id).cmp(&(&b.0.started, &b.0.id)));
        let mut series: BTreeMap<SeriesKey, SeriesHistory> = BTreeMap::new();
        for (run, summary) in &found {
            for m in &summary.matches {
                let role = m
                    .mapping
                    .iter()
                    .map(|(h, hm)| format!("{h}={}", hm.machine))
                    .collect::<Vec<_>>()
                    .join(",");
                for r in &m.results {
                    let Some(me) = model::measurement(r) else {
                        continue;
                    };
                    let key = SeriesKey {
                        recipe: file.clone(),
                        params: canonical_params(&run.params),
                        role: role.clone(),
                        measurement: me.desc.clone(),
                        metric: me.metric.clone(),
                    };
                    let entry = series.entry(key.clone()).or_insert_with(|| SeriesHistory {
                        key,
                        unit: me.unit.clone(),
                        points: Vec::new(),
                        baseline: None,
                    });
                    entry.points.push(HistoryPoint {
                        run_id: run.id.clone(),
                        started: run.started.clone().unwrap_or_default(),
                        mean: me.mean,
                        samples: me.samples.clone(),
                        verdict: me
                            .evaluation
                            .clone()
                            .unwrap_or_else(|| me.result.as_str().to_string()),
                        change_point: false,
                    });
                }
            }
        }
        Ok(HistoryModel {
            recipe: file,
            source: format!(
                "run directories under {} (fallback without a results store: no baselines or change points)",
                base.display()
            ),
            runs: found.into_iter().map(|(r, _)| r).collect(),
            series: series.into_values().collect(),
            skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_names() {
        assert_eq!(recipe_file("perf_demo"), "perf_demo.rhai");
        assert_eq!(recipe_file("recipes/perf_demo.rhai"), "perf_demo.rhai");
    }

    #[test]
    fn params_are_canonical() {
        let mut m = Map::new();
        m.insert("z".into(), 1.into());
        m.insert("a".into(), "x".into());
        assert_eq!(canonical_params(&m), r#"{"a":"x","z":1}"#);
    }
}
