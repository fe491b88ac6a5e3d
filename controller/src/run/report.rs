//! Stage 7, report: the [`RunReport`] of the run, written to the run
//! directory as `summary.json` and `junit.xml`. [`after_run`] is where
//! anything else that wants the finished report (a results store, more
//! files in the run directory) hooks in. Printing is the caller's: a
//! single run prints this report, a suite prints its combined summary.

use std::fs;
use std::path::Path;

use crate::report::{self, json, junit, RunReport, Verdict};
use crate::store::hook::RunHook;

use super::cleanup::CleanedUp;
use super::load::Recipe;
use super::log::Log;
use super::map::Mapped;
use super::test::Tested;

/// Assembles the report.
pub fn report(
    r: &Recipe,
    m: &Mapped,
    t: Tested,
    c: CleanedUp,
    dir: &Path,
    duration: f64,
) -> RunReport {
    let mut cleanup_errors = t.cleanup_errors;
    cleanup_errors.extend(c.errors);
    let result = report::overall(t.matches.iter().map(|x| &x.result));
    RunReport {
        recipe: r.file.clone(),
        params: r.params.clone(),
        result: if t.matches.is_empty() {
            Verdict::Error
        } else {
            result
        },
        matches: t.matches,
        pool: m.pool_name.clone(),
        duration,
        rpcs: t.rpcs,
        run_dir: Some(dir.display().to_string()),
        lab: c.lab,
        lab_ms: c.lab_ms,
        cleanup_errors,
        insecure: m.insecure,
    }
}

/// Writes the report into the run directory and logs the verdict.
pub fn write(rep: &RunReport, dir: &Path, log: &Log) {
    let _ = fs::write(dir.join("summary.json"), json::render(rep) + "\n");
    let _ = fs::write(dir.join("junit.xml"), junit::render(rep));
    log.borrow_mut().line(format!(
        "result {} in {:.3} s",
        rep.result.as_str(),
        rep.duration
    ));
}

/// After the run, with its report: the place for whatever consumes a
/// finished run (recording it in the results store, extra files in the
/// run directory). Called once per recipe, for single runs and suites
/// alike, after [`write`] and before anything is printed.
pub fn after_run(rep: &RunReport, dir: &Path, log: &Log, store: RunHook) {
    // environment.json and run.json, then the run into the results store
    // (a store that fails is a warning; the run keeps its directory).
    store.finish();
    log.borrow_mut().line(format!(
        "{} {} recorded in {}",
        rep.recipe,
        rep.result.as_str(),
        dir.display()
    ));
}
