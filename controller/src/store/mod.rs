//! The results store (RECIPES.md §12, issue 12): every run, its results,
//! its measurements with all samples and each host's environment, in an
//! embedded SQLite file or a shared PostgreSQL database (`--db`,
//! `LNST_DB`, [`crate::db::DbTarget`]).
//!
//! - [`db`]: the one trait both backends implement ([`sqlite`],
//!   [`postgres`]); [`migrate`]: the schema (`sql/`) and its versions;
//! - [`record`]: what is kept of a run, read from its run directory, and
//!   how it is written; [`env`]: `environment.json`;
//! - [`baseline`]: judging a measurement against its series' history and
//!   finding change points;
//! - [`hook`]: what `run` calls (start, agents connected, end) and what
//!   `perf()` asks;
//! - this file: [`Store`], the API the commands (`history`, `compare`,
//!   `import`, `report`, `doctor`) use.

pub mod baseline;
pub mod db;
pub mod env;
pub mod hook;
pub mod migrate;
pub mod postgres;
pub mod record;
pub mod sqlite;

use std::path::{Path, PathBuf};

use crate::db::{DbTarget, PgError};
use crate::report::series::{HistoryPoint, SeriesHistory, SeriesKey};
use db::{blob_samples, Db, DbError, Row, Val};
use env::Environment;
use record::{NotARunDir, RunRecord};

/// Why the store cannot be used. Every message names the database (file
/// or URL, password redacted) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("results store {path}: {reason}; it is not an SQLite database lnst can read (corrupt, or another kind of file). Move it aside (nothing in it is changed) or use --db to name another store")]
    Corrupt { path: String, reason: String },
    #[error("results store {db}: the database holds tables of another application ({tables}); lnst leaves it alone. Use an empty database or another --db")]
    Foreign { db: String, tables: String },
    #[error("results store {db}: schema version {found} was written by a newer lnst (this lnst-ctl knows up to {known}); upgrade lnst-ctl, or use another --db. Nothing was changed")]
    TooNew { db: String, found: i64, known: i64 },
    #[error("results store: {0}")]
    Postgres(#[from] PgError),
    #[error("results store {db}: {reason}")]
    Db { db: String, reason: String },
    /// An SQLite store opened for reading that is not there: a mistyped
    /// `--db`, or nothing recorded yet (reading commands exit 2 on it).
    #[error("results store {db}: does not exist yet (the first `lnst-ctl run` creates it)")]
    NotCreated { db: String },
    #[error("results store {db}: no run {run} (a run id as `lnst-ctl history` prints it, or a run directory)")]
    NoSuchRun { db: String, run: String },
    #[error(transparent)]
    NotARunDir(#[from] NotARunDir),
}

/// A run as `history` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunInfo {
    /// The run id `history` prints and `compare`/`report` take.
    pub id: i64,
    pub recipe: String,
    pub recipe_hash: String,
    pub params: String,
    pub user: String,
    pub controller_host: String,
    pub lnst_version: String,
    /// RFC 3339 UTC.
    pub started: String,
    pub duration: f64,
    pub result: String,
    pub run_dir: PathBuf,
    pub imported: bool,
}

/// One result line of a recorded run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ResultInfo {
    pub idx: i64,
    pub match_idx: i64,
    pub host: Option<String>,
    pub job: Option<i64>,
    pub desc: String,
    pub result: String,
    pub note: Option<String>,
    pub data: serde_json::Value,
}

/// One measurement of a recorded run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MeasurementInfo {
    pub result_idx: i64,
    pub key: SeriesKey,
    pub unit: String,
    pub mean: f64,
    pub stddev: f64,
    pub samples: Vec<f64>,
    pub valid: bool,
    pub verdict: String,
    pub change_pct: Option<f64>,
    pub baseline_n: i64,
}

/// An open results store.
pub struct Store {
    db: Box<dyn Db>,
    target: DbTarget,
    /// The schema version found when opening (before migrating).
    pub found_version: i64,
    /// The baseline thresholds, read from their file on first use.
    thresholds: Option<baseline::Thresholds>,
}

const RUN_COLS: &str = "id, recipe, recipe_hash, params, user_name, controller_host, lnst_version, started, duration, result, run_dir, imported";

