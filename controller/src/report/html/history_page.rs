//! A recipe's history page: where the data came from, the runs (newest
//! first: id, start, result, params, duration, a link to each run
//! directory's summary), then one plot per measurement series with every
//! run's samples and mean, the baseline band and the change points when
//! the store supplies them.

use std::fmt::Write as _;
use std::path::Path;

use super::escape::{esc, href_path};
use super::history::HistoryModel;
use super::page::{params_line, relative, verdict};
use super::plot::{self, Plot};
use super::CSS;

/// Renders the page; `html_dir` is where it is written (links to run
/// directories are relative to it).
pub fn render(h: &HistoryModel, html_dir: &Path) -> String {
    let mut s = String::with_capacity(8192 + h.runs.len() * 300);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>lnst history: {}</title><style>{CSS}</style></head><body>\n<h1>History of {}</h1><p class=\"muted\">From {}.</p>\n",
        esc(&h.recipe),
        esc(&h.recipe),
        esc(&h.source)
    );
    let count = |v: &str| h.runs.iter().filter(|r| r.result.as_str() == v).count();
    let _ = writeln!(
        s,
        "<p>{} run(s): {} PASS, {} FAIL, {} ERROR; {} measurement series.</p>",
        h.runs.len(),
        count("PASS"),
        count("FAIL"),
        count("ERROR"),
        h.series.len()
    );
    for e in &h.skipped {
        let _ = write!(s, "<p class=\"row-ERROR\">skipped: {}</p>", esc(e));
    }
    if !h.series.is_empty() {
        s.push_str("<h2>Measurements</h2>\n");
    }
    for se in &h.series {
        let _ = write!(
            s,
            "<div class=\"series\"><h3>{} <span class=\"muted\">{}</span></h3><p class=\"muted mono\">params {} · roles {} · {} run(s){}</p>",
            esc(&se.key.measurement),
            esc(&se.key.metric),
            esc(&se.key.params),
            esc(&se.key.role),
            se.points.len(),
            se.baseline
                .as_ref()
                .map(|b| format!(
                    " · baseline of {} run(s): {} .. {}",
                    b.n,
                    esc(&plot::fmt_value(b.low, &se.unit)),
                    esc(&plot::fmt_value(b.high, &se.unit))
                ))
                .unwrap_or_default()
        );
        s.push_str(&plot::svg(&Plot {
            unit: &se.unit,
            history: Some(se),
            current: None,
        }));
        s.push_str("</div>\n");
    }
    s.push_str("<h2>Runs</h2>\n<table class=\"runs\"><tr><th>run</th><th>started</th><th>result</th><th>params</th><th>duration</th></tr>");
    for r in h.runs.iter().rev() {
        let id = match r
            .run_dir
            .as_deref()
            .and_then(|d| relative(html_dir, &d.join("summary.json")))
        {
            Some(p) => format!(
                "<a href=\"{}\">{}</a>",
                esc(&href_path(&p.to_string_lossy())),
                esc(&r.id)
            ),
            None => esc(&r.id),
        };
        let _ = write!(
            s,
            "<tr class=\"run row-{}\"><td class=\"mono\">{id}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{:.2} s</td></tr>",
            r.result.as_str(),
            esc(r.started.as_deref().unwrap_or("?")),
            verdict(r.result.as_str()),
            esc(&params_line(&r.params)),
            r.duration
        );
    }
    s.push_str("</table>\n");
    let _ = writeln!(
        s,
        "<p class=\"muted\">Written by lnst-ctl {} (<code>lnst-ctl report --history</code>).</p></body></html>",
        esc(env!("CARGO_PKG_VERSION"))
    );
    s
}
