//! `junit.xml`: one `<testsuite>` per match, one `<testcase>` per result,
//! `<failure>` for FAIL and `<error>` for ERROR — the subset Jenkins and
//! GitLab read.

use std::fmt::Write as _;

use super::{summary::figures, ResultRec, RunReport, Verdict};

/// XML-escapes text and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {}
            c => o.push(c),
        }
    }
    o
}

/// Renders the report as JUnit XML.
pub fn render(r: &RunReport) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let count = |v: Verdict| {
        r.matches
            .iter()
            .flat_map(|m| &m.results)
            .filter(|x| x.result == v)
            .count()
    };
    let total: usize = r.matches.iter().map(|m| m.results.len()).sum();
    let _ = writeln!(
        s,
        "<testsuites name=\"{}\" tests=\"{total}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
        esc(&r.recipe),
        count(Verdict::Fail),
        count(Verdict::Error),
        r.duration
    );
    for (i, m) in r.matches.iter().enumerate() {
        let f = m
            .results
            .iter()
            .filter(|x| x.result == Verdict::Fail)
            .count();
        let e = m
            .results
            .iter()
            .filter(|x| x.result == Verdict::Error)
            .count();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{} match {}\" tests=\"{}\" failures=\"{f}\" errors=\"{e}\" time=\"{:.3}\">",
            esc(&r.recipe),
            i + 1,
            m.results.len(),
            m.duration
        );
        cases(&mut s, &r.recipe, &m.results, "");
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}

/// Writes one `<testcase>` per result of `recipe` (names prefixed with
/// `prefix`, e.g. `match 2: `), with `<failure>` / `<error>`.
pub fn cases(s: &mut String, recipe: &str, results: &[ResultRec], prefix: &str) {
    let mut prev = 0.0;
    for (j, res) in results.iter().enumerate() {
        let time = res
            .data
            .get("duration")
            .and_then(|d| d.as_f64())
            .unwrap_or(res.at - prev)
            .max(0.0);
        prev = res.at;
        let class = match &res.host {
            Some(h) => format!("{}.{}", recipe.trim_end_matches(".rhai"), h),
            None => recipe.trim_end_matches(".rhai").to_string(),
        };
        let name = match res.job {
            Some(id) => format!("{prefix}{:03} job {id}: {}", j + 1, res.desc),
            None => format!("{prefix}{:03} {}", j + 1, res.desc),
        };
        let _ = write!(
            s,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{time:.3}\"",
            esc(&class),
            esc(&name)
        );
        let msg = figures(res);
        match res.result {
            Verdict::Pass => s.push_str("/>\n"),
            Verdict::Fail | Verdict::Running => {
                let _ = write!(
                    s,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    esc(&format!("FAIL: {}", res.desc)),
                    esc(&msg)
                );
            }
            Verdict::Error => {
                let _ = write!(
                    s,
                    ">\n      <error message=\"{}\">{}</error>\n    </testcase>\n",
                    esc(&res.desc),
                    esc(&msg)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(esc("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