fn run_info(r: &[Val]) -> RunInfo {
    RunInfo {
        id: r[0].i64().unwrap_or(0),
        recipe: r[1].string(),
        recipe_hash: r[2].string(),
        params: r[3].string(),
        user: r[4].string(),
        controller_host: r[5].string(),
        lnst_version: r[6].string(),
        started: r[7].string(),
        duration: r[8].f64().unwrap_or(0.0),
        result: r[9].string(),
        run_dir: PathBuf::from(r[10].string()),
        imported: r[11].i64().unwrap_or(0) != 0,
    }
}

impl Store {
    /// Opens the store `target` names, creating and migrating it as
    /// needed. `--db`/`LNST_DB` resolve with [`DbTarget::resolve`].
    pub fn open(target: &DbTarget) -> Result<Store, StoreError> {
        Self::open_with(target, true, true)
    }

    /// Opens an existing store for reading (`history`, `compare`,
    /// `report`): a missing SQLite file is an error, not a new empty store
    /// at a mistyped path; an older schema is migrated, as a run would, so
    /// the queries find the columns they read.
    pub fn open_existing(target: &DbTarget) -> Result<Store, StoreError> {
        Self::open_with(target, false, true)
    }

    /// Opens an existing store without creating or migrating anything
    /// (`doctor` reports the schema version it finds).
    pub fn inspect(target: &DbTarget) -> Result<Store, StoreError> {
        Self::open_with(target, false, false)
    }

    fn open_with(target: &DbTarget, create: bool, migrate: bool) -> Result<Store, StoreError> {
        let shown = target.to_string();
        let mut db: Box<dyn Db> = match target {
            DbTarget::Sqlite(p) => {
                if !create && !p.exists() {
                    return Err(StoreError::NotCreated { db: shown });
                }
                Box::new(sqlite::Sqlite::open(p, create).map_err(|e| classify_sqlite(p, e))?)
            }
            DbTarget::Postgres(url) => Box::new(postgres::Postgres::connect(url)?),
        };
        let found = if migrate {
            migrate::migrate(db.as_mut())
        } else {
            migrate::version(db.as_mut())
        };
        let found = found.map_err(|e| match e {
            migrate::MigrateError::Foreign(t) => StoreError::Foreign {
                db: shown.clone(),
                tables: t.join(", "),
            },
            migrate::MigrateError::TooNew(v) => StoreError::TooNew {
                db: shown.clone(),
                found: v,
                known: migrate::LATEST,
            },
            migrate::MigrateError::Db(e) => match target {
                DbTarget::Sqlite(p) => classify_sqlite(p, e),
                _ => StoreError::Db {
                    db: shown.clone(),
                    reason: e.msg,
                },
            },
        })?;
        if !migrate && found > migrate::LATEST {
            return Err(StoreError::TooNew {
                db: shown,
                found,
                known: migrate::LATEST,
            });
        }
        Ok(Store {
            db,
            target: target.clone(),
            found_version: found,
            thresholds: None,
        })
    }

    /// The baseline thresholds (`baseline.toml`), read once per open
    /// store; a broken file is a warning and the defaults apply.
    fn thresholds(&mut self) -> &baseline::Thresholds {
        self.thresholds.get_or_insert_with(|| {
            baseline::Thresholds::load().unwrap_or_else(|e| {
                eprintln!("lnst-ctl: warning: {e}; using the default baseline thresholds");
                baseline::Thresholds::default()
            })
        })
    }

    pub fn target(&self) -> &DbTarget {
        &self.target
    }

    /// The schema version now in the database.
    pub fn schema_version(&mut self) -> Result<i64, StoreError> {
        migrate::version(self.db.as_mut())
            .map_err(|_| self.err(DbError::new("cannot read the schema version")))
    }

    /// A query whose failure is a [`StoreError`] naming this store.
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>, StoreError> {
        self.db.query(sql, params).map_err(|e| self.err(e))
    }

    fn err(&self, e: DbError) -> StoreError {
        StoreError::Db {
            db: self.target.to_string(),
            reason: e.msg,
        }
    }

