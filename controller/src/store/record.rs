//! What the store keeps of one run, read from its run directory, and how
//! it is written. The same path serves `run` (at its end, after
//! `summary.json` is written) and `lnst-ctl import` (older directories):
//! `summary.json` (required: results and their data), `params.json`,
//! `mapping.json`, the recipe file, `environment.json` and `run.json`
//! (start, user, lnst version; written by `run` since the store exists).
//!
//! A measurement is a result whose data holds figures: a `perf()` line
//! (`samples`, `unit`, `evaluation`), a ping (`rtt_avg`, `loss`) or a lone
//! iperf client (`bps`, `cpu_local`, `cpu_remote`). Each becomes one
//! value of a series ([`SeriesKey`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::db::{in_tx, samples_blob, Db, DbResult, Val};
use super::env::{hardware, Environment};
use crate::mapper::Mapping;
use crate::report::series::SeriesKey;

/// `run.json`: what a run directory does not otherwise say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// RFC 3339 UTC.
    pub started: String,
    pub started_unix: f64,
    pub lnst_version: String,
    pub user: String,
    pub controller_host: String,
}

impl RunMeta {
    /// This process, starting now.
    pub fn now() -> RunMeta {
        let t = now_unix();
        RunMeta {
            started: rfc3339(t),
            started_unix: t,
            lnst_version: env!("CARGO_PKG_VERSION").to_string(),
            user: user_name(),
            controller_host: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// One result line.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub match_idx: i64,
    pub host: Option<String>,
    pub job: Option<i64>,
    pub desc: String,
    pub result: String,
    pub note: Option<String>,
    /// The result's data as JSON text.
    pub data: String,
    pub at: f64,
}

/// One run's value of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Index of its result line in [`RunRecord::results`].
    pub result_idx: usize,
    pub key: SeriesKey,
    pub unit: String,
    pub samples: Vec<f64>,
    pub mean: f64,
    pub stddev: f64,
    /// May join a baseline (see [`super::baseline::valid_samples`]).
    pub valid: bool,
    /// `evaluation.verdict` of a `perf()` line; `NO_BASELINE` otherwise.
    pub verdict: String,
    pub change_pct: Option<f64>,
    pub baseline_n: i64,
}

/// Everything recorded of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub uid: String,
    pub recipe: String,
    pub recipe_hash: String,
    /// Canonical JSON, sorted keys.
    pub params: String,
    pub mapping: String,
    pub meta: RunMeta,
    pub duration: f64,
    pub result: String,
    pub run_dir: PathBuf,
    pub pool: String,
    pub imported: bool,
    pub results: Vec<ResultRow>,
    pub measurements: Vec<Measurement>,
    /// Each match's hosts' environments, in match order.
    pub environments: Vec<Environment>,
}

/// Why a directory cannot be recorded.
#[derive(Debug, thiserror::Error)]
#[error("{dir}: not a run directory: {reason} (a run directory is what `lnst-ctl run` leaves under ./lnst-runs/, with summary.json)")]
pub struct NotARunDir {
    pub dir: String,
    pub reason: String,
}

pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `2026-12-04T18:18:18Z`.
pub fn rfc3339(unix: f64) -> String {
    let s = crate::report::rundir::stamp(unix.max(0.0) as u64);
    // YYYYmmdd-HHMMSS
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    )
}

/// The Unix time of a run directory's name (`20261204-181818-recipe`).
pub fn stamp_unix(name: &str) -> Option<f64> {
    let b = name.as_bytes();
    if b.len() < 15 || b[8] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| name.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86400 + h * 3600 + mi * 60 + s) as f64)
}

