//! A suite's combined report: one line per recipe in the summary, one JSON
//! document holding every recipe's report, one JUnit file with a
//! `<testsuite>` per recipe. Each recipe keeps its own run directory
//! (inside the suite's) with its own `summary.json` and `junit.xml`.

use std::fmt::Write as _;

use serde::Serialize;

use super::junit::{cases, esc};
use super::{RunReport, Verdict};

/// One recipe of a suite: its report, or why it has none.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteEntry {
    /// The recipe's file name.
    pub recipe: String,
    /// The path as given (or found in a directory).
    pub path: String,
    /// The report's verdict; ERROR when the recipe stopped before it had
    /// one (a param or mapping error, a lab that could not be built).
    pub result: Verdict,
    /// Its exit status as a single run (0, 1, 2, 3, 130).
    pub exit: i32,
    /// The error that ended it, as `lnst-ctl run` would print it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds from its start (after any wait in the queue) to its end.
    pub duration: f64,
    /// The full report (RECIPES.md §9 shape), when it got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<RunReport>,
}

/// The whole suite.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    /// Always true: tells a suite's JSON from a single run's.
    pub suite: bool,
    pub result: Verdict,
    /// The suite's exit status: the worst of its recipes'.
    pub exit: i32,
    /// `--jobs`.
    pub jobs: usize,
    /// Wall time of the whole suite.
    pub duration: f64,
    /// The suite's directory, holding each recipe's run directory.
    pub run_dir: String,
    /// In the order given.
    pub recipes: Vec<SuiteEntry>,
}

/// How bad an exit status is, for "exit status of the worst": Ctrl-C
/// (130) over infrastructure (3) over nothing ran (2) over failed (1)
/// over passed (0). An interrupted suite is incomplete whatever else
/// happened; an infrastructure error means results could not be trusted,
/// so it outranks a recipe that did not start because of its own input.
pub fn severity(code: i32) -> u8 {
    match code {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        130 => 5,
        _ => 4,
    }
}

/// The worst of several exit statuses (0 for none).
pub fn worst(codes: impl IntoIterator<Item = i32>) -> i32 {
    codes.into_iter().max_by_key(|c| severity(*c)).unwrap_or(0)
}

/// The suite's verdict: PASS when every recipe passed, ERROR when one
/// errored or did not run, else FAIL.
pub fn verdict(entries: &[SuiteEntry]) -> Verdict {
    super::overall(entries.iter().map(|e| &e.result))
}

/// The summary on stdout: one line per recipe, its not-passed results
/// under it, then the totals.
pub fn render(r: &SuiteReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "suite: {} recipe(s), --jobs {}, in {:.2} s; run dir {}",
        r.recipes.len(),
        r.jobs,
        r.duration,
        r.run_dir
    );
    let w = r.recipes.iter().map(|e| e.recipe.len()).max().unwrap_or(0);
    for e in &r.recipes {
        let tail = match (&e.report, &e.error) {
            (Some(rep), None) => rep.run_dir.clone().unwrap_or_default(),
            (_, Some(err)) => format!("exit {}: {}", e.exit, first_line(err)),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            s,
            "  {:<5} {:<w$} {:>7.2} s  {}",
            e.result.as_str(),
            e.recipe,
            e.duration,
            tail
        );
        if let Some(rep) = &e.report {
            let bad = rep
                .matches
                .iter()
                .flat_map(|m| &m.results)
                .filter(|x| x.result != Verdict::Pass);
            for x in bad.take(5) {
                let _ = writeln!(
                    s,
                    "        {:<5} {} {}",
                    x.result.as_str(),
                    x.host.as_deref().unwrap_or("-"),
                    first_line(&x.desc)
                );
            }
            for c in &rep.cleanup_errors {
                let _ = writeln!(s, "        cleanup error: {}", first_line(c));
            }
        }
    }
    let count = |v: Verdict| r.recipes.iter().filter(|e| e.result == v).count();
    let _ = writeln!(
        s,
        "suite: {} (exit {}): {} PASS, {} FAIL, {} ERROR",
        r.result.as_str(),
        r.exit,
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Error)
    );
    if r.recipes
        .iter()
        .any(|e| e.report.as_ref().is_some_and(|x| x.insecure))
    {
        let _ = writeln!(
            s,
            "WARNING: run with --insecure: agents over TCP were driven without \
             authentication or encryption"
        );
    }
    s
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Pretty JSON of the whole suite.
pub fn render_json(r: &SuiteReport) -> String {
    serde_json::to_string_pretty(r)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode summary: {e}\"}}"))
}