    /// Records a run (one transaction). Returns its id and whether it was
    /// new (a run recorded before, e.g. imported twice, is kept once).
    pub fn record(&mut self, r: &RunRecord) -> Result<(i64, bool), StoreError> {
        record::insert(self.db.as_mut(), r).map_err(|e| self.err(e))
    }

    /// Records a run directory (`lnst-ctl import`).
    pub fn import(&mut self, dir: &Path) -> Result<(i64, bool), StoreError> {
        let mut r = RunRecord::from_run_dir(dir)?;
        r.imported = true;
        self.record(&r)
    }

    /// Runs, newest first, of one recipe (by file name) or all.
    pub fn runs(&mut self, recipe: Option<&str>, limit: usize) -> Result<Vec<RunInfo>, StoreError> {
        let lim = Val::I64(limit.min(i64::MAX as usize) as i64);
        let rows = match recipe {
            Some(r) => self.query(
                &format!("SELECT {RUN_COLS} FROM runs WHERE recipe = ?1 ORDER BY started_unix DESC, id DESC LIMIT ?2"),
                &[r.into(), lim],
            ),
            None => self.query(
                &format!("SELECT {RUN_COLS} FROM runs ORDER BY started_unix DESC, id DESC LIMIT ?1"),
                &[lim],
            ),
        }?;
        Ok(rows.iter().map(|r| run_info(r)).collect())
    }

    /// How many runs are recorded (of one recipe, or all).
    pub fn count_runs(&mut self, recipe: Option<&str>) -> Result<i64, StoreError> {
        let rows = match recipe {
            Some(r) => self.query("SELECT COUNT(*) FROM runs WHERE recipe = ?1", &[r.into()]),
            None => self.query("SELECT COUNT(*) FROM runs", &[]),
        }?;
        Ok(rows.first().and_then(|r| r[0].i64()).unwrap_or(0))
    }

    /// A `RUN` argument: a run id as `history` prints it, or a run
    /// directory (the newest run recorded from it).
    pub fn resolve_run(&mut self, run: &str) -> Result<RunInfo, StoreError> {
        let by_id = run
            .trim_start_matches('#')
            .parse::<i64>()
            .ok()
            .filter(|_| !Path::new(run).is_dir());
        let rows = match by_id {
            Some(id) => self.query(
                &format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"),
                &[Val::I64(id)],
            ),
            None => {
                let p = Path::new(run);
                let canon = p.canonicalize().unwrap_or_else(|_| p.to_owned());
                self.query(
                    &format!(
                        "SELECT {RUN_COLS} FROM runs WHERE run_dir = ?1 ORDER BY id DESC LIMIT 1"
                    ),
                    &[canon.display().to_string().into()],
                )
            }
        }?;
        rows.first()
            .map(|r| run_info(r))
            .ok_or_else(|| StoreError::NoSuchRun {
                db: self.target.to_string(),
                run: run.to_string(),
            })
    }

    /// The run directory of a run id (for the report).
    pub fn run_dir(&mut self, id: i64) -> Result<PathBuf, StoreError> {
        Ok(self.resolve_run(&id.to_string())?.run_dir)
    }

    /// Every result line of a run, in order.
    pub fn results(&mut self, run_id: i64) -> Result<Vec<ResultInfo>, StoreError> {
        let rows = self.query(
                "SELECT idx, match_idx, host, job, descr, result, note, data FROM results WHERE run_id = ?1 ORDER BY idx",
                &[Val::I64(run_id)],
            )?;
        Ok(rows
            .iter()
            .map(|r| ResultInfo {
                idx: r[0].i64().unwrap_or(0),
                match_idx: r[1].i64().unwrap_or(0),
                host: r[2].text().map(str::to_string),
                job: r[3].i64(),
                desc: r[4].string(),
                result: r[5].string(),
                note: r[6].text().map(str::to_string),
                data: serde_json::from_str(r[7].text().unwrap_or("{}")).unwrap_or_default(),
            })
            .collect())
    }

