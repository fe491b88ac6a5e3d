//! `lnst-ctl report`: one self-contained HTML file per call — inline CSS,
//! inline SVG drawn here, no script, no font, no image and no URL outside
//! the file (job output is inlined when small and otherwise linked by a
//! path relative to the HTML file).
//!
//! Data flow: a run directory → [`model::ReportModel`] (everything a page
//! shows, plus the measurement histories the results store supplies as
//! [`super::series::SeriesHistory`]) → [`page`] (the HTML), which draws
//! [`topology`] (hosts, NICs, networks, soft devices) and [`plot`] (a
//! measurement against its history band). A recipe's history page is
//! [`history::HistoryModel`] → [`history_page`]. All text reaching the
//! page goes through [`escape::esc`].

pub mod escape;
pub mod history;
pub mod history_page;
pub mod model;
pub mod page;
pub mod plot;
pub mod topology;

/// The page's style sheet, shared by the run and history pages.
pub(crate) const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em;color:#1d2330;background:#fff}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.25em;border-bottom:1px solid #d8dde6;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:.2em .6em;text-align:left;vertical-align:top;border-bottom:1px solid #eceff4}
th{background:#f3f5f9;font-weight:600}
.verdict{display:inline-block;min-width:4.2em;text-align:center;font-weight:700;border-radius:3px;padding:0 .3em;color:#fff}
.PASS{background:#1f8a3b}.FAIL{background:#c62828}.ERROR{background:#8e24aa}.RUNNING{background:#6d7580}
.IMPROVED{background:#1565c0}.NOISY{background:#b58900}.NO_BASELINE{background:#6d7580}
.row-FAIL td{background:#fff1f1}.row-ERROR td{background:#f8eefb}
.mono,pre,code{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:.9em}
pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:.5em;overflow:auto;max-height:24em;white-space:pre-wrap}
details{margin:.1em 0}summary{cursor:pointer;color:#24509a}
.note{color:#6d7580}.muted{color:#6d7580;font-size:.9em}
.run{border-top:4px solid #d8dde6;margin-top:2em;padding-top:.5em}
.figures{white-space:nowrap}
svg text{font-family:system-ui,sans-serif}
"#;