/// JUnit XML: a `<testsuite>` per recipe, a `<testcase>` per result
/// (prefixed `match N: ` when the recipe ran several matches); a recipe
/// without a report is one `<testcase>` with its `<error>`.
pub fn render_junit(r: &SuiteReport) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let mut all = (0usize, 0usize, 0usize);
    let mut body = String::new();
    for e in &r.recipes {
        let (tests, fails, errors) = match &e.report {
            Some(rep) => {
                let rs = || rep.matches.iter().flat_map(|m| &m.results);
                (
                    rs().count(),
                    rs().filter(|x| matches!(x.result, Verdict::Fail | Verdict::Running))
                        .count(),
                    rs().filter(|x| x.result == Verdict::Error).count(),
                )
            }
            None => (1, 0, 1),
        };
        all = (all.0 + tests, all.1 + fails, all.2 + errors);
        let _ = writeln!(
            body,
            "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{fails}\" errors=\"{errors}\" time=\"{:.3}\">",
            esc(&e.recipe),
            e.duration
        );
        match &e.report {
            Some(rep) => {
                let several = rep.matches.len() > 1;
                for (i, m) in rep.matches.iter().enumerate() {
                    let prefix = if several {
                        format!("match {}: ", i + 1)
                    } else {
                        String::new()
                    };
                    cases(&mut body, &rep.recipe, &m.results, &prefix);
                }
            }
            None => {
                let msg = e.error.clone().unwrap_or_default();
                let _ = write!(
                    body,
                    "    <testcase classname=\"{}\" name=\"run\" time=\"{:.3}\">\n      <error message=\"{}\">exit {}</error>\n    </testcase>\n",
                    esc(e.recipe.trim_end_matches(".rhai")),
                    e.duration,
                    esc(first_line(&msg)),
                    e.exit
                );
            }
        }
        body.push_str("  </testsuite>\n");
    }
    let _ = writeln!(
        s,
        "<testsuites name=\"suite\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
        all.0, all.1, all.2, r.duration
    );
    s.push_str(&body);
    s.push_str("</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, result: Verdict, exit: i32, error: Option<&str>) -> SuiteEntry {
        SuiteEntry {
            recipe: name.into(),
            path: format!("recipes/{name}"),
            result,
            exit,
            error: error.map(str::to_string),
            duration: 1.5,
            report: None,
        }
    }

    fn passed(name: &str) -> SuiteEntry {
        let rep = RunReport {
            recipe: name.into(),
            params: Default::default(),
            result: Verdict::Pass,
            matches: vec![super::super::MatchReport {
                mapping: Default::default(),
                result: Verdict::Pass,
                results: vec![super::super::ResultRec {
                    host: None,
                    job: None,
                    desc: "ok".into(),
                    result: Verdict::Pass,
                    data: Default::default(),
                    note: None,
                    at: 0.1,
                }],
                duration: 1.0,
            }],
            pool: "netns lab".into(),
            duration: 1.5,
            rpcs: Default::default(),
            run_dir: Some(format!("d/{name}")),
            lab: None,
            lab_ms: None,
            cleanup_errors: vec![],
            insecure: false,
        };
        SuiteEntry {
            report: Some(rep),
            ..entry(name, Verdict::Pass, 0, None)
        }
    }

    #[test]
    fn worst_exit_status() {
        assert_eq!(worst([]), 0);
        assert_eq!(worst([0, 1, 0]), 1);
        assert_eq!(worst([1, 2, 0]), 2);
        assert_eq!(worst([2, 3, 1]), 3);
        assert_eq!(worst([3, 130, 2]), 130);
        assert_eq!(worst([0, 0]), 0);
    }

    #[test]
    fn junit_has_a_suite_per_recipe_and_counts() {
        let r = SuiteReport {
            suite: true,
            result: Verdict::Error,
            exit: 2,
            jobs: 2,
            duration: 3.0,
            run_dir: "d".into(),
            recipes: vec![
                passed("a.rhai"),
                entry(
                    "b<x>.rhai",
                    Verdict::Error,
                    2,
                    Some("b.rhai:1:1: syntax\nmore"),
                ),
            ],
        };
        let x = render_junit(&r);
        assert_eq!(x.matches("<testsuite ").count(), 2, "{x}");
        assert!(
            x.contains(
                "<testsuite name=\"b&lt;x&gt;.rhai\" tests=\"1\" failures=\"0\" errors=\"1\""
            ),
            "{x}"
        );
        assert!(
            x.contains("<error message=\"b.rhai:1:1: syntax\">exit 2</error>"),
            "{x}"
        );
        assert!(
            x.contains("<testsuites name=\"suite\" tests=\"2\" failures=\"0\" errors=\"1\""),
            "{x}"
        );
        assert!(x.contains("name=\"001 ok\""), "{x}");
        let t = render(&r);
        assert!(t.contains("ERROR b<x>.rhai"), "{t}");
        assert!(
            t.contains("suite: ERROR (exit 2): 1 PASS, 0 FAIL, 1 ERROR"),
            "{t}"
        );
    }
}
