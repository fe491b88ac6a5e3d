//! One recipe's run as a pipeline of named stages, each in its own file,
//! in the order they run:
//!
//! 1. [`load`]: params and the declaration phase;
//! 2. [`map`]: requirements onto the pool or the lab's stand-in pool;
//! 3. [`reserve`]: the pool machines locked for this run (or waited for);
//! 4. [`place`]: the run directory, then the lab or the pool's addresses;
//! 5. [`test`]: per match, connect, `test(m)`, end the session;
//! 6. [`cleanup`]: the lab torn down, the machines released;
//! 7. [`report`]: the report written, then [`report::after_run`].
//!
//! [`run_one`] composes them; `lnst-ctl run` calls it for one recipe and
//! [`suite`] for each recipe of a suite, possibly several at once (each
//! on its own OS thread: the Rhai engine is not `Send`). Stages 1–3 fail
//! with nothing created (exit 2 or 130); from stage 4 on, every path tears
//! the lab down and releases the machines.

pub mod cleanup;
pub mod load;
pub mod log;
pub mod map;
pub mod place;
pub mod report;
pub mod reserve;
pub mod suite;
pub mod test;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::anyhow;
use tokio::runtime::Handle;

use crate::commands::{AuthArgs, RunArgs};
use crate::exit::{ExitCode, Failure};
use crate::interact::progress::Progress;
use crate::lab::LabKind;
use crate::recipe::Cancel;
use crate::report::{RunReport, Verdict};
use crate::store::hook::RunHook;

pub use load::ParamScope;

/// How every recipe of a `run` command runs (the command line, resolved).
#[derive(Debug, Clone)]
pub struct Options {
    pub pool: Option<PathBuf>,
    pub lab_kind: LabKind,
    pub kernel: Option<String>,
    pub accel: Option<String>,
    pub all_matches: bool,
    /// Where run directories go.
    pub out: PathBuf,
    pub pause_on_fail: bool,
    /// The agent binary labs start.
    pub agent_bin: PathBuf,
    pub auth: AuthArgs,
    /// `-v`: the run log is echoed to stderr.
    pub verbose: u8,
    /// Which overrides a recipe must declare.
    pub params: ParamScope,
    /// A recipe of a suite: warnings that hold for every recipe were
    /// printed once by the suite.
    pub quiet: bool,
    /// The database (`--db`, else `LNST_DB`, else the embedded file): the
    /// results store, and on PostgreSQL also where pool machines are
    /// reserved (otherwise with local locks).
    pub db: crate::db::DbTarget,
    /// `--priority`: place in the shared pool's queue (higher first).
    pub priority: i32,
    /// A run's lease on its reserved machines (`LNST_POOL_LEASE_SECS`,
    /// default 30 s): refreshed every third of it while the run lives.
    pub lease: std::time::Duration,
}

impl Options {
    /// The options `args` give (`lab_kind` checked by the caller).
    pub fn from_args(a: &RunArgs, lab_kind: LabKind, verbose: u8) -> Options {
        Options {
            pool: a.pool.clone(),
            lab_kind,
            kernel: a.kernel.clone(),
            accel: a.accel.clone(),
            all_matches: a.all_matches,
            out: a.out.clone().unwrap_or_else(|| PathBuf::from("lnst-runs")),
            pause_on_fail: a.pause_on_fail,
            agent_bin: a.agent_bin.clone().unwrap_or_else(|| {
                std::env::current_exe()
                    .map(|p| p.with_file_name("lnst-agent"))
                    .unwrap_or_else(|_| PathBuf::from("lnst-agent"))
            }),
            auth: a.auth.clone(),
            verbose,
            params: ParamScope::Strict,
            quiet: false,
            db: crate::db::DbTarget::resolve(a.db.as_deref()),
            priority: a.priority,
            lease: std::time::Duration::from_secs_f64(
                std::env::var("LNST_POOL_LEASE_SECS")
                    .ok()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|s| *s > 0.0)
                    .unwrap_or(30.0),
            ),
        }
    }
}

/// A run that got as far as a report.
pub struct Finished {
    pub report: RunReport,
    pub dir: PathBuf,
    /// The infrastructure error that stopped it, if any (exit 3).
    pub infra: Option<String>,
    /// Ctrl-C arrived during the run (exit 130).
    pub interrupted: bool,
}

impl Finished {
    /// The exit status of this run: 130, 3 (with the error), 0 or 1.
    pub fn exit(&self) -> Result<ExitCode, Failure> {
        if self.interrupted {
            return Ok(ExitCode::Interrupted);
        }
        if let Some(e) = &self.infra {
            return Err(Failure::new(
                ExitCode::Infra,
                anyhow!("{e}; results so far are in {}", self.dir.display()),
            ));
        }
        Ok(if self.report.result == Verdict::Pass {
            ExitCode::Pass
        } else {
            ExitCode::Fail
        })
    }
}

/// Runs the recipe at `path` through every stage. `Err` when it stopped
/// before a report existed (usage, a lab that could not be built, Ctrl-C
/// while building); everything it created is gone again by then.
pub fn run_one(
    path: &Path,
    overrides: &BTreeMap<String, String>,
    o: &Options,
    progress: &mut Progress,
    rt: &Handle,
    cancel: &Cancel,
) -> Result<Finished, Failure> {
    let t0 = Instant::now();
    let log = log::RunLog::new(&load::recipe_label(path), o.verbose > 0, t0);
    let r = load::load(path, overrides, o.params, &log, cancel)?;
    let mut m = map::map(&r, o)?;
    let reservation = reserve::reserve(&r, &mut m, o, &log, rt, cancel)?;
    let dir = place::run_dir(path, &r, &m, o, &log)?;
    let store = RunHook::begin(&o.db, path, &r.params, &dir);
    let mut place = place::place(dir, &r, &m, o, &log, cancel)?;
    let tested = test::test(
        &r,
        &m,
        &place,
        &store,
        o.pause_on_fail,
        progress,
        &log,
        rt,
        cancel,
    );
    let cleaned = cleanup::cleanup(&mut place, reservation, &log);
    let tested = tested?;
    let infra = tested.infra.clone();
    let rep = report::report(
        &r,
        &m,
        tested,
        cleaned,
        &place.dir,
        t0.elapsed().as_secs_f64(),
    );
    report::write(&rep, &place.dir, &log);
    report::after_run(&rep, &place.dir, &log, store);
    Ok(Finished {
        report: rep,
        dir: place.dir,
        infra,
        interrupted: cancel.is_cancelled(),
    })
}
