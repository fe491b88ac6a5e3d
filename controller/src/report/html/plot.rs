//! A measurement drawn as inline SVG: one column per earlier run of its
//! series (every sample a small dot, the run's mean a larger one coloured
//! by its verdict), the baseline band and its centre behind them, a
//! dashed line where a change point restarted the baseline, and this
//! run's samples in the last column. With no history the plot shows the
//! run's samples one per column and their mean.
//!
//! With a long history only the last [`SAMPLE_COLUMNS`] runs show their
//! individual samples; older runs show their mean.
//!
//! Elements carry classes (`band`, `centre`, `point`, `sample`, `change`,
//! `current`, `mean`) so tests and style sheets can find them, and a
//! `<title>` each (the browser's tooltip).

use std::fmt::Write as _;

use super::escape::esc;
use crate::report::series::SeriesHistory;

const W: f64 = 680.0;
const H: f64 = 250.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;
/// Individual samples are drawn for the last this many columns only; older
/// runs show their mean (keeps a long history's page small: 200 runs of
/// 10 samples would be 2 000 dots per plot).
pub const SAMPLE_COLUMNS: usize = 40;

/// This run's part of a plot.
pub struct Current<'a> {
    /// The run's id (its directory name).
    pub label: &'a str,
    pub samples: &'a [f64],
    pub mean: f64,
    /// `PASS`, `FAIL`, ... (a class of the page's style sheet).
    pub verdict: &'a str,
}

/// What to draw.
pub struct Plot<'a> {
    /// `bps`, `%`, `ms`, ...: how values are labelled.
    pub unit: &'a str,
    pub history: Option<&'a SeriesHistory>,
    pub current: Option<Current<'a>>,
}

/// The colour of a verdict (as the page's `.PASS`, `.FAIL`, ... classes).
pub fn verdict_colour(v: &str) -> &'static str {
    match v {
        "PASS" => "#1f8a3b",
        "FAIL" => "#c62828",
        "ERROR" => "#8e24aa",
        "IMPROVED" => "#1565c0",
        "NOISY" => "#b58900",
        _ => "#6d7580",
    }
}

/// A value with its unit, scaled for reading (`9.02 Gbit/s`).
pub fn fmt_value(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    match unit {
        "bps" => {
            let a = v.abs();
            let (d, u) = if a >= 1e9 {
                (1e9, "Gbit/s")
            } else if a >= 1e6 {
                (1e6, "Mbit/s")
            } else if a >= 1e3 {
                (1e3, "kbit/s")
            } else {
                (1.0, "bit/s")
            };
            format!("{} {u}", sig(v / d))
        }
        "" => sig(v),
        u => format!("{} {u}", sig(v)),
    }
}

/// Tick labels of one axis: the same scale and as many decimals as the
/// step needs (`8.0 Gbit/s`, `8.5 Gbit/s`), not four significant digits each.
fn fmt_ticks(ts: &[f64], unit: &str) -> Vec<String> {
    let top = ts.iter().fold(0f64, |a, t| a.max(t.abs()));
    let step = if ts.len() > 1 {
        (ts[1] - ts[0]).abs()
    } else {
        top.max(1.0)
    };
    let (div, u) = match unit {
        "bps" if top >= 1e9 => (1e9, " Gbit/s"),
        "bps" if top >= 1e6 => (1e6, " Mbit/s"),
        "bps" if top >= 1e3 => (1e3, " kbit/s"),
        "bps" => (1.0, " bit/s"),
        _ => (1.0, ""),
    };
    let u = if unit == "bps" || unit.is_empty() {
        u.to_string()
    } else {
        format!(" {unit}")
    };
    if !(1e-3..1e7).contains(&(top / div)) && top != 0.0 {
        return ts.iter().map(|t| format!("{:.2e}{u}", t / div)).collect();
    }
    let decimals = (-(step / div).log10().floor()).clamp(0.0, 6.0) as usize;
    ts.iter()
        .map(|t| format!("{:.decimals$}{u}", t / div))
        .collect()
}

/// Four significant digits, no exponent for everyday magnitudes.
fn sig(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&a) {
        format!("{v:.3e}")
    } else {
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        format!("{v:.decimals$}")
    }
}

