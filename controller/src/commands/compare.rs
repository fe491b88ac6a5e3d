//! `lnst-ctl compare RUN RUN [--db URL] [--json]`: each measurement of the
//! first run against the same measurement of the second — the change,
//! whether it is beyond noise, and how that was judged — then the results
//! whose verdict differs and what differs in the hosts' environments (of
//! the first match, for runs made with `--all-matches`).
//! A RUN is a run id as `history` prints it, or a run directory (one not
//! recorded yet is read from its files).
//!
//! Exit status, as `diff`'s, so a script or CI step can gate on it: 0 when
//! no measurement is beyond noise and every result shared by both runs has
//! the same verdict, 1 when something differs, 2 for a run or an SQLite
//! store that does not exist or a bad thresholds file, 3 when the store
//! cannot be read.
//!
//! Beyond noise: when the store has a baseline for the second run's
//! series (its valid runs before it, since the last change point), the
//! change must leave that baseline's band, the rule `perf()` applies;
//! without one, Welch's t on the two runs' samples must clear the
//! baseline `z` and the change the metric's minimum effect.

use std::path::Path;

use anyhow::anyhow;
use serde::Serialize;

use crate::db::DbTarget;
use crate::exit::{ExitCode, Failure};
use crate::report::series::SeriesKey;
use crate::store::baseline::Thresholds;
use crate::store::env::{differences, Environment};
use crate::store::record::RunRecord;
use crate::store::{Store, StoreError};

use super::history::human;

/// One side of the comparison.
struct Side {
    label: String,
    id: Option<i64>,
    recipe: String,
    measurements: Vec<M>,
    results: Vec<(String, String)>,
    env: Environment,
}

struct M {
    key: SeriesKey,
    unit: String,
    samples: Vec<f64>,
    mean: f64,
    stddev: f64,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub measurement: String,
    pub metric: String,
    pub unit: String,
    pub a: f64,
    pub b: f64,
    pub change_pct: Option<f64>,
    /// `Some(true)` beyond noise, `Some(false)` within, `None` cannot tell.
    pub beyond_noise: Option<bool>,
    /// How it was judged.
    pub how: String,
    /// The two measurements are of different series (params or hardware).
    pub unlike: bool,
}

#[derive(Debug, Serialize)]
struct Out {
    a: String,
    b: String,
    measurements: Vec<Row>,
    only_in_a: Vec<String>,
    only_in_b: Vec<String>,
    results_differ: Vec<(String, String, String)>,
    environment: Vec<String>,
}

fn load(store: &mut Option<Store>, run: &str) -> Result<Side, Failure> {
    let usage = |e: String| Failure::new(ExitCode::Usage, anyhow!(e));
    if let Some(s) = store.as_mut() {
        match s.resolve_run(run) {
            Ok(info) => {
                let infra = |e: StoreError| Failure::new(ExitCode::Infra, anyhow!(e));
                let ms = s.measurements(info.id).map_err(infra)?;
                let results = s.results(info.id).map_err(infra)?;
                return Ok(Side {
                    label: format!("run {} ({}, {})", info.id, info.recipe, info.started),
                    id: Some(info.id),
                    recipe: info.recipe,
                    measurements: ms
                        .into_iter()
                        .map(|m| M {
                            key: m.key,
                            unit: m.unit,
                            samples: m.samples,
                            mean: m.mean,
                            stddev: m.stddev,
                        })
                        .collect(),
                    results: results.into_iter().map(|r| (r.desc, r.result)).collect(),
                    env: s.environment(info.id).map_err(infra)?,
                });
            }
            Err(StoreError::NoSuchRun { .. }) if Path::new(run).is_dir() => {}
            Err(e @ StoreError::NoSuchRun { .. }) => return Err(usage(e.to_string())),
            Err(e) => return Err(Failure::new(ExitCode::Infra, anyhow!(e))),
        }
    } else if !Path::new(run).is_dir() {
        return Err(usage(format!(
            "{run}: not a run directory, and run ids need the results store"
        )));
    }
    let r = RunRecord::from_run_dir(Path::new(run)).map_err(|e| usage(e.to_string()))?;
    Ok(Side {
        label: format!("{} ({}, {})", run, r.recipe, r.meta.started),
        id: None,
        recipe: r.recipe.clone(),
        measurements: r
            .measurements
            .iter()
            .map(|m| M {
                key: m.key.clone(),
                unit: m.unit.clone(),
                samples: m.samples.clone(),
                mean: m.mean,
                stddev: m.stddev,
            })
            .collect(),
        results: r
            .results
            .iter()
            .map(|x| (x.desc.clone(), x.result.clone()))
            .collect(),
        env: r.environments.first().cloned().unwrap_or_default(),
    })
}

fn judge(
    store: &mut Option<Store>,
    b_id: Option<i64>,
    a: &M,
    b: &M,
    t: &Thresholds,
) -> (Option<bool>, String) {
    let m = t.for_metric(&a.key.metric);
    let delta = b.mean - a.mean;
    let pct = if a.mean != 0.0 {
        delta.abs() / a.mean.abs() * 100.0
    } else {
        f64::INFINITY
    };
    let big = pct >= m.min_effect_pct && delta.abs() >= m.min_effect_abs && delta != 0.0;
    if let (Some(s), Some(id)) = (store.as_mut(), b_id) {
        if let Ok(h) = s.series_history_before(&b.key, t.cp_lookback, Some(id)) {
            if let Some(bl) = h.baseline {
                let half = (bl.high - bl.low) / 2.0;
                let beyond = delta.abs() > half && big;
                return (
                    Some(beyond),
                    format!("band ±{} of a {}-run baseline", human(half, &b.unit), bl.n),
                );
            }
        }
    }
    let (na, nb) = (a.samples.len() as f64, b.samples.len() as f64);
    if na < 2.0 || nb < 2.0 {
        return (None, "one sample and no baseline: cannot tell".into());
    }
    let se = (a.stddev.powi(2) / na + b.stddev.powi(2) / nb).sqrt();
    let tstat = if se > 0.0 {
        delta / se
    } else if delta != 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    (
        Some(tstat.abs() >= t.z && big),
        format!(
            "Welch t {tstat:.1} (needs {:.1}) and ≥ {}% change",
            t.z, m.min_effect_pct
        ),
    )
}