    /// Every measurement of a run, in result order.
    pub fn measurements(&mut self, run_id: i64) -> Result<Vec<MeasurementInfo>, StoreError> {
        let rows = self.query(
            "SELECT m.result_idx, s.recipe, s.params, s.role, s.measurement, s.metric, s.unit,
                        m.mean, m.stddev, m.samples, m.valid, m.verdict, m.change_pct, m.baseline_n
                 FROM measurements m JOIN series s ON s.id = m.series_id
                 WHERE m.run_id = ?1 ORDER BY m.result_idx, s.metric",
            &[Val::I64(run_id)],
        )?;
        Ok(rows
            .iter()
            .map(|r| MeasurementInfo {
                result_idx: r[0].i64().unwrap_or(0),
                key: SeriesKey {
                    recipe: r[1].string(),
                    params: r[2].string(),
                    role: r[3].string(),
                    measurement: r[4].string(),
                    metric: r[5].string(),
                },
                unit: r[6].string(),
                mean: r[7].f64().unwrap_or(0.0),
                stddev: r[8].f64().unwrap_or(0.0),
                samples: blob_samples(r[9].blob()),
                valid: r[10].i64().unwrap_or(0) != 0,
                verdict: r[11].string(),
                change_pct: r[12].f64(),
                baseline_n: r[13].i64().unwrap_or(0),
            })
            .collect())
    }