/// Tick positions: about `n` round numbers covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = hi - lo;
    if span <= 0.0 || !span.is_finite() {
        return vec![lo];
    }
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 50 {
        out.push(t);
        t += step;
    }
    out
}

struct Column<'a> {
    label: String,
    title: String,
    samples: &'a [f64],
    mean: f64,
    verdict: &'a str,
    change_point: bool,
    current: bool,
}

/// The plot as an `<svg>` element.
pub fn svg(p: &Plot) -> String {
    let hist_points = p.history.map(|h| h.points.as_slice()).unwrap_or(&[]);
    let mut cols: Vec<Column> = Vec::new();
    let by_sample = hist_points.is_empty();
    if by_sample {
        // No history: one column per sample of this run.
        if let Some(c) = &p.current {
            for (i, s) in c.samples.iter().enumerate() {
                cols.push(Column {
                    label: format!("{}", i + 1),
                    title: format!("sample {}: {}", i + 1, fmt_value(*s, p.unit)),
                    samples: std::slice::from_ref(s),
                    mean: *s,
                    verdict: c.verdict,
                    change_point: false,
                    current: true,
                });
            }
        }
    } else {
        // `MM-DD`, or `MM-DD HH:MM` when two runs share a day.
        let days: std::collections::BTreeSet<&str> = hist_points
            .iter()
            .filter_map(|p| p.started.get(..10))
            .collect();
        let end = if days.len() == hist_points.len() {
            10
        } else {
            16
        };
        for pt in hist_points {
            cols.push(Column {
                label: pt
                    .started
                    .get(5..end)
                    .map(|l| l.replace('T', " "))
                    .unwrap_or_else(|| pt.started.clone()),
                title: format!(
                    "{} ({}): mean {} over {} sample(s), {}{}",
                    pt.run_id,
                    pt.started,
                    fmt_value(pt.mean, p.unit),
                    pt.samples.len(),
                    pt.verdict,
                    if pt.change_point {
                        ", change point"
                    } else {
                        ""
                    }
                ),
                samples: &pt.samples,
                mean: pt.mean,
                verdict: &pt.verdict,
                change_point: pt.change_point,
                current: false,
            });
        }
        if let Some(c) = &p.current {
            cols.push(Column {
                label: "this run".into(),
                title: format!(
                    "{}: mean {} over {} sample(s), {}",
                    c.label,
                    fmt_value(c.mean, p.unit),
                    c.samples.len(),
                    c.verdict
                ),
                samples: c.samples,
                mean: c.mean,
                verdict: c.verdict,
                change_point: false,
                current: true,
            });
        }
    }
    let band = p.history.and_then(|h| h.baseline.as_ref());

    // Y range over everything drawn.
    let mut vals: Vec<f64> = cols
        .iter()
        .flat_map(|c| c.samples.iter().copied().chain([c.mean]))
        .filter(|v| v.is_finite())
        .collect();
    if let Some(b) = band {
        vals.extend(
            [b.low, b.high, b.centre]
                .into_iter()
                .filter(|v| v.is_finite()),
        );
    }
    let (mut lo, mut hi) = vals
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let pad = if hi == 0.0 { 1.0 } else { hi.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    } else {
        let pad = (hi - lo) * 0.08;
        lo -= pad;
        hi += pad;
    }
    // Throughput and the like start at 0 when 0 is near.
    if lo > 0.0 && lo < (hi - lo) * 0.5 {
        lo = 0.0;
    }
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let y = |v: f64| TOP + plot_h * (1.0 - (v - lo) / (hi - lo));
    let n = cols.len().max(1) as f64;
    let x = |i: usize| LEFT + plot_w * (i as f64 + 0.5) / n;

    let mut s = String::with_capacity(4096 + cols.len() * 400);
    let _ = write!(
        s,
        r#"<svg class="plot" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">"#
    );
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fbfcfe" stroke="#d8dde6"/>"##
    );
    // Axis and grid.
    let ts = ticks(lo, hi, 5);
    for (t, label) in ts.iter().zip(fmt_ticks(&ts, p.unit)) {
        let ty = y(*t);
        let _ = write!(
            s,
            r##"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{ty:.1}" y2="{ty:.1}" stroke="#eceff4"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#4a5160">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            ty + 4.0,
            esc(&label)
        );
    }
    let wcol = plot_w / n;
    if let Some(i) = cols.iter().position(|c| c.current).filter(|_| !by_sample) {
        let _ = write!(
            s,
            r##"<rect class="current" x="{:.1}" y="{TOP}" width="{wcol:.1}" height="{plot_h}" fill="#fff8e1"/>"##,
            x(i) - wcol / 2.0
        );
    }
    if let Some(b) = band {
        let (y1, y2) = (y(b.high), y(b.low));
        // Over the runs it was computed from (the last `n` earlier runs)
        // and on to the right edge, where a new run is judged against it.
        let first = hist_points.len().saturating_sub(b.n);
        let bx = LEFT + wcol * first as f64;
        let _ = write!(
            s,
            r##"<rect class="band" x="{bx:.1}" y="{y1:.1}" width="{:.1}" height="{:.1}" fill="#1565c0" fill-opacity="0.12"><title>baseline of {} run(s): {} .. {}</title></rect>"##,
            LEFT + plot_w - bx,
            (y2 - y1).max(0.5),
            b.n,
            esc(&fmt_value(b.low, p.unit)),
            esc(&fmt_value(b.high, p.unit))
        );
        let yc = y(b.centre);
        let _ = write!(
            s,
            r##"<line class="centre" x1="{bx:.1}" x2="{:.1}" y1="{yc:.1}" y2="{yc:.1}" stroke="#1565c0" stroke-dasharray="6 3"><title>baseline centre {}</title></line>"##,
            LEFT + plot_w,
            esc(&fmt_value(b.centre, p.unit))
        );
    }
    if by_sample {
        if let Some(c) = p.current.as_ref().filter(|c| c.mean.is_finite()) {
            let ym = y(c.mean);
            let _ = write!(
                s,
                r##"<line class="mean" x1="{LEFT}" x2="{:.1}" y1="{ym:.1}" y2="{ym:.1}" stroke="#4a5160" stroke-dasharray="4 3"><title>mean {}</title></line>"##,
                LEFT + plot_w,
                esc(&fmt_value(c.mean, p.unit))
            );
        }
    }
    let label_every = (cols.len() / 10).max(1);
    let samples_from = cols.len().saturating_sub(SAMPLE_COLUMNS);
    for (i, c) in cols.iter().enumerate() {
        let cx = x(i);
        let colour = verdict_colour(c.verdict);
        if c.change_point {
            let xl = cx - plot_w / n / 2.0;
            let _ = write!(
                s,
                r##"<g class="change"><line x1="{xl:.1}" x2="{xl:.1}" y1="{TOP}" y2="{:.1}" stroke="#e65100" stroke-width="1.5" stroke-dasharray="5 3"/><path d="M{:.1} {TOP} l5 -0 l-5 8 l-5 -8 z" fill="#e65100"/><title>change point at {}</title></g>"##,
                TOP + plot_h,
                xl,
                esc(&c.title)
            );
        }
        if !by_sample && i >= samples_from {
            for v in c.samples.iter().filter(|v| v.is_finite()) {
                let _ = write!(
                    s,
                    r##"<circle class="sample" cx="{cx:.1}" cy="{:.1}" r="2.2" fill="{colour}" fill-opacity="0.45"/>"##,
                    y(*v)
                );
            }
        }
        if c.mean.is_finite() {
            let _ = write!(
                s,
                r##"<circle class="point{}" cx="{cx:.1}" cy="{:.1}" r="{}" fill="{colour}" stroke="#fff" stroke-width="1"><title>{}</title></circle>"##,
                if c.current { " current" } else { "" },
                y(c.mean),
                if by_sample { 4.0 } else { 4.5 },
                esc(&c.title)
            );
        }
        if i % label_every == 0 || c.current && !by_sample {
            let _ = write!(
                s,
                r##"<text x="{cx:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#4a5160">{}</text>"##,
                TOP + plot_h + 15.0,
                esc(&c.label)
            );
        }
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#6d7580">{}</text>"##,
        LEFT + plot_w / 2.0,
        H - 6.0,
        if by_sample {
            "sample (no history yet)"
        } else {
            "run (oldest first)"
        }
    );
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::series::{Baseline, HistoryPoint, SeriesKey};

    fn hist(means: &[f64], cp_at: Option<usize>) -> SeriesHistory {
        SeriesHistory {
            key: SeriesKey {
                recipe: "r.rhai".into(),
                params: "{}".into(),
                role: "h1->h2".into(),
                measurement: "perf".into(),
                metric: "bps".into(),
            },
            unit: "bps".into(),
            points: means
                .iter()
                .enumerate()
                .map(|(i, m)| HistoryPoint {
                    run_id: format!("run{i}"),
                    started: format!("2026-11-{:02}T10:00:00Z", i + 1),
                    mean: *m,
                    samples: vec![m * 0.99, m * 1.01],
                    verdict: "PASS".into(),
                    change_point: Some(i) == cp_at,
                })
                .collect(),
            baseline: Some(Baseline {
                n: 3,
                centre: 5e9,
                low: 4.8e9,
                high: 5.2e9,
            }),
        }
    }

    #[test]
    fn history_draws_band_points_and_change() {
        let h = hist(&[9e9, 9e9, 9e9, 5e9, 5e9, 5e9], Some(3));
        let samples = [5.1e9, 4.9e9];
        let s = svg(&Plot {
            unit: "bps",
            history: Some(&h),
            current: Some(Current {
                label: "now",
                samples: &samples,
                mean: 5e9,
                verdict: "PASS",
            }),
        });
        assert_eq!(s.matches("class=\"band\"").count(), 1, "{s}");
        assert_eq!(s.matches("class=\"point").count(), 7);
        assert_eq!(s.matches("class=\"point current\"").count(), 1);
        assert_eq!(s.matches("class=\"sample\"").count(), 14);
        assert_eq!(s.matches("class=\"change\"").count(), 1);
        assert!(
            s.contains("baseline of 3 run(s): 4.800 Gbit/s .. 5.200 Gbit/s"),
            "{s}"
        );
        // Earlier means at 9e9 are drawn higher (smaller y) than the band.
        let ys: Vec<f64> = s
            .split("class=\"point\" cx=\"")
            .skip(1)
            .map(|p| {
                p.split("cy=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(ys[0] < ys[3], "{ys:?}");
    }

    #[test]
    fn no_history_draws_just_the_samples() {
        let samples = [1.0, 2.0, 3.0];
        let s = svg(&Plot {
            unit: "ms",
            history: None,
            current: Some(Current {
                label: "now",
                samples: &samples,
                mean: 2.0,
                verdict: "FAIL",
            }),
        });
        assert!(!s.contains("class=\"band\""));
        assert!(!s.contains("class=\"change\""));
        assert_eq!(s.matches("class=\"point current\"").count(), 3);
        assert!(s.contains("class=\"mean\""));
        assert!(s.contains("sample 2: 2.000 ms"), "{s}");
        assert!(s.contains(verdict_colour("FAIL")));
    }

    #[test]
    fn values_and_ticks() {
        assert_eq!(fmt_value(9.02e9, "bps"), "9.020 Gbit/s");
        assert_eq!(fmt_value(507.5e6, "bps"), "507.5 Mbit/s");
        assert_eq!(fmt_value(12.5, "%"), "12.50 %");
        let t = ticks(0.0, 9.5e9, 5);
        assert_eq!(t.first(), Some(&0.0));
        assert!(t.len() >= 4 && t.len() <= 7, "{t:?}");
        assert_eq!(ticks(3.0, 3.0, 5), vec![3.0]);
        assert_eq!(
            fmt_ticks(&[8.0e9, 8.5e9, 9.0e9], "bps"),
            ["8.0 Gbit/s", "8.5 Gbit/s", "9.0 Gbit/s"]
        );
        assert_eq!(fmt_ticks(&[0.0, 20.0, 40.0], "%"), ["0 %", "20 %", "40 %"]);
    }
}