pub fn exec(a: &str, b: &str, db: Option<&str>, json: bool) -> Result<ExitCode, Failure> {
    let target = DbTarget::resolve(db);
    let mut store = match Store::open_existing(&target) {
        Ok(s) => Some(s),
        Err(e) if Path::new(a).is_dir() && Path::new(b).is_dir() => {
            eprintln!("lnst-ctl: warning: {e}; comparing the run directories without history");
            None
        }
        // No such file: a mistyped --db, or nothing recorded yet.
        Err(e @ StoreError::NotCreated { .. }) => {
            return Err(Failure::new(ExitCode::Usage, anyhow!(e)))
        }
        Err(e) => return Err(Failure::new(ExitCode::Infra, anyhow!(e))),
    };
    let sa = load(&mut store, a)?;
    let sb = load(&mut store, b)?;
    let t = Thresholds::load().map_err(|e| Failure::new(ExitCode::Usage, anyhow!(e)))?;
    let mut rows = Vec::new();
    let mut only_a = Vec::new();
    for ma in &sa.measurements {
        let same =
            |mb: &&M| mb.key.measurement == ma.key.measurement && mb.key.metric == ma.key.metric;
        let Some(mb) = sb
            .measurements
            .iter()
            .find(|mb| same(mb) && mb.key == ma.key)
            .or_else(|| sb.measurements.iter().find(same))
        else {
            only_a.push(format!("{} · {}", ma.key.measurement, ma.key.metric));
            continue;
        };
        let (beyond, how) = judge(&mut store, sb.id, ma, mb, &t);
        rows.push(Row {
            measurement: ma.key.measurement.clone(),
            metric: ma.key.metric.clone(),
            unit: ma.unit.clone(),
            a: ma.mean,
            b: mb.mean,
            change_pct: (ma.mean != 0.0).then(|| (mb.mean - ma.mean) / ma.mean.abs() * 100.0),
            beyond_noise: beyond,
            how,
            unlike: ma.key != mb.key,
        });
    }
    let only_b: Vec<String> = sb
        .measurements
        .iter()
        .filter(|mb| {
            !sa.measurements.iter().any(|ma| {
                ma.key.measurement == mb.key.measurement && ma.key.metric == mb.key.metric
            })
        })
        .map(|m| format!("{} · {}", m.key.measurement, m.key.metric))
        .collect();
    let results_differ: Vec<(String, String, String)> = sa
        .results
        .iter()
        .filter_map(|(d, v)| {
            let w = sb.results.iter().find(|(e, _)| e == d)?;
            (w.1 != *v).then(|| (d.clone(), v.clone(), w.1.clone()))
        })
        .collect();
    let out = Out {
        a: sa.label.clone(),
        b: sb.label.clone(),
        measurements: rows,
        only_in_a: only_a,
        only_in_b: only_b,
        results_differ,
        environment: differences(&sa.env, &sb.env),
    };
    if sa.recipe != sb.recipe {
        eprintln!(
            "lnst-ctl: note: the runs are of different recipes ({} and {})",
            sa.recipe, sb.recipe
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{}", render(&out));
    }
    Ok(if out.differ() {
        ExitCode::Fail
    } else {
        ExitCode::Pass
    })
}

impl Out {
    /// A measurement beyond noise, or a result whose verdict changed: what
    /// exit status 1 means. Measurements in one run only and environment
    /// differences are shown but do not count (a new `perf()` line, new
    /// MACs on every lab run).
    fn differ(&self) -> bool {
        !self.results_differ.is_empty()
            || self
                .measurements
                .iter()
                .any(|r| r.beyond_noise == Some(true))
    }
}

fn render(o: &Out) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "A: {}\nB: {}\n", o.a, o.b);
    if o.measurements.is_empty() {
        let _ = writeln!(s, "no measurement in both runs");
    }
    for r in &o.measurements {
        let change = r.change_pct.map_or("-".into(), |c| format!("{c:+.1}%"));
        let verdict = match r.beyond_noise {
            Some(true) => "BEYOND NOISE",
            Some(false) => "within noise",
            None => "cannot tell",
        };
        let _ = writeln!(
            s,
            "{} · {}\n  {} -> {}  {change}  {verdict} ({}){}",
            r.measurement,
            r.metric,
            human(r.a, &r.unit),
            human(r.b, &r.unit),
            r.how,
            if r.unlike {
                "; NOTE: different params or hardware"
            } else {
                ""
            }
        );
    }
    for m in &o.only_in_a {
        let _ = writeln!(s, "only in A: {m}");
    }
    for m in &o.only_in_b {
        let _ = writeln!(s, "only in B: {m}");
    }
    if !o.results_differ.is_empty() {
        let _ = writeln!(s, "\nresults that differ:");
        for (d, a, b) in &o.results_differ {
            let _ = writeln!(s, "  {d}: {a} -> {b}");
        }
    }
    let _ = writeln!(s, "\nenvironment:");
    if o.environment.is_empty() {
        let _ = writeln!(s, "  no differences");
    }
    for d in &o.environment {
        let _ = writeln!(s, "  {d}");
    }
    s
}
