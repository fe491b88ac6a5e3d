//! The human summary on stdout: per match the mapping, then every result
//! in order (verdict, host, job id, description, key figures), then the
//! overall result.

use std::fmt::Write as _;

use serde_json::Value;

use super::{ResultRec, RunReport};

fn figure(k: &str, v: &Value) -> Option<String> {
    Some(match (k, v) {
        ("duration", Value::Number(n)) => format!("{:.2} s", n.as_f64()?),
        ("exit_code", Value::Null) => return None,
        ("exit_code", v) => format!("exit {v}"),
        ("signal", v) => format!("signal {v}"),
        (k, Value::Number(n)) if n.is_f64() => format!("{k} {:.3}", n.as_f64()?),
        (k, Value::String(s)) => format!("{k} {s}"),
        (_, Value::Array(_)) | (_, Value::Object(_)) => return None,
        (k, v) => format!("{k} {v}"),
    })
}

/// The key figures of a result, one short line.
pub fn figures(r: &ResultRec) -> String {
    // A module's own short text replaces its raw fields.
    let mut parts: Vec<String> = match r.data.get("figures").and_then(|f| f.as_str()) {
        Some(f) => {
            let mut p = vec![f.to_string()];
            p.extend(r.data.get("duration").and_then(|d| figure("duration", d)));
            p
        }
        None => {
            let mut p: Vec<String> = r
                .data
                .iter()
                .filter(|(k, _)| *k != "duration")
                .filter_map(|(k, v)| figure(k, v))
                .collect();
            p.extend(r.data.get("duration").and_then(|d| figure("duration", d)));
            p
        }
    };
    if let Some(n) = &r.note {
        parts.push(format!("({n})"));
    }
    parts.join(", ")
}

/// Renders the summary.
pub fn render(r: &RunReport) -> String {
    let mut s = String::new();
    let n = r.matches.len();
    for (i, m) in r.matches.iter().enumerate() {
        let _ = writeln!(s, "match {}/{} on {}:", i + 1, n, r.pool);
        for (h, hm) in &m.mapping {
            let nics: Vec<String> = hm.nics.iter().map(|(a, b)| format!("{a}={b}")).collect();
            let _ = writeln!(s, "  {h} -> {} [{}]", hm.machine, nics.join(" "));
        }
        for res in &m.results {
            let host = res.host.as_deref().unwrap_or("-");
            let job = res
                .job
                .map(|j| format!("job {j}"))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "  {:<5} {:<8} {:<7} {}{}",
                res.result.as_str(),
                host,
                job,
                res.desc,
                match figures(res) {
                    f if f.is_empty() => String::new(),
                    f => format!("  [{f}]"),
                }
            );
        }
        let _ = writeln!(
            s,
            "  match {}: {} in {:.2} s",
            i + 1,
            m.result.as_str(),
            m.duration
        );
    }
    let total: usize = r.matches.iter().map(|m| m.results.len()).sum();
    let failed: usize = r
        .matches
        .iter()
        .flat_map(|m| &m.results)
        .filter(|x| x.result != super::Verdict::Pass)
        .count();
    let _ = writeln!(
        s,
        "{}: {} ({} results, {} not passed) in {:.2} s{}",
        r.recipe,
        r.result.as_str(),
        total,
        failed,
        r.duration,
        r.run_dir
            .as_deref()
            .map(|d| format!("; run dir {d}"))
            .unwrap_or_default()
    );
    for e in &r.cleanup_errors {
        let _ = writeln!(s, "cleanup error: {e}");
    }
    if r.insecure {
        let _ = writeln!(
            s,
            "WARNING: run with --insecure: agents over TCP were driven without \
             authentication or encryption"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Verdict;
    use serde_json::json;

    fn rec(data: Value, note: Option<&str>) -> ResultRec {
        ResultRec {
            host: Some("h1".into()),
            job: Some(3),
            desc: "x".into(),
            result: Verdict::Pass,
            data: data.as_object().cloned().unwrap_or_default(),
            note: note.map(str::to_string),
            at: 0.0,
        }
    }

    #[test]
    fn a_module_result_shows_its_own_figures_then_the_duration() {
        // As a ping job's line carries it: the module's text, the raw
        // fields (for JSON) and the job's exit code and duration.
        let r = rec(
            json!({"exit_code": 1, "duration": 1.037, "sent": 5, "received": 3, "loss": 40.0,
                   "rtt_avg": 0.05, "figures": "loss 40.0% (3/5 received), rtt avg 0.050 ms"}),
            None,
        );
        assert_eq!(
            figures(&r),
            "loss 40.0% (3/5 received), rtt avg 0.050 ms, 1.04 s"
        );
        let r = rec(
            json!({"figures": "9.82 Gbit/s, 3 retransmits", "intervals": [1.0, 2.0], "duration": 1.0}),
            Some("stopped with kill()"),
        );
        assert_eq!(
            figures(&r),
            "9.82 Gbit/s, 3 retransmits, 1.00 s, (stopped with kill())"
        );
    }

    #[test]
    fn plain_data_shows_scalars_and_skips_lists() {
        let r = rec(
            json!({"mean": 1.5, "n": 3, "unit": "bps", "samples": [1.0, 2.0], "exit_code": null}),
            None,
        );
        // serde_json's map keeps keys sorted.
        assert_eq!(figures(&r), "mean 1.500, n 3, unit bps");
    }
}
