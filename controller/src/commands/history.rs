//! `lnst-ctl history [RECIPE] [--db URL] [--runs N] [--points N] [--json]`:
//! the recorded runs (newest first); with a recipe, also each series'
//! trend (its last values, change points, the baseline a new run is
//! judged against) and its flaky checks (results whose verdict flipped
//! between PASS and FAIL more than once).

use anyhow::anyhow;
use serde::Serialize;

use crate::db::DbTarget;
use crate::exit::{ExitCode, Failure};
use crate::report::series::SeriesHistory;
use crate::store::{RunInfo, Store, StoreError};

/// A check that flipped: its description and verdicts, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct Flaky {
    pub desc: String,
    pub verdicts: Vec<String>,
    pub flips: usize,
}

#[derive(Debug, Serialize)]
struct Out {
    db: String,
    recipe: Option<String>,
    total_runs: i64,
    runs: Vec<RunInfo>,
    trends: Vec<SeriesHistory>,
    flaky: Vec<Flaky>,
}

/// How many times a sequence of verdicts changes between PASS and FAIL
/// (ERROR lines count as FAIL).
pub fn flips(v: &[String]) -> usize {
    let pass: Vec<bool> = v.iter().map(|s| s == "PASS").collect();
    pass.windows(2).filter(|w| w[0] != w[1]).count()
}

/// A value in its unit (`9.41 Gbit/s`, `0.052 ms`, `12.5 %`).
pub fn human(v: f64, unit: &str) -> String {
    match unit {
        "bps" => crate::modules::human_bps(v),
        "ms" => format!("{v:.3} ms"),
        "%" => format!("{v:.2} %"),
        u => format!("{v:.4} {u}"),
    }
}

/// `▁▂▅█` of values (empty for none).
fn sparkline(xs: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (lo, hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    xs.iter()
        .map(|&x| {
            if hi > lo {
                BARS[(((x - lo) / (hi - lo)) * 7.0).round() as usize]
            } else {
                BARS[3]
            }
        })
        .collect()
}

pub fn exec(
    recipe: Option<&str>,
    db: Option<&str>,
    runs: usize,
    points: usize,
    json: bool,
) -> Result<ExitCode, Failure> {
    let target = DbTarget::resolve(db);
    // A missing file is a mistyped --db or no run recorded yet (exit 2),
    // not a new empty store made at that path.
    let mut store = Store::open_existing(&target).map_err(|e| {
        let code = match e {
            StoreError::NotCreated { .. } => ExitCode::Usage,
            _ => ExitCode::Infra,
        };
        Failure::new(code, anyhow!(e))
    })?;
    let infra = |e: crate::store::StoreError| Failure::new(ExitCode::Infra, anyhow!(e));
    // `history recipes/x.rhai` and `history x.rhai` name the same recipe.
    let recipe = recipe.map(|r| {
        std::path::Path::new(r)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| r.to_string())
    });
    let total = store.count_runs(recipe.as_deref()).map_err(infra)?;
    let list = store.runs(recipe.as_deref(), runs).map_err(infra)?;
    let mut trends = Vec::new();
    let mut flaky = Vec::new();
    if let Some(r) = &recipe {
        for (key, _) in store.series(Some(r)).map_err(infra)? {
            trends.push(store.series_history(&key, points).map_err(infra)?);
        }
        for (desc, verdicts) in store.result_verdicts(r, points).map_err(infra)? {
            let n = flips(&verdicts);
            if n >= 2 {
                flaky.push(Flaky {
                    desc,
                    verdicts,
                    flips: n,
                });
            }
        }
    }
    let out = Out {
        db: target.to_string(),
        recipe: recipe.clone(),
        total_runs: total,
        runs: list,
        trends,
        flaky,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(ExitCode::Pass);
    }
    print!("{}", render(&out));
    Ok(ExitCode::Pass)
}

fn render(o: &Out) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let what = o
        .recipe
        .as_deref()
        .map_or("runs".to_string(), |r| format!("runs of {r}"));
    let _ = writeln!(
        s,
        "{} {what} in {} (newest {} shown)",
        o.total_runs,
        o.db,
        o.runs.len()
    );
    if o.runs.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\n{:>6}  {:<20}  {:<6}  {:>8}  {:<8}  {:<18}  run dir",
        "RUN", "STARTED", "RESULT", "TIME", "USER", "RECIPE"
    );
    for r in &o.runs {
        let _ = writeln!(
            s,
            "{:>6}  {:<20}  {:<6}  {:>7.1}s  {:<8}  {:<18}  {}{}",
            r.id,
            r.started,
            r.result,
            r.duration,
            r.user,
            r.recipe,
            r.run_dir.display(),
            if r.imported { " (imported)" } else { "" }
        );
    }
    if o.recipe.is_none() {
        return s;
    }
    let _ = writeln!(s, "\ntrends (oldest → newest; | marks a change point):");
    if o.trends.is_empty() {
        let _ = writeln!(s, "  (no measurements recorded)");
    }
    for h in &o.trends {
        let k = &h.key;
        let _ = writeln!(
            s,
            "  {} · {}  {}  params {}",
            k.measurement, k.metric, k.role, k.params
        );
        let bars: Vec<char> = sparkline(&h.points.iter().map(|p| p.mean).collect::<Vec<_>>())
            .chars()
            .collect();
        let mut line = String::new();
        for (p, b) in h.points.iter().zip(bars) {
            if p.change_point {
                line.push('|');
            }
            line.push(b);
        }
        let last = h.points.last();
        let _ = writeln!(
            s,
            "    {line}  {} run(s); last {} ({})",
            h.points.len(),
            last.map_or("-".into(), |p| human(p.mean, &h.unit)),
            last.map_or("-", |p| p.verdict.as_str()),
        );
        let cps: Vec<&str> = h
            .points
            .iter()
            .filter(|p| p.change_point)
            .map(|p| p.run_id.as_str())
            .collect();
        if !cps.is_empty() {
            let _ = writeln!(s, "    change points at run(s) {}", cps.join(", "));
        }
        match &h.baseline {
            Some(b) => {
                let _ = writeln!(
                    s,
                    "    baseline {} over {} run(s); beyond noise outside {} .. {}",
                    human(b.centre, &h.unit),
                    b.n,
                    human(b.low, &h.unit),
                    human(b.high, &h.unit)
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "    no baseline yet (too few valid runs since the last change point)"
                );
            }
        }
    }
    let _ = writeln!(s, "\nflaky checks (PASS/FAIL flipped twice or more):");
    if o.flaky.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for f in &o.flaky {
        let seq: String = f
            .verdicts
            .iter()
            .map(|v| v.chars().next().unwrap_or('?'))
            .collect();
        let _ = writeln!(
            s,
            "  {}  {seq}  ({} flips in {} runs)",
            f.desc,
            f.flips,
            f.verdicts.len()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_and_sparklines() {
        let v = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(flips(&v("PASS FAIL PASS FAIL")), 3);
        assert_eq!(flips(&v("PASS PASS FAIL FAIL")), 1);
        assert_eq!(flips(&v("PASS ERROR PASS")), 2);
        assert_eq!(sparkline(&[1.0, 2.0, 3.0]), "▁▅█");
        assert_eq!(human(9.41e9, "bps"), "9.41 Gbit/s");
    }
}
