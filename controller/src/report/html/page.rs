//! The run page: for each run a header (recipe, params, lnst version,
//! start, duration, result, lab or pool), then per match the topology,
//! the result tree (verdict, host, job, line, key figures, the job's
//! output) and a plot per measurement. Several runs make one page with a
//! section each and a table of contents.
//!
//! Job output: a file of at most [`INLINE_MAX`] bytes is inlined in a
//! collapsed `<details>`; every existing file is also linked by a path
//! relative to the HTML file (so the page keeps working when the run
//! directory and the page move together).

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use super::escape::{esc, href_path};
use super::model::{JobOutput, MatchModel, ReportModel, INLINE_MAX};
use super::plot::{self, fmt_value, Current, Plot};
use super::{topology, CSS};

/// Renders the page for `runs`; `html_dir` is the directory the page is
/// written to (job output links are relative to it).
pub fn render(runs: &[ReportModel], html_dir: &Path) -> String {
    let mut s = String::with_capacity(
        16 * 1024
            + runs
                .iter()
                .map(|r| r.matches.iter().map(|m| m.results.len()).sum::<usize>())
                .sum::<usize>()
                * 600,
    );
    let title = match runs {
        [one] => format!("lnst report: {} {}", one.recipe, one.result.as_str()),
        _ => format!("lnst report: {} runs", runs.len()),
    };
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{CSS}</style></head><body>\n",
        esc(&title)
    );
    if runs.len() > 1 {
        s.push_str("<h1>lnst report</h1><table class=\"toc\"><tr><th>run</th><th>recipe</th><th>started</th><th>result</th></tr>");
        for (i, r) in runs.iter().enumerate() {
            let _ = write!(
                s,
                "<tr><td><a href=\"#run-{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                i + 1,
                esc(&r.id),
                esc(&r.recipe),
                esc(r.started.as_deref().unwrap_or("?")),
                verdict(r.result.as_str())
            );
        }
        s.push_str("</table>\n");
    }
    for (i, r) in runs.iter().enumerate() {
        run_section(&mut s, r, i + 1, html_dir);
    }
    let _ = write!(
        s,
        "<p class=\"muted\">Written by lnst-ctl {} (<code>lnst-ctl report</code>). This file needs nothing else to be viewed; job output up to {INLINE_MAX} bytes is inlined, all output is linked relative to this file.</p>\n</body></html>\n",
        esc(env!("CARGO_PKG_VERSION"))
    );
    s
}

/// `<span class="verdict PASS">PASS</span>`
pub(crate) fn verdict(v: &str) -> String {
    format!("<span class=\"verdict {0}\">{0}</span>", esc(v))
}

