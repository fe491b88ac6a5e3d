//! What `lnst-ctl run` calls: [`RunHook::begin`] once the run directory
//! exists (opens the store), [`RunHook::connected`] when a match's agents
//! are connected (their environments), [`RunHook::finish`] after
//! `summary.json` is written (writes `environment.json` and `run.json`,
//! then records the run directory). A store that cannot be opened or
//! written is a warning on stderr: the run goes on and ends as it would
//! have, with its run directory and exit status.
//!
//! While a run is on, `perf()` (on the same thread) asks
//! [`evaluate_perf`] to judge its samples against the series' history.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde_json::{Map, Value};

use super::baseline::{self, Evaluation, Thresholds};
use super::env::{self, host_environment, Environment};
use super::record::{self, RunMeta, RunRecord};
use super::Store;
use crate::db::DbTarget;
use crate::mapper::Mapping;
use crate::report::series::SeriesKey;
use crate::session::Session;

struct Inner {
    target: DbTarget,
    store: Option<Store>,
    thresholds: Thresholds,
    dir: PathBuf,
    meta: RunMeta,
    recipe: String,
    params: String,
    /// Each match's hosts' environments, in match order; the last is the
    /// match now running.
    env: Vec<Environment>,
}

thread_local! {
    /// The run on this thread (the run thread: where `perf()` runs too).
    static CURRENT: RefCell<Option<Rc<RefCell<Inner>>>> = const { RefCell::new(None) };
}

fn warn(msg: impl std::fmt::Display) {
    eprintln!("lnst-ctl: warning: {msg}; the run goes on without the results store");
}

/// The results store's part in one run.
pub struct RunHook {
    inner: Rc<RefCell<Inner>>,
}

impl RunHook {
    /// Opens the store `target` names (`DbTarget::resolve` of `--db`; a
    /// failure is a warning) for the run of `recipe` with `params` in `dir`.
    pub fn begin(
        target: &DbTarget,
        recipe: &Path,
        params: &Map<String, Value>,
        dir: &Path,
    ) -> RunHook {
        let target = target.clone();
        let store = match Store::open(&target) {
            Ok(s) => Some(s),
            Err(e) => {
                warn(format!("{e:#}"));
                None
            }
        };
        let thresholds = Thresholds::load().unwrap_or_else(|e| {
            eprintln!("lnst-ctl: warning: {e}; using the default baseline thresholds");
            Thresholds::default()
        });
        let inner = Rc::new(RefCell::new(Inner {
            target,
            store,
            thresholds,
            dir: dir.to_owned(),
            meta: RunMeta::now(),
            recipe: crate::run::load::recipe_label(recipe),
            params: record::canonical(&Value::Object(params.clone())),
            env: Vec::new(),
        }));
        CURRENT.with(|c| *c.borrow_mut() = Some(Rc::clone(&inner)));
        RunHook { inner }
    }

    /// Match `idx`'s agents are connected: keep each host's environment
    /// (a host is on another machine in each match of `--all-matches`).
    pub fn connected(&self, idx: usize, mapping: &Mapping, session: &Session) {
        let mut i = self.inner.borrow_mut();
        if i.env.len() <= idx {
            i.env.resize_with(idx + 1, Environment::new);
        }
        let env = &mut i.env[idx];
        for (h, c) in &session.clients {
            if let Some(hm) = mapping.get(h) {
                env.entry(h.clone())
                    .or_insert_with(|| host_environment(hm, &c.welcome().env));
            }
        }
    }

    /// The run is over and `summary.json` written: writes
    /// `environment.json` and `run.json` and records the run directory.
    /// Returns the run id.
    pub fn finish(self) -> Option<i64> {
        CURRENT.with(|c| *c.borrow_mut() = None);
        let mut i = self.inner.borrow_mut();
        let dir = i.dir.clone();
        let write = |name: &str, v: &dyn erased::Json| {
            let p = dir.join(name);
            if let Err(e) = std::fs::write(&p, v.json() + "\n") {
                eprintln!("lnst-ctl: warning: cannot write {}: {e}", p.display());
            }
        };
        write("environment.json", &env::to_file(&i.env));
        write("run.json", &i.meta);
        let target = i.target.to_string();
        let store = i.store.as_mut()?;
        let rec = match RunRecord::from_run_dir(&dir) {
            Ok(r) => r,
            Err(e) => {
                warn(format!("cannot record the run in {target}: {e}"));
                return None;
            }
        };
        match store.record(&rec) {
            Ok((id, _)) => {
                tracing::info!(id, db = %target, "run recorded");
                Some(id)
            }
            Err(e) => {
                warn(format!("cannot record the run: {e}"));
                None
            }
        }
    }
}

impl Drop for RunHook {
    fn drop(&mut self) {
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            if c.as_ref().is_some_and(|x| Rc::ptr_eq(x, &self.inner)) {
                *c = None;
            }
        });
    }
}

mod erased {
    /// Pretty JSON of anything serialisable, behind a trait object.
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string_pretty(self).unwrap_or_default()
        }
    }
}

/// Judges a `perf()` measurement between `client` and `server` against
/// its series' history in the store of the run on this thread. Without a
/// run or a store: `NO_BASELINE`, saying why.
pub fn evaluate_perf(
    measurement: &str,
    client: &str,
    server: &str,
    metric: &str,
    samples: &[f64],
) -> Evaluation {
    let run = CURRENT.with(|c| c.borrow().clone());
    let Some(run) = run else {
        return no_store(samples, metric, "no run in progress");
    };
    let mut i = run.borrow_mut();
    let key = SeriesKey {
        recipe: i.recipe.clone(),
        params: i.params.clone(),
        role: record::role(
            &[client, server],
            i.env.last().unwrap_or(&Environment::new()),
        ),
        measurement: measurement.to_string(),
        metric: metric.to_string(),
    };
    let t = i.thresholds.clone();
    let Some(store) = i.store.as_mut() else {
        return no_store(samples, metric, "the results store is not available");
    };
    match store.valid_means(&key, t.cp_lookback) {
        Ok(h) => baseline::evaluate(samples, &h, metric, &t),
        Err(e) => {
            eprintln!("lnst-ctl: warning: {e}; {measurement} is not compared with its history");
            no_store(samples, metric, "the results store could not be read")
        }
    }
}

fn no_store(samples: &[f64], metric: &str, why: &str) -> Evaluation {
    let mut e = baseline::evaluate(samples, &[], metric, &Thresholds::default());
    if e.verdict == baseline::Verdict::NoBaseline {
        e.reason = format!("{why}: no history to compare with");
    }
    e
}
