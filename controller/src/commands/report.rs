//! `lnst-ctl report RUN.. [-o FILE]`: one self-contained HTML page for one
//! or more runs (`report::html::page`), each a run directory or a run id
//! of the results store (`--db`), with every measurement drawn against
//! the history it was judged by in the store; `lnst-ctl report --history
//! RECIPE`: the recipe's history page (`report::html::history_page`) from
//! the results store, or, when the store has no run of it, from the run
//! directories under `--out` (default `./lnst-runs`). Prints the path of
//! the page written. Input that is neither a run directory nor a recorded
//! run, and an `-o` in a directory that does not exist, exit 2 with what
//! to do. A store that cannot be opened costs only the history.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::Args;

use crate::db::DbTarget;
use crate::exit::{Classify, ExitCode, Failure};
use crate::report::html::history::{recipe_file, HistoryModel, RunRow};
use crate::report::html::{history_page, model::ReportModel, page};
use crate::report::Verdict;
use crate::store::Store;

/// Earlier runs drawn behind each measurement, and per series on the
/// history page.
const HISTORY_RUNS: usize = 200;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run directories (`./lnst-runs/<time>-<recipe>/`) or run ids as
    /// `lnst-ctl history` prints them; several make one page with a
    /// section per run.
    #[arg(value_name = "RUN", value_hint = clap::ValueHint::DirPath, required_unless_present = "history")]
    pub runs: Vec<PathBuf>,
    /// The HTML file to write. Default: `report.html` inside the run
    /// directory for one RUN, `./lnst-report.html` for several,
    /// `./lnst-history-<recipe>.html` with --history.
    #[arg(short, long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    /// Write the history page of RECIPE (`perf_demo` or
    /// `recipes/perf_demo.rhai`) instead: its runs and every measurement
    /// series. Without a results store it reads the run directories under
    /// --out.
    #[arg(long, value_name = "RECIPE", conflicts_with = "runs")]
    pub history: Option<String>,
    /// Where --history looks for run directories when the results store
    /// has no run of the recipe (default ./lnst-runs, as `run --out`).
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub out: Option<PathBuf>,
    /// The results store (as for `run`): `postgres://…` or an SQLite
    /// file. Default: $LNST_DB, else ~/.local/share/lnst/results.db.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
}

pub fn exec(a: ReportArgs) -> Result<ExitCode, Failure> {
    let target = DbTarget::resolve(a.db.as_deref());
    let mut store = Store::open_existing(&target).map_err(|e| e.to_string());
    let (html, path) = if let Some(recipe) = &a.history {
        let base = a.out.clone().unwrap_or_else(|| PathBuf::from("lnst-runs"));
        let from_store = match store.as_mut() {
            Ok(s) => history_from_store(s, recipe),
            Err(_) => None,
        };
        let model = from_store
            .map(Ok)
            .unwrap_or_else(|| HistoryModel::from_run_dirs(&base, recipe))
            .with_context(|| {
                format!(
                    "no history for {recipe}: give the directory `lnst-ctl run --out` wrote to with --out"
                )
            })
            .usage()?;
        if model.runs.is_empty() {
            return Err(Failure::new(
                ExitCode::Usage,
                anyhow!(
                    "{}: no run of {} there; run it first, or point --out at where its runs are",
                    base.display(),
                    model.recipe
                ),
            ));
        }
        let path = a.output.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "lnst-history-{}.html",
                model.recipe.trim_end_matches(".rhai")
            ))
        });
        let dir = check_output(&path).usage()?;
        (history_page::render(&model, &dir), path)
    } else {
        let mut models = Vec::new();
        for run in &a.runs {
            models.push(run_model(run, &mut store)?);
        }
        let path = a.output.clone().unwrap_or_else(|| match a.runs.as_slice() {
            [one] => one.join("report.html"),
            _ => PathBuf::from("lnst-report.html"),
        });
        let dir = check_output(&path).usage()?;
        (page::render(&models, &dir), path)
    };
    write_atomic(&path, &html).infra()?;
    println!("{}", path.display());
    Ok(ExitCode::Pass)
}

/// The model of one RUN: a run directory as it is, else a run id looked
/// up in the store; with a store, each measurement's history up to that
/// run (the band it was judged against).
fn run_model(run: &Path, store: &mut Result<Store, String>) -> Result<ReportModel, Failure> {
    let dir = if run.is_dir() {
        run.to_path_buf()
    } else {
        let arg = run.display().to_string();
        let not_a_run = |why: String| {
            Failure::new(
                ExitCode::Usage,
                anyhow!("{arg} is not a run directory, and {why}; give a directory `lnst-ctl run` made or a run id from `lnst-ctl history`"),
            )
        };
        match store.as_mut() {
            Ok(s) => {
                s.resolve_run(&arg)
                    .map_err(|e| not_a_run(e.to_string()))?
                    .run_dir
            }
            Err(e) => return Err(not_a_run(format!("the results store cannot be read ({e})"))),
        }
    };
    let mut model = ReportModel::from_rundir(&dir).usage()?;
    if let Ok(s) = store.as_mut() {
        model.history = store_history(s, &dir);
    }
    Ok(model)
}

/// The history of every measurement of the run recorded from `dir`, each
/// up to (not including) that run; empty when the run is not recorded.
fn store_history(s: &mut Store, dir: &Path) -> Vec<crate::report::series::SeriesHistory> {
    let Ok(run) = s.resolve_run(&dir.display().to_string()) else {
        return Vec::new();
    };
    let Ok(ms) = s.measurements(run.id) else {
        return Vec::new();
    };
    ms.iter()
        .filter_map(|m| {
            s.series_history_before(&m.key, HISTORY_RUNS, Some(run.id))
                .map_err(|e| tracing::warn!("history of {}: {e}", m.key.measurement))
                .ok()
        })
        .collect()
}

/// A recipe's history page from the store; `None` when it has no run of
/// the recipe (the caller falls back to run directories).
fn history_from_store(s: &mut Store, recipe: &str) -> Option<HistoryModel> {
    let file = recipe_file(recipe);
    let mut runs: Vec<RunRow> = s
        .runs(Some(&file), HISTORY_RUNS)
        .ok()?
        .into_iter()
        .map(|r| RunRow {
            id: r.id.to_string(),
            started: Some(r.started),
            result: serde_json::from_value(serde_json::Value::String(r.result))
                .unwrap_or(Verdict::Error),
            params: serde_json::from_str(&r.params).unwrap_or_default(),
            duration: r.duration,
            run_dir: Some(r.run_dir),
        })
        .collect();
    if runs.is_empty() {
        return None;
    }
    runs.reverse();
    let series = s
        .series(Some(&file))
        .ok()?
        .iter()
        .filter_map(|(key, _)| s.series_history(key, HISTORY_RUNS).ok())
        .collect();
    Some(HistoryModel {
        recipe: file,
        source: format!("results store {}", s.target()),
        runs,
        series,
        skipped: Vec::new(),
    })
}

/// The directory the page goes into; an error naming it when it does not
/// exist (nothing is created behind the user's back).
fn check_output(path: &Path) -> anyhow::Result<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(anyhow!(
            "cannot write {}: directory {} does not exist; create it (mkdir -p) or choose another -o",
            path.display(),
            dir.display()
        ));
    }
    if path.is_dir() {
        return Err(anyhow!(
            "cannot write {}: it is a directory; give a file name such as {}",
            path.display(),
            path.join("report.html").display()
        ));
    }
    Ok(dir)
}

/// Writes through a temporary file beside `path` and renames it, so a
/// reader never sees half a page.
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.html".into());
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}", path.display())
    })
}
