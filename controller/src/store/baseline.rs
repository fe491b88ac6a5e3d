//! Judging a measurement against its series' history (RECIPES.md §8
//! `evaluation`, §12) and finding change points. docs/DECISIONS.md
//! ("Baselines") says why this method; in short:
//!
//! - **Valid runs only.** A run with a zero or non-finite sample, an
//!   errored job, or its own spread (stddev/mean) above `max_cv` is
//!   `NOISY`: it is recorded but never joins a baseline (LNST's users' zero
//!   samples poisoning rolling averages).
//! - **Change points** (Hunter's idea, a rank statistic in place of
//!   E-divisive's permutations): binary segmentation of the series' run
//!   means; a split is a change point when a Mann-Whitney rank test between
//!   the two sides clears `cp_z` *and* the medians differ by the metric's
//!   minimum effect.
//! - **The baseline** is the last `window` valid runs since the last change
//!   point; fewer than `min_baseline` is `NO_BASELINE`.
//! - **The test**: a robust z-score (Conbench's lookback z-score with the
//!   median and the MAD instead of the mean and the standard deviation, so
//!   one outlier in the baseline neither hides nor fakes a change) must
//!   clear `z` (widened for small baselines), and the change must clear the
//!   metric's minimum effect (`min_effect_pct`, or `min_effect_abs` for
//!   loss). Worse: a suspected regression (`perf()` re-measures once and
//!   only then FAILs); better: `IMPROVED`; else `PASS`.
//!
//! Thresholds come from [`Thresholds`]: built-in defaults, overridden by
//! `~/.config/lnst/baseline.toml` (or `$LNST_BASELINE_CONFIG`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::report::series::Baseline;

/// The verdicts of §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "PASS")]
    Pass,
    /// A regression beyond noise (confirmed once `perf()` re-measured).
    #[serde(rename = "FAIL")]
    Fail,
    #[serde(rename = "IMPROVED")]
    Improved,
    #[serde(rename = "NOISY")]
    Noisy,
    #[serde(rename = "NO_BASELINE")]
    NoBaseline,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Improved => "IMPROVED",
            Verdict::Noisy => "NOISY",
            Verdict::NoBaseline => "NO_BASELINE",
        }
    }
}

/// What `perf()` returns as `evaluation` (plus why, for the result line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub verdict: Verdict,
    /// Change of this run's mean against the baseline's centre, percent;
    /// `None` without a baseline.
    pub change_pct: Option<f64>,
    pub baseline_n: usize,
    /// The robust z-score; `None` without a baseline.
    pub z: Option<f64>,
    /// One line saying why.
    pub reason: String,
    #[serde(skip)]
    pub baseline: Option<Baseline>,
}

/// Per-metric limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricThresholds {
    /// Bigger is better (throughput) or worse (CPU, latency, loss).
    pub higher_is_better: bool,
    /// Smallest change, in percent of the baseline, that counts.
    pub min_effect_pct: f64,
    /// Smallest change in the metric's own unit that counts (loss: 1
    /// percentage point); a change must clear both minimum effects.
    pub min_effect_abs: f64,
    /// A run whose own stddev/mean is above this is NOISY (0: no limit).
    pub max_cv: f64,
    /// Whether a zero sample is invalid (throughput: yes; loss: no).
    pub zero_invalid: bool,
}

impl Default for MetricThresholds {
    fn default() -> Self {
        MetricThresholds {
            higher_is_better: true,
            min_effect_pct: 5.0,
            min_effect_abs: 0.0,
            max_cv: 0.10,
            zero_invalid: true,
        }
    }
}

/// Every threshold of the evaluation (`baseline.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Most recent valid runs in a baseline.
    pub window: usize,
    /// Fewer valid runs since the last change point: NO_BASELINE.
    pub min_baseline: usize,
    /// Robust z-score a change must clear (for a baseline of n runs the
    /// bar is `z * sqrt(1 + 1/n)`).
    pub z: f64,
    /// Mann-Whitney z a change point must clear.
    pub cp_z: f64,
    /// Fewest runs on each side of a change point.
    pub cp_min_segment: usize,
    /// Runs of history searched for change points.
    pub cp_lookback: usize,
    /// Per metric (`bps`, `cpu_local`, `rtt_avg`, `loss`, …); others use
    /// `bps`'s rules if they are throughputs, else `other`.
    pub metric: BTreeMap<String, MetricThresholds>,
}