fn user_name() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| uid.to_string())
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Sorted-key JSON of params (serde_json's map is ordered by key).
pub fn canonical(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn read_json(dir: &Path, name: &str) -> Result<Option<Value>, NotARunDir> {
    let p = dir.join(name);
    match std::fs::read_to_string(&p) {
        Ok(s) => serde_json::from_str(&s).map(Some).map_err(|e| NotARunDir {
            dir: dir.display().to_string(),
            reason: format!("{name} is not valid JSON: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NotARunDir {
            dir: dir.display().to_string(),
            reason: format!("cannot read {name}: {e}"),
        }),
    }
}

impl RunRecord {
    /// Reads a run directory. Needs `summary.json` with `recipe`, `result`
    /// and `matches`; the other files are used when present.
    pub fn from_run_dir(dir: &Path) -> Result<RunRecord, NotARunDir> {
        let shown = dir.display().to_string();
        let bad = |reason: String| NotARunDir {
            dir: shown.clone(),
            reason,
        };
        if !dir.is_dir() {
            return Err(bad("no such directory".into()));
        }
        let summary =
            read_json(dir, "summary.json")?.ok_or_else(|| bad("it has no summary.json".into()))?;
        let recipe = summary["recipe"]
            .as_str()
            .ok_or_else(|| bad("summary.json has no \"recipe\"".into()))?
            .to_string();
        let result = summary["result"]
            .as_str()
            .ok_or_else(|| bad("summary.json has no \"result\"".into()))?
            .to_string();
        let matches = summary["matches"]
            .as_array()
            .ok_or_else(|| bad("summary.json has no \"matches\"".into()))?;
        let params = read_json(dir, "params.json")?.unwrap_or_else(|| summary["params"].clone());
        let params = if params.is_null() {
            Value::Object(Map::new())
        } else {
            params
        };
        let mapping_v = read_json(dir, "mapping.json")?.unwrap_or_else(|| {
            Value::Array(matches.iter().map(|m| m["mapping"].clone()).collect())
        });
        let mappings: Vec<Mapping> = serde_json::from_value(mapping_v.clone()).unwrap_or_default();
        let environments = match read_json(dir, "environment.json")? {
            Some(v) => {
                super::env::from_file(v).map_err(|e| bad(format!("environment.json: {e}")))?
            }
            None => Vec::new(),
        };
        let no_env = Environment::new();
        let canon_dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        let meta = match read_json(dir, "run.json")? {
            Some(v) => serde_json::from_value(v).map_err(|e| bad(format!("run.json: {e}")))?,
            None => {
                // An older directory: the start from its name (or from
                // summary.json's time less the run's duration).
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
                let duration = summary["duration"].as_f64().unwrap_or(0.0);
                let t = name
                    .as_deref()
                    .and_then(stamp_unix)
                    .or_else(|| {
                        let m = std::fs::metadata(dir.join("summary.json")).ok()?;
                        let t = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
                        Some(t.as_secs_f64() - duration)
                    })
                    .unwrap_or(0.0);
                RunMeta {
                    started: rfc3339(t),
                    started_unix: t,
                    lnst_version: String::new(),
                    ..RunMeta::now()
                }
            }
        };
        let recipe_hash = std::fs::read(dir.join(&recipe))
            .map(|b| sha256_hex(&b))
            .unwrap_or_default();
        let uid = sha256_hex(
            format!(
                "{}\n{}\n{}",
                meta.controller_host,
                canon_dir.display(),
                meta.started
            )
            .as_bytes(),
        )[..32]
            .to_string();
        let params_s = canonical(&params);
        let mut results = Vec::new();
        let mut measurements = Vec::new();
        for (mi, m) in matches.iter().enumerate() {
            for r in m["results"].as_array().into_iter().flatten() {
                let empty = Map::new();
                let data = r["data"].as_object().unwrap_or(&empty);
                let row = ResultRow {
                    match_idx: mi as i64,
                    host: r["host"].as_str().map(str::to_string),
                    job: r["job"].as_i64(),
                    desc: r["desc"].as_str().unwrap_or_default().to_string(),
                    result: r["result"].as_str().unwrap_or("ERROR").to_string(),
                    note: r["note"].as_str().map(str::to_string),
                    data: serde_json::to_string(data).unwrap_or_default(),
                    at: r["at"].as_f64().unwrap_or(0.0),
                };
                let mapping = mappings.get(mi);
                measurements.extend(measurements_of(
                    results.len(),
                    &row,
                    data,
                    &recipe,
                    &params_s,
                    environments.get(mi).unwrap_or(&no_env),
                    mapping,
                ));
                results.push(row);
            }
        }
        Ok(RunRecord {
            uid,
            recipe,
            recipe_hash,
            params: params_s,
            mapping: canonical(&mapping_v),
            meta,
            duration: summary["duration"].as_f64().unwrap_or(0.0),
            result,
            run_dir: canon_dir,
            pool: summary["pool"].as_str().unwrap_or_default().to_string(),
            imported: false,
            results,
            measurements,
            environments,
        })
    }
}

/// `perf tcp 192.0.2.2 (h1 -> h2): run 2/3`: one run of a `perf()`, whose
/// figures the `perf` line itself holds.
fn is_perf_run_line(desc: &str) -> bool {
    desc.rsplit_once(": run ").is_some_and(|(_, t)| {
        t.split_once('/')
            .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
    })
}

/// The series role of a measurement between hosts (`h1->h2`) or on one
/// host (`h1`), with each host's NIC hardware.
pub fn role(hosts: &[&str], env: &Environment) -> String {
    let hw: Vec<String> = hosts
        .iter()
        .map(|h| format!("{h}: {}", hardware(env.get(*h))))
        .collect();
    format!("{} [{}]", hosts.join("->"), hw.join("; "))
}

/// The hosts of a `perf` line: `data.client`/`data.server`, else the
/// `(h1 -> h2)` of its default text.
fn perf_hosts(desc: &str, data: &Map<String, Value>) -> Vec<String> {
    let get = |k: &str| data.get(k).and_then(Value::as_str);
    if let (Some(c), Some(s)) = (get("client"), get("server")) {
        return vec![c.to_string(), s.to_string()];
    }
    if let Some((_, rest)) = desc.split_once(" (") {
        if let Some((inner, _)) = rest.split_once(')') {
            if let Some((c, s)) = inner.split_once(" -> ") {
                return vec![c.to_string(), s.to_string()];
            }
        }
    }
    Vec::new()
}

fn stats(s: &[f64]) -> (f64, f64) {
    let n = s.len() as f64;
    if s.is_empty() {
        return (0.0, 0.0);
    }
    let mean = s.iter().sum::<f64>() / n;
    let sd = if s.len() < 2 {
        0.0
    } else {
        (s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    (mean, sd)
}

fn measurements_of(
    result_idx: usize,
    row: &ResultRow,
    data: &Map<String, Value>,
    recipe: &str,
    params: &str,
    env: &Environment,
    _mapping: Option<&Mapping>,
) -> Vec<Measurement> {
    let key = |hosts: &[&str], metric: &str| SeriesKey {
        recipe: recipe.to_string(),
        params: params.to_string(),
        role: role(hosts, env),
        measurement: row.desc.clone(),
        metric: metric.to_string(),
    };
    let mk = |key: SeriesKey, unit: &str, samples: Vec<f64>, eval: Option<&Value>| {
        let (mean, stddev) = stats(&samples);
        let verdict = eval
            .and_then(|e| e["verdict"].as_str())
            .unwrap_or("NO_BASELINE")
            .to_string();
        let ok_line = row.result == "PASS" || verdict == "FAIL";
        let valid =
            ok_line && verdict != "NOISY" && super::baseline::valid_samples(&key.metric, &samples);
        Measurement {
            result_idx,
            unit: unit.to_string(),
            mean,
            stddev,
            valid,
            verdict,
            change_pct: eval.and_then(|e| e["change_pct"].as_f64()),
            baseline_n: eval.and_then(|e| e["baseline_n"].as_i64()).unwrap_or(0),
            key,
            samples,
        }
    };
    let nums = |v: &Value| -> Vec<f64> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    if let (Some(s), Some(unit)) = (
        data.get("samples"),
        data.get("unit").and_then(Value::as_str),
    ) {
        // A perf() line.
        let hosts = perf_hosts(&row.desc, data);
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        out.push(mk(key(&hosts, unit), unit, nums(s), data.get("evaluation")));
        return out;
    }
    let host = row.host.as_deref().unwrap_or("-");
    if data.contains_key("rtt_avg") && data.contains_key("loss") {
        for (m, unit) in [("rtt_avg", "ms"), ("loss", "%")] {
            if let Some(v) = data[m].as_f64() {
                out.push(mk(key(&[host], m), unit, vec![v], None));
            }
        }
    } else if data.contains_key("bps") && !is_perf_run_line(&row.desc) {
        for (m, unit) in [("bps", "bps"), ("cpu_local", "%"), ("cpu_remote", "%")] {
            if let Some(v) = data.get(m).and_then(Value::as_f64) {
                out.push(mk(key(&[host], m), unit, vec![v], None));
            }
        }
    }
    out
}

/// Writes a run in one transaction. Returns its id and whether it is new
/// (a run already recorded, by its uid, is left as it is).
pub fn insert(db: &mut dyn Db, r: &RunRecord) -> DbResult<(i64, bool)> {
    in_tx(db, |db| {
        let n = db.exec(
            "INSERT INTO runs (uid, recipe, recipe_hash, params, mapping, user_name, controller_host,
                lnst_version, started, started_unix, duration, result, run_dir, pool, imported)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT (uid) DO NOTHING",
            &[
                r.uid.clone().into(),
                r.recipe.clone().into(),
                r.recipe_hash.clone().into(),
                r.params.clone().into(),
                r.mapping.clone().into(),
                r.meta.user.clone().into(),
                r.meta.controller_host.clone().into(),
                r.meta.lnst_version.clone().into(),
                r.meta.started.clone().into(),
                r.meta.started_unix.into(),
                r.duration.into(),
                r.result.clone().into(),
                r.run_dir.display().to_string().into(),
                r.pool.clone().into(),
                Val::I64(r.imported as i64),
            ],
        )?;
        let id = db
            .query(
                "SELECT id FROM runs WHERE uid = ?1",
                &[r.uid.clone().into()],
            )?
            .first()
            .and_then(|row| row[0].i64())
            .ok_or_else(|| super::db::DbError::new("the run row vanished"))?;
        if n == 0 {
            return Ok((id, false));
        }
        let rows: Vec<Vec<Val>> = r
            .results
            .iter()
            .enumerate()
            .map(|(i, x)| {
                vec![
                    Val::I64(id),
                    Val::I64(i as i64),
                    Val::I64(x.match_idx),
                    x.host.clone().into(),
                    x.job.into(),
                    x.desc.clone().into(),
                    x.result.clone().into(),
                    x.note.clone().into(),
                    x.data.clone().into(),
                    x.at.into(),
                ]
            })
            .collect();
        insert_rows(
            db,
            "results (run_id, idx, match_idx, host, job, descr, result, note, data, at)",
            rows,
            "",
        )?;
        // The recipe's series in one query; only new ones are made.
        let mut series_ids: HashMap<(String, String, String, String), i64> = db
            .query(
                "SELECT id, params, role, measurement, metric FROM series WHERE recipe = ?1",
                &[r.recipe.clone().into()],
            )?
            .into_iter()
            .map(|row| {
                (
                    (
                        row[1].string(),
                        row[2].string(),
                        row[3].string(),
                        row[4].string(),
                    ),
                    row[0].i64().unwrap_or(0),
                )
            })
            .collect();
        let mut rows = Vec::with_capacity(r.measurements.len());
        for m in &r.measurements {
            let k = &m.key;
            let sk = (
                k.params.clone(),
                k.role.clone(),
                k.measurement.clone(),
                k.metric.clone(),
            );
            let sid = match series_ids.get(&sk) {
                Some(&s) => s,
                None => {
                    let s = series_id(db, &m.key, &m.unit)?;
                    series_ids.insert(sk, s);
                    s
                }
            };
            rows.push(vec![
                Val::I64(id),
                Val::I64(m.result_idx as i64),
                Val::I64(sid),
                m.mean.into(),
                m.stddev.into(),
                Val::I64(m.samples.len() as i64),
                samples_blob(&m.samples).into(),
                Val::I64(m.valid as i64),
                m.verdict.clone().into(),
                m.change_pct.into(),
                Val::I64(m.baseline_n),
            ]);
        }
        insert_rows(
            db,
            "measurements (run_id, result_idx, series_id, mean, stddev, n, samples, valid, verdict, change_pct, baseline_n)",
            rows,
            " ON CONFLICT DO NOTHING",
        )?;
        for (mi, env) in r.environments.iter().enumerate() {
            for (host, e) in env {
                let json = serde_json::to_string(e).unwrap_or_default();
                let hash = sha256_hex(json.as_bytes());
                db.exec(
                    "INSERT INTO host_envs (hash, env) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    &[hash.clone().into(), json.into()],
                )?;
                db.exec(
                    "INSERT INTO environments (run_id, match_idx, host, machine, kernel, env_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    &[
                        Val::I64(id),
                        Val::I64(mi as i64),
                        host.clone().into(),
                        e.machine.clone().into(),
                        e.kernel.clone().into(),
                        hash.into(),
                    ],
                )?;
            }
        }
        Ok((id, true))
    })
}

/// Rows per multi-row `INSERT`: one statement (one round trip to
/// PostgreSQL) per 64 rows instead of one per row.
const CHUNK: usize = 64;

/// `INSERT INTO table (cols) VALUES (..), (..) ..suffix` in chunks.
fn insert_rows(
    db: &mut dyn Db,
    table_cols: &str,
    rows: Vec<Vec<Val>>,
    suffix: &str,
) -> DbResult<()> {
    let Some(ncols) = rows.first().map(Vec::len) else {
        return Ok(());
    };
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Val>> = rows.by_ref().take(CHUNK).collect();
        let mut sql = format!("INSERT INTO {table_cols} VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..ncols {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("?{}", i * ncols + c + 1));
            }
            sql.push(')');
        }
        sql.push_str(suffix);
        let params: Vec<Val> = chunk.into_iter().flatten().collect();
        db.exec(&sql, &params)?;
    }
    Ok(())
}

/// The id of a series, made if new (safe against a concurrent writer
/// making the same one).
pub fn series_id(db: &mut dyn Db, k: &SeriesKey, unit: &str) -> DbResult<i64> {
    let args: Vec<Val> = vec![
        k.recipe.clone().into(),
        k.params.clone().into(),
        k.role.clone().into(),
        k.measurement.clone().into(),
        k.metric.clone().into(),
    ];
    let sel = "SELECT id FROM series WHERE recipe = ?1 AND params = ?2 AND role = ?3 AND measurement = ?4 AND metric = ?5";
    if let Some(id) = db.query(sel, &args)?.first().and_then(|r| r[0].i64()) {
        return Ok(id);
    }
    let mut ins = args.clone();
    ins.push(unit.into());
    db.exec(
        "INSERT INTO series (recipe, params, role, measurement, metric, unit) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT DO NOTHING",
        &ins,
    )?;
    db.query(sel, &args)?
        .first()
        .and_then(|r| r[0].i64())
        .ok_or_else(|| super::db::DbError::new("the series row vanished"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339(1_700_000_000.0), "2023-11-14T22:13:20Z");
        assert_eq!(
            stamp_unix("20231114-221320-perf_demo"),
            Some(1_700_000_000.0)
        );
        assert_eq!(stamp_unix("20000229-000000-x"), Some(951_782_400.0));
        assert_eq!(stamp_unix("not-a-stamp"), None);
        assert_eq!(stamp_unix("20231314-221320-x"), None);
    }

    #[test]
    fn perf_lines() {
        assert!(is_perf_run_line("perf tcp 1.2.3.4 (h1 -> h2): run 2/3"));
        assert!(!is_perf_run_line("perf tcp 1.2.3.4 (h1 -> h2)"));
        let d = Map::new();
        assert_eq!(
            perf_hosts("perf tcp 1.2.3.4 (h1 -> h2) parallel 2", &d),
            ["h1", "h2"]
        );
        let e = Environment::new();
        assert_eq!(role(&["h1", "h2"], &e), "h1->h2 [h1: ?; h2: ?]");
    }
}