    /// Each host's environment of a run's first match (`environment.json`;
    /// [`Self::environments`] for every match of an `--all-matches` run).
    pub fn environment(&mut self, run_id: i64) -> Result<Environment, StoreError> {
        Ok(self
            .environments(run_id)?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// Each match's hosts' environments of a run, in match order.
    pub fn environments(&mut self, run_id: i64) -> Result<Vec<Environment>, StoreError> {
        let rows = self.query(
                "SELECT e.match_idx, e.host, h.env FROM environments e JOIN host_envs h ON h.hash = e.env_hash WHERE e.run_id = ?1 ORDER BY e.match_idx",
                &[Val::I64(run_id)],
            )?;
        let mut out: Vec<Environment> = Vec::new();
        for r in &rows {
            let (Some(mi), Some(env)) = (
                r[0].i64(),
                r[2].text().and_then(|t| serde_json::from_str(t).ok()),
            ) else {
                continue;
            };
            let mi = mi as usize;
            if out.len() <= mi {
                out.resize_with(mi + 1, Environment::new);
            }
            out[mi].insert(r[1].string(), env);
        }
        Ok(out)
    }

    /// Every series of a recipe (or all), with their units.
    pub fn series(&mut self, recipe: Option<&str>) -> Result<Vec<(SeriesKey, String)>, StoreError> {
        let sql = "SELECT recipe, params, role, measurement, metric, unit FROM series";
        let rows = match recipe {
            Some(r) => self.query(
                &format!("{sql} WHERE recipe = ?1 ORDER BY measurement, metric, role, params"),
                &[r.into()],
            ),
            None => self.query(&format!("{sql} ORDER BY recipe, measurement, metric"), &[]),
        }?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    SeriesKey {
                        recipe: r[0].string(),
                        params: r[1].string(),
                        role: r[2].string(),
                        measurement: r[3].string(),
                        metric: r[4].string(),
                    },
                    r[5].string(),
                )
            })
            .collect())
    }

    /// The last `limit` runs of a series (oldest first), with the verdict
    /// each got, change points (computed on the valid runs) and the
    /// baseline a new run would be judged against now. The HTML report
    /// draws exactly this.
    pub fn series_history(
        &mut self,
        key: &SeriesKey,
        limit: usize,
    ) -> Result<SeriesHistory, StoreError> {
        self.series_history_before(key, limit, None)
    }

    /// [`Store::series_history`] of the runs before run `before` (that
    /// run's own baseline, for a report of an older run).
    pub fn series_history_before(
        &mut self,
        key: &SeriesKey,
        limit: usize,
        before: Option<i64>,
    ) -> Result<SeriesHistory, StoreError> {
        let t = self.thresholds().clone();
        let mut args: Vec<Val> = vec![
            key.recipe.clone().into(),
            key.params.clone().into(),
            key.role.clone().into(),
            key.measurement.clone().into(),
            key.metric.clone().into(),
            Val::I64(limit.min(i64::MAX as usize) as i64),
        ];
        let cond = if let Some(b) = before {
            args.push(Val::I64(b));
            "AND r.id <> ?7 AND r.started_unix <= (SELECT started_unix FROM runs WHERE id = ?7)"
        } else {
            ""
        };
        let rows = self.query(
                &format!(
                    "SELECT r.id, r.started, m.mean, m.samples, m.verdict, m.valid, s.unit
                     FROM series s JOIN measurements m ON m.series_id = s.id JOIN runs r ON r.id = m.run_id
                     WHERE s.recipe = ?1 AND s.params = ?2 AND s.role = ?3 AND s.measurement = ?4 AND s.metric = ?5 {cond}
                     ORDER BY r.started_unix DESC, r.id DESC LIMIT ?6"
                ),
                &args,
            )?;
        let unit = rows.first().map(|r| r[6].string()).unwrap_or_default();
        let mut points: Vec<(HistoryPoint, bool)> = rows
            .iter()
            .rev()
            .map(|r| {
                (
                    HistoryPoint {
                        run_id: r[0].i64().unwrap_or(0).to_string(),
                        started: r[1].string(),
                        mean: r[2].f64().unwrap_or(0.0),
                        samples: blob_samples(r[3].blob()),
                        verdict: r[4].string(),
                        change_point: false,
                    },
                    r[5].i64().unwrap_or(0) != 0,
                )
            })
            .collect();
        let valid_idx: Vec<usize> = (0..points.len()).filter(|&i| points[i].1).collect();
        let valid: Vec<f64> = valid_idx.iter().map(|&i| points[i].0.mean).collect();
        for cp in baseline::change_points(&valid, &key.metric, &t) {
            points[valid_idx[cp]].0.change_point = true;
        }
        let (b, _) = baseline::baseline(&valid, &key.metric, &t);
        Ok(SeriesHistory {
            key: key.clone(),
            unit,
            points: points.into_iter().map(|(p, _)| p).collect(),
            baseline: b,
        })
    }

    /// Valid run means of a series, oldest first, the last `limit` (what
    /// `perf()` judges a new run against).
    pub fn valid_means(&mut self, key: &SeriesKey, limit: usize) -> Result<Vec<f64>, StoreError> {
        let rows = self.query(
                "SELECT m.mean FROM series s JOIN measurements m ON m.series_id = s.id JOIN runs r ON r.id = m.run_id
                 WHERE s.recipe = ?1 AND s.params = ?2 AND s.role = ?3 AND s.measurement = ?4 AND s.metric = ?5
                   AND m.valid = 1
                 ORDER BY r.started_unix DESC, r.id DESC LIMIT ?6",
                &[
                    key.recipe.clone().into(),
                    key.params.clone().into(),
                    key.role.clone().into(),
                    key.measurement.clone().into(),
                    key.metric.clone().into(),
                    Val::I64(limit.min(i64::MAX as usize) as i64),
                ],
            )?;
        Ok(rows.iter().rev().filter_map(|r| r[0].f64()).collect())
    }

    /// For each result description of a recipe, the verdicts of its last
    /// `limit` runs, oldest first (flaky checks).
    pub fn result_verdicts(
        &mut self,
        recipe: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let rows = self.query(
                "SELECT x.descr, x.result FROM results x
                 JOIN (SELECT id, started_unix FROM runs WHERE recipe = ?1 ORDER BY started_unix DESC, id DESC LIMIT ?2) r
                   ON r.id = x.run_id
                 ORDER BY r.started_unix, r.id, x.idx",
                &[recipe.into(), Val::I64(limit.min(i64::MAX as usize) as i64)],
            )?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for r in rows {
            let d = r[0].string();
            let i = *index.entry(d.clone()).or_insert_with(|| {
                out.push((d, Vec::new()));
                out.len() - 1
            });
            out[i].1.push(r[1].string());
        }
        Ok(out)
    }
}

fn classify_sqlite(p: &Path, e: DbError) -> StoreError {
    let m = e.msg.to_lowercase();
    if m.contains("not a database") || m.contains("malformed") || m.contains("corrupt") {
        StoreError::Corrupt {
            path: p.display().to_string(),
            reason: e.msg,
        }
    } else {
        StoreError::Db {
            db: p.display().to_string(),
            reason: e.msg,
        }
    }
}

#[cfg(test)]
mod tests;