/// Params as `-- k=v` would give them: `mtu=9000 mode=active-backup`
/// (strings bare, everything else as JSON).
pub fn params_line(params: &serde_json::Map<String, serde_json::Value>) -> String {
    params
        .iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => format!("{k}={s}"),
            None => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_section(s: &mut String, r: &ReportModel, n: usize, html_dir: &Path) {
    let _ = write!(
        s,
        "<section class=\"run\" id=\"run-{n}\"><h1>{} {}</h1>\n<table class=\"header\">",
        esc(&r.recipe),
        verdict(r.result.as_str())
    );
    let params = if r.params.is_empty() {
        "(none)".to_string()
    } else {
        params_line(&r.params)
    };
    let rows: Vec<(&str, String)> = vec![
        ("run", r.id.clone()),
        ("recipe", r.recipe.clone()),
        ("params", params),
        (
            "lnst version",
            r.lnst_version
                .clone()
                .unwrap_or_else(|| "not recorded".into()),
        ),
        (
            "started",
            r.started.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("duration", format!("{:.2} s", r.duration)),
        (
            "lab / pool",
            match (&r.lab, r.lab_ms) {
                (Some(id), Some(ms)) => format!("{} (lab {id}, built in {ms:.0} ms)", r.pool),
                (Some(id), None) => format!("{} (lab {id})", r.pool),
                _ => r.pool.clone(),
            },
        ),
        ("run directory", r.run_dir.display().to_string()),
    ];
    for (k, v) in rows {
        let _ = write!(
            s,
            "<tr><th>{k}</th><td class=\"mono\">{}</td></tr>",
            esc(&v)
        );
    }
    let _ = write!(
        s,
        "<tr><th>result</th><td>{}</td></tr>",
        verdict(r.result.as_str())
    );
    if r.insecure {
        s.push_str("<tr><th>warning</th><td>agents were driven over TCP without authentication (--insecure)</td></tr>");
    }
    for note in &r.notes {
        let _ = write!(s, "<tr><th>note</th><td>{}</td></tr>", esc(note));
    }
    for e in &r.cleanup_errors {
        let _ = write!(
            s,
            "<tr class=\"row-ERROR\"><th>cleanup error</th><td>{}</td></tr>",
            esc(e)
        );
    }
    s.push_str("</table>\n");
    let nm = r.matches.len();
    for (i, m) in r.matches.iter().enumerate() {
        match_section(s, r, m, i + 1, nm, html_dir);
    }
    if r.environment.iter().any(|e| !e.is_empty()) {
        // With several matches a host is on another machine in each: the
        // host column names the match too.
        let several = r.environment.len() > 1;
        s.push_str("<h2>Environment</h2><table><tr><th>host</th><th>machine</th><th>kernel</th><th>CPU</th><th>NICs</th></tr>");
        let rows = r.environment.iter().enumerate().flat_map(|(mi, env)| {
            env.iter().map(move |(h, e)| {
                let host = if several {
                    format!("{h} (match {})", mi + 1)
                } else {
                    h.clone()
                };
                (host, e)
            })
        });
        for (h, e) in rows {
            let nics: Vec<String> = e
                .nics
                .iter()
                .map(|(n, ne)| {
                    format!(
                        "{n}={} {} {} fw {} {}",
                        ne.ifname.as_deref().unwrap_or("?"),
                        ne.driver.as_deref().unwrap_or("?"),
                        ne.driver_version.as_deref().unwrap_or(""),
                        ne.firmware.as_deref().unwrap_or("?"),
                        ne.speed_mbps
                            .map(|s| format!("{s} Mb/s"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
                esc(&h),
                esc(e.machine.as_deref().unwrap_or("")),
                esc(e.kernel.as_deref().unwrap_or("?")),
                esc(&format!(
                    "{}{}",
                    e.cpu_model.as_deref().unwrap_or("?"),
                    e.cpus.map(|c| format!(" × {c}")).unwrap_or_default()
                )),
                esc(&nics.join("; "))
            );
        }
        s.push_str("</table>\n");
    }
    s.push_str("</section>\n");
}

fn match_section(
    s: &mut String,
    r: &ReportModel,
    m: &MatchModel,
    i: usize,
    n: usize,
    html_dir: &Path,
) {
    let _ = writeln!(
        s,
        "<h2>Match {i}/{n} {} <span class=\"muted\">{:.2} s</span></h2>",
        verdict(m.result.as_str()),
        m.duration
    );
    let mapping: Vec<String> = m
        .mapping
        .iter()
        .map(|(h, hm)| {
            let nics: Vec<String> = hm.nics.iter().map(|(a, b)| format!("{a}={b}")).collect();
            format!("{h} → {} [{}]", hm.machine, nics.join(" "))
        })
        .collect();
    let _ = write!(
        s,
        "<p class=\"mono muted\">{}</p>",
        esc(&mapping.join("; "))
    );
    s.push_str("<h3>Topology</h3>\n");
    if m.topology.hosts.is_empty() {
        s.push_str("<p class=\"muted\">No hosts recorded.</p>");
    } else {
        s.push_str(&topology::svg(&m.topology));
        if m.topology.hosts.iter().all(|h| h.soft.is_empty()) {
            s.push_str("<p class=\"muted\">No soft devices were created by the recipe (or the run predates devices.json).</p>");
        }
    }
    let _ = write!(s, "\n<h3>Results</h3>\n<table class=\"results\"><tr><th>result</th><th>host</th><th>job</th><th>line</th><th>key figures</th><th>output</th></tr>");
    for res in &m.results {
        let rec = &res.rec;
        let _ = write!(
            s,
            "<tr class=\"result row-{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"figures\">{}</td><td>",
            rec.result.as_str(),
            verdict(rec.result.as_str()),
            esc(rec.host.as_deref().unwrap_or("-")),
            rec.job.map(|j| j.to_string()).unwrap_or_else(|| "-".into()),
            esc(&rec.desc),
            esc(&res.figures)
        );
        for o in &res.outputs {
            output(s, o, html_dir);
        }
        s.push_str("</td></tr>\n");
    }
    s.push_str("</table>\n");
    if !m.measurements.is_empty() {
        s.push_str("<h3>Measurements</h3>\n");
    }
    for me in &m.measurements {
        let hist = r.history_of(me);
        let _ = write!(
            s,
            "<div class=\"measurement\"><h4>{} {}</h4><p>mean <b>{}</b>{} over {} sample(s){}{}</p>",
            esc(&me.desc),
            verdict(me.result.as_str()),
            esc(&fmt_value(me.mean, &me.unit)),
            me.stddev
                .map(|sd| format!(" ± {}", esc(&fmt_value(sd, &me.unit))))
                .unwrap_or_default(),
            me.samples.len(),
            me.evaluation
                .as_deref()
                .map(|e| format!("; against its baseline: {}", verdict(e)))
                .unwrap_or_default(),
            match hist {
                Some(h) => format!("; history: {} earlier run(s)", h.points.len()),
                None => "; no history (no results store, or its first run)".into(),
            }
        );
        s.push_str(&plot::svg(&Plot {
            unit: &me.unit,
            history: hist,
            current: Some(Current {
                label: &r.id,
                samples: &me.samples,
                mean: me.mean,
                verdict: me.result.as_str(),
            }),
        }));
        s.push_str("</div>\n");
    }
}

fn output(s: &mut String, o: &JobOutput, html_dir: &Path) {
    let link = relative(html_dir, &o.path)
        .map(|p| href_path(&p.to_string_lossy()))
        .unwrap_or_else(|| href_path(&o.path.to_string_lossy()));
    if o.size == 0 {
        let _ = write!(s, "<div class=\"muted\">{} empty</div>", o.stream);
        return;
    }
    match &o.inline {
        Some(text) => {
            let _ = write!(
                s,
                "<details class=\"output\"><summary>{} ({} B)</summary><pre>{}</pre><a href=\"{}\">{}</a></details>",
                o.stream,
                o.size,
                esc(text),
                esc(&link),
                o.stream
            );
        }
        None => {
            let _ = write!(
                s,
                "<div><a class=\"output\" href=\"{}\">{} ({:.1} KiB)</a></div>",
                esc(&link),
                o.stream,
                o.size as f64 / 1024.0
            );
        }
    }
}

/// `to` relative to the directory `from` (`../runs/x/jobs/h1-1.stdout`),
/// after making both absolute; `None` when no relative path exists.
pub fn relative(from: &Path, to: &Path) -> Option<PathBuf> {
    let abs = |p: &Path| -> Option<PathBuf> {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().ok()?.join(p)
        };
        Some(p.canonicalize().unwrap_or(p))
    };
    let (from, to) = (abs(from)?, abs(to)?);
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return None;
    }
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c.as_os_str());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b"), Path::new("/a/c/d.txt")).unwrap(),
            PathBuf::from("../c/d.txt")
        );
        assert_eq!(
            relative(Path::new("/a"), Path::new("/a/jobs/x")).unwrap(),
            PathBuf::from("jobs/x")
        );
    }
}
