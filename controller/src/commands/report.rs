//! `lnst-ctl report RUN.. [-o FILE]`: one self-contained HTML page for one
//! or more run directories (`report::html::page`); `lnst-ctl report
//! --history RECIPE`: the recipe's history page (`report::html::
//! history_page`), built — until the results store is wired in — from the
//! run directories under `--out` (default `./lnst-runs`). Prints the path
//! of the page written. Input that is not a run directory, and an `-o` in
//! a directory that does not exist, exit 2 with what to do.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use clap::Args;

use crate::exit::{Classify, ExitCode, Failure};
use crate::report::html::{history::HistoryModel, history_page, model::ReportModel, page};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run directories (`./lnst-runs/<time>-<recipe>/`); several make one
    /// page with a section per run.
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
    /// Where --history looks for run directories (default ./lnst-runs, as
    /// `run --out`).
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub out: Option<PathBuf>,
}

pub fn exec(a: ReportArgs) -> Result<ExitCode, Failure> {
    let (html, path) = if let Some(recipe) = &a.history {
        let base = a.out.clone().unwrap_or_else(|| PathBuf::from("lnst-runs"));
        let model = HistoryModel::from_run_dirs(&base, recipe)
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
        let models = a
            .runs
            .iter()
            .map(|r| ReportModel::from_rundir(r))
            .collect::<Result<Vec<_>, _>>()
            .usage()?;
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