impl Default for Thresholds {
    fn default() -> Self {
        let lower = |pct: f64, abs: f64, cv: f64, zero_invalid: bool| MetricThresholds {
            higher_is_better: false,
            min_effect_pct: pct,
            min_effect_abs: abs,
            max_cv: cv,
            zero_invalid,
        };
        let metric = BTreeMap::from([
            ("bps".to_string(), MetricThresholds::default()),
            ("cpu_local".to_string(), lower(10.0, 1.0, 0.25, false)),
            ("cpu_remote".to_string(), lower(10.0, 1.0, 0.25, false)),
            ("rtt_avg".to_string(), lower(10.0, 0.005, 0.5, true)),
            ("loss".to_string(), lower(0.0, 1.0, 0.0, false)),
            ("other".to_string(), lower(10.0, 0.0, 0.25, false)),
        ]);
        Thresholds {
            window: 20,
            min_baseline: 3,
            z: 4.0,
            cp_z: 3.0,
            cp_min_segment: 3,
            cp_lookback: 200,
            metric,
        }
    }
}

impl Thresholds {
    /// `$LNST_BASELINE_CONFIG`, else `~/.config/lnst/baseline.toml`.
    pub fn config_path() -> PathBuf {
        if let Some(p) = std::env::var_os("LNST_BASELINE_CONFIG") {
            return p.into();
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| "/root".into())
                    .join(".config")
            });
        base.join("lnst").join("baseline.toml")
    }

    /// The defaults with the config file's values over them; a file that
    /// does not parse is an error naming it.
    pub fn load() -> Result<Thresholds, String> {
        let p = Self::config_path();
        match std::fs::read_to_string(&p) {
            Ok(s) => Self::from_toml(&s).map_err(|e| format!("{}: {e}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Thresholds::default()),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    }

    /// Parses a config: every key it gives replaces the default, one by
    /// one (`[metric.rtt_avg] min_effect_pct = 5` keeps rtt_avg's other
    /// rules); unknown keys are errors.
    pub fn from_toml(s: &str) -> Result<Thresholds, String> {
        let user: toml::Table = toml::from_str(s).map_err(|e| e.to_string())?;
        let mut base = toml::Table::try_from(Thresholds::default()).map_err(|e| e.to_string())?;
        merge(&mut base, user);
        toml::Value::Table(base)
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())
    }

    pub fn for_metric(&self, metric: &str) -> MetricThresholds {
        self.metric
            .get(metric)
            .or_else(|| {
                if metric.ends_with("bps") {
                    self.metric.get("bps")
                } else {
                    self.metric.get("other")
                }
            })
            .cloned()
            .unwrap_or_default()
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Finite, non-empty, and no zero where zero means "nothing measured".
pub fn valid_samples(metric: &str, s: &[f64]) -> bool {
    let zero_invalid = Thresholds::default().for_metric(metric).zero_invalid;
    !s.is_empty()
        && s.iter()
            .all(|v| v.is_finite() && *v >= 0.0 && !(zero_invalid && *v == 0.0))
}

pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median absolute deviation scaled to a normal's sigma.
pub fn mad_sigma(xs: &[f64]) -> f64 {
    let m = median(xs);
    let d: Vec<f64> = xs.iter().map(|x| (x - m).abs()).collect();
    1.4826 * median(&d)
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let m = xs.iter().sum::<f64>() / n;
    let sd = if xs.len() < 2 {
        0.0
    } else {
        (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    };
    (m, sd)
}

/// Ranks (1-based, ties averaged).
fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut r = vec![0.0; xs.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && xs[idx[j + 1]] == xs[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = avg;
        }
        i = j + 1;
    }
    r
}

/// The change effect between two levels passes the metric's minimum
/// effect (relative and absolute).
fn effect_ok(from: f64, to: f64, m: &MetricThresholds) -> bool {
    let d = (to - from).abs();
    let rel = if from.abs() > 0.0 {
        d / from.abs() * 100.0
    } else if d > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    rel >= m.min_effect_pct && d >= m.min_effect_abs && d > 0.0
}

/// Change points of a series of run values (oldest first): the indices
/// where a new level starts. Binary segmentation: in each segment the
/// split is placed where the two-sample t statistic (pooled within-side
/// spread) peaks — at a true step the within-side spread is smallest, so
/// the peak sits on it, where a rank statistic's peak drifts towards the
/// longer side — and it is kept when a Mann-Whitney rank test between the
/// two sides clears `cp_z` (robust to outliers) and their medians differ
/// by the metric's minimum effect; then both halves are searched again.
pub fn change_points(xs: &[f64], metric: &str, t: &Thresholds) -> Vec<usize> {
    let m = t.for_metric(metric);
    let mut out = Vec::new();
    let mut stack = vec![(0usize, xs.len())];
    let min = t.cp_min_segment.max(1);
    while let Some((lo, hi)) = stack.pop() {
        if hi - lo < 2 * min {
            continue;
        }
        let seg = &xs[lo..hi];
        let n = seg.len();
        // Prefix sums for each side's mean and squared deviations.
        let mut s1 = vec![0.0; n + 1];
        let mut s2 = vec![0.0; n + 1];
        for (i, x) in seg.iter().enumerate() {
            s1[i + 1] = s1[i] + x;
            s2[i + 1] = s2[i] + x * x;
        }
        let mut best: Option<(f64, usize)> = None;
        for k in min..=(n - min) {
            let (n1, n2) = (k as f64, (n - k) as f64);
            let (m1, m2) = (s1[k] / n1, (s1[n] - s1[k]) / n2);
            let ss = (s2[k] - n1 * m1 * m1) + (s2[n] - s2[k] - n2 * m2 * m2);
            let pooled = (ss.max(0.0) / (n as f64 - 2.0).max(1.0)).sqrt();
            let se = pooled * (1.0 / n1 + 1.0 / n2).sqrt();
            let tstat = if se > 0.0 {
                (m1 - m2).abs() / se
            } else if m1 != m2 {
                f64::INFINITY
            } else {
                0.0
            };
            if best.is_none_or(|(bt, _)| tstat > bt) {
                best = Some((tstat, k));
            }
        }
        let Some((_, k)) = best else { continue };
        let (left, right) = (&seg[..k], &seg[k..]);
        if mann_whitney_z(left, right).abs() >= t.cp_z && effect_ok(median(left), median(right), &m)
        {
            out.push(lo + k);
            stack.push((lo, lo + k));
            stack.push((lo + k, hi));
        }
    }
    out.sort();
    out
}

/// The Mann-Whitney U of `a` against `b` as a normal z (ties averaged).
pub fn mann_whitney_z(a: &[f64], b: &[f64]) -> f64 {
    let all: Vec<f64> = a.iter().chain(b).copied().collect();
    let r = ranks(&all);
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let r1: f64 = r[..a.len()].iter().sum();
    let u = r1 - n1 * (n1 + 1.0) / 2.0;
    let sd = (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    if sd == 0.0 {
        0.0
    } else {
        (u - n1 * n2 / 2.0) / sd
    }
}

/// The baseline of a history of valid run values (oldest first): the last
/// `window` of those after the last change point, with the band outside
/// which a value is beyond noise. `None` with fewer than `min_baseline`.
pub fn baseline(valid: &[f64], metric: &str, t: &Thresholds) -> (Option<Baseline>, usize) {
    let look = valid.len().saturating_sub(t.cp_lookback);
    let recent = &valid[look..];
    let start = change_points(recent, metric, t)
        .last()
        .copied()
        .unwrap_or(0);
    let since = &recent[start..];
    let b = &since[since.len().saturating_sub(t.window)..];
    if b.len() < t.min_baseline.max(1) {
        return (None, b.len());
    }
    let m = t.for_metric(metric);
    let centre = median(b);
    let sigma = mad_sigma(b);
    let zbar = t.z * (1.0 + 1.0 / b.len() as f64).sqrt();
    let half = (zbar * sigma)
        .max(centre.abs() * m.min_effect_pct / 100.0)
        .max(m.min_effect_abs);
    (
        Some(Baseline {
            n: b.len(),
            centre,
            low: centre - half,
            high: centre + half,
        }),
        b.len(),
    )
}

/// Judges a run's samples against the history of valid run values of its
/// series (oldest first). A `Fail` here is a *suspected* regression:
/// `perf()` measures again and fails only if the second run is one too.
pub fn evaluate(samples: &[f64], history: &[f64], metric: &str, t: &Thresholds) -> Evaluation {
    let m = t.for_metric(metric);
    let noisy = |reason: String| Evaluation {
        verdict: Verdict::Noisy,
        change_pct: None,
        baseline_n: 0,
        z: None,
        reason,
        baseline: None,
    };
    if !valid_samples_with(&m, samples) {
        return noisy(format!(
            "invalid samples {samples:?} (a zero, negative or missing sample): not compared, not part of any baseline"
        ));
    }
    let (mean, sd) = mean_sd(samples);
    let cv = if mean != 0.0 { sd / mean.abs() } else { 0.0 };
    if m.max_cv > 0.0 && cv > m.max_cv {
        return noisy(format!(
            "own spread {:.1}% above {:.1}%: not compared, not part of any baseline",
            cv * 100.0,
            m.max_cv * 100.0
        ));
    }
    let (b, n) = baseline(history, metric, t);
    let Some(b) = b else {
        return Evaluation {
            verdict: Verdict::NoBaseline,
            change_pct: None,
            baseline_n: n,
            z: None,
            reason: format!(
                "{n} valid earlier run(s) since the last change point; a baseline needs {}",
                t.min_baseline
            ),
            baseline: None,
        };
    };
    let since = {
        let look = history.len().saturating_sub(t.cp_lookback);
        let recent = &history[look..];
        let start = change_points(recent, metric, t)
            .last()
            .copied()
            .unwrap_or(0);
        let s = &recent[start..];
        s[s.len().saturating_sub(t.window)..].to_vec()
    };
    let sigma = mad_sigma(&since)
        .max(b.centre.abs() * 1e-9)
        .max(f64::MIN_POSITIVE);
    let z = (mean - b.centre) / sigma;
    let change_pct = if b.centre != 0.0 {
        (mean - b.centre) / b.centre.abs() * 100.0
    } else {
        0.0
    };
    let zbar = t.z * (1.0 + 1.0 / b.n as f64).sqrt();
    let significant = z.abs() >= zbar;
    let big = effect_ok(b.centre, mean, &m);
    let worse = if m.higher_is_better {
        mean < b.centre
    } else {
        mean > b.centre
    };
    let (verdict, reason) = match (significant && big, worse) {
        (true, true) => (
            Verdict::Fail,
            format!("{change_pct:+.1}% against the baseline of {} runs (z {z:.1})", b.n),
        ),
        (true, false) => (
            Verdict::Improved,
            format!("{change_pct:+.1}% against the baseline of {} runs (z {z:.1})", b.n),
        ),
        (false, _) => (
            Verdict::Pass,
            format!(
                "{change_pct:+.1}% is within noise of the baseline of {} runs (z {z:.1}, needs {zbar:.1} and {}%)",
                b.n, m.min_effect_pct
            ),
        ),
    };
    Evaluation {
        verdict,
        change_pct: Some(change_pct),
        baseline_n: b.n,
        z: Some(z),
        reason,
        baseline: Some(b),
    }
}

fn valid_samples_with(m: &MetricThresholds, s: &[f64]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|v| v.is_finite() && *v >= 0.0 && !(m.zero_invalid && *v == 0.0))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A small deterministic generator (splitmix64 + Box-Muller) so that
    /// each seed gives the same history.
    pub struct Rng(u64);
    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
        }
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn uniform(&mut self) -> f64 {
            ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        pub fn normal(&mut self, mean: f64, sd: f64) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            mean + sd * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    /// Run means of `n` runs of 3 samples each, level `mean`, sample
    /// noise `cv`.
    fn run_means(rng: &mut Rng, n: usize, mean: f64, cv: f64) -> Vec<f64> {
        (0..n)
            .map(|_| (0..3).map(|_| rng.normal(mean, mean * cv)).sum::<f64>() / 3.0)
            .collect()
    }

    fn samples(rng: &mut Rng, mean: f64, cv: f64) -> Vec<f64> {
        (0..3).map(|_| rng.normal(mean, mean * cv)).collect()
    }

    #[test]
    fn a_step_change_is_found_and_noise_is_not() {
        let t = Thresholds::default();
        let mut found = 0;
        let mut false_cp = 0;
        let seeds = 500;
        for seed in 0..seeds {
            let mut rng = Rng::new(seed);
            let mut xs = run_means(&mut rng, 30, 10e9, 0.02);
            xs.extend(run_means(&mut rng, 15, 8.5e9, 0.02));
            let cps = change_points(&xs, "bps", &t);
            if cps.iter().any(|&c| (28..=32).contains(&c)) {
                found += 1;
            }
            let noise = run_means(&mut rng, 45, 10e9, 0.02);
            if !change_points(&noise, "bps", &t).is_empty() {
                false_cp += 1;
            }
        }
        eprintln!(
            "change points: step found in {found}/{seeds}, noise flagged in {false_cp}/{seeds}"
        );
        assert!(found >= seeds * 99 / 100, "{found}/{seeds}");
        assert!(false_cp <= seeds / 100, "{false_cp}/{seeds}");
    }

    #[test]
    fn a_regression_fails_an_improvement_is_marked_noise_passes() {
        let t = Thresholds::default();
        let mut rng = Rng::new(7);
        let hist = run_means(&mut rng, 20, 10e9, 0.02);
        let e = evaluate(&samples(&mut rng, 8.5e9, 0.02), &hist, "bps", &t);
        assert_eq!(e.verdict, Verdict::Fail, "{e:?}");
        assert!(e.change_pct.unwrap() < -10.0 && e.baseline_n == 20, "{e:?}");
        let e = evaluate(&samples(&mut rng, 11.5e9, 0.02), &hist, "bps", &t);
        assert_eq!(e.verdict, Verdict::Improved, "{e:?}");
        let e = evaluate(&samples(&mut rng, 10e9, 0.02), &hist, "bps", &t);
        assert_eq!(e.verdict, Verdict::Pass, "{e:?}");
        // Latency: higher is worse.
        let lat = run_means(&mut rng, 10, 0.1, 0.02);
        assert_eq!(
            evaluate(&[0.13, 0.13, 0.13], &lat, "rtt_avg", &t).verdict,
            Verdict::Fail
        );
        assert_eq!(
            evaluate(&[0.07, 0.07, 0.07], &lat, "rtt_avg", &t).verdict,
            Verdict::Improved
        );
    }

    #[test]
    fn invalid_runs_are_noisy_and_small_histories_have_no_baseline() {
        let t = Thresholds::default();
        let hist = vec![10e9; 10];
        assert_eq!(
            evaluate(&[10e9, 0.0, 10e9], &hist, "bps", &t).verdict,
            Verdict::Noisy
        );
        assert_eq!(evaluate(&[], &hist, "bps", &t).verdict, Verdict::Noisy);
        assert_eq!(
            evaluate(&[5e9, 15e9, 10e9], &hist, "bps", &t).verdict,
            Verdict::Noisy
        );
        let e = evaluate(&[10e9], &hist[..2], "bps", &t);
        assert_eq!((e.verdict, e.baseline_n), (Verdict::NoBaseline, 2));
        assert!(!valid_samples("bps", &[1.0, 0.0]) && valid_samples("loss", &[0.0]));
    }

    #[test]
    fn the_baseline_restarts_at_a_change_point() {
        let t = Thresholds::default();
        let mut rng = Rng::new(3);
        let mut hist = run_means(&mut rng, 30, 10e9, 0.01);
        hist.extend(run_means(&mut rng, 8, 8e9, 0.01));
        let (b, n) = baseline(&hist, "bps", &t);
        let b = b.unwrap();
        assert_eq!(n, 8);
        assert!((b.centre - 8e9).abs() < 0.2e9, "{b:?}");
        assert!(b.low < b.centre && b.centre < b.high);
        // A value at the new level passes.
        assert_eq!(
            evaluate(&samples(&mut rng, 8e9, 0.01), &hist, "bps", &t).verdict,
            Verdict::Pass
        );
    }

    /// False alarms of `evaluate` on noise alone, over many seeds, for a
    /// single evaluation and with `perf()`'s re-measurement (both must
    /// fail). docs/DECISIONS.md quotes these figures.
    #[test]
    fn false_alarm_rate_on_noise() {
        let t = Thresholds::default();
        let seeds = 20_000u64;
        for cv in [0.01, 0.03, 0.05] {
            let (mut once, mut confirmed) = (0u64, 0u64);
            for seed in 0..seeds {
                let mut rng = Rng::new(1_000_000 + seed);
                let hist = run_means(&mut rng, 20, 10e9, cv);
                if evaluate(&samples(&mut rng, 10e9, cv), &hist, "bps", &t).verdict == Verdict::Fail
                {
                    once += 1;
                    if evaluate(&samples(&mut rng, 10e9, cv), &hist, "bps", &t).verdict
                        == Verdict::Fail
                    {
                        confirmed += 1;
                    }
                }
            }
            eprintln!(
                "false alarms over {seeds} noise-only histories ({:.0}% sample noise): suspected {once} ({:.3}%), confirmed {confirmed} ({:.4}%)",
                cv * 100.0,
                once as f64 * 100.0 / seeds as f64,
                confirmed as f64 * 100.0 / seeds as f64
            );
            assert!(once * 100 <= seeds, "{cv}: suspected {once}/{seeds}");
            assert!(
                confirmed * 1000 <= seeds,
                "{cv}: confirmed {confirmed}/{seeds}"
            );
        }
    }

    /// How often a real throughput drop is confirmed (both measurements
    /// FAIL), with 3 % sample noise and 20-run baselines.
    #[test]
    fn detection_rate_of_a_real_regression() {
        let t = Thresholds::default();
        let seeds = 2_000u64;
        for (drop, want_pct) in [(0.10, 80), (0.15, 99)] {
            let mut confirmed = 0;
            for seed in 0..seeds {
                let mut rng = Rng::new(5_000_000 + seed);
                let hist = run_means(&mut rng, 20, 10e9, 0.03);
                let level = 10e9 * (1.0 - drop);
                let fail = |rng: &mut Rng| {
                    evaluate(&samples(rng, level, 0.03), &hist, "bps", &t).verdict == Verdict::Fail
                };
                if fail(&mut rng) && fail(&mut rng) {
                    confirmed += 1;
                }
            }
            eprintln!(
                "a {:.0}% drop (3% sample noise) confirmed in {confirmed}/{seeds} ({:.1}%)",
                drop * 100.0,
                confirmed as f64 * 100.0 / seeds as f64
            );
            assert!(
                confirmed * 100 >= seeds * want_pct,
                "{drop}: {confirmed}/{seeds}"
            );
        }
    }

    #[test]
    fn config_overrides_defaults() {
        let t =
            Thresholds::from_toml("z = 5.0\n[metric.bps]\nmin_effect_pct = 2.0\nmax_cv = 0.2\n")
                .unwrap();
        assert_eq!(t.z, 5.0);
        assert_eq!(t.for_metric("bps").min_effect_pct, 2.0);
        assert!(t.for_metric("bps").higher_is_better);
        assert_eq!(t.for_metric("rtt_avg").min_effect_pct, 10.0);
        let t = Thresholds::from_toml("[metric.rtt_avg]\nmin_effect_pct = 3.0\n").unwrap();
        assert!(!t.for_metric("rtt_avg").higher_is_better);
        assert_eq!(t.for_metric("rtt_avg").min_effect_pct, 3.0);
        assert!(Thresholds::from_toml("zz = 1").is_err());
    }
}
