//! Results of a run and how they are shown: the types every layer fills
//! in ([`ResultRec`], [`MatchReport`], [`RunReport`]) and the outputs —
//! [`summary`] (stdout), [`json`] (`--json`, `summary.json`), [`junit`]
//! (`junit.xml`) and [`rundir`] (the run directory, with [`devices`]:
//! `devices.json`, what the test phase created); [`series`] is a
//! measurement's history as the results store returns it; [`html`] is
//! `lnst-ctl report`'s self-contained HTML page.

pub mod devices;
pub mod html;
pub mod json;
pub mod junit;
pub mod rundir;
pub mod series;
pub mod suite;
pub mod summary;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mapper::Mapping;

/// The outcome of one result line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Fail,
    /// The test phase raised an error (a `throw`, a failed call, a lost agent).
    Error,
    /// A background job not finished yet (never in a final report).
    Running,
}

impl Verdict {
    pub fn from_bool(ok: bool) -> Self {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Error => "ERROR",
            Verdict::Running => "RUNNING",
        }
    }
}

/// One line of the results: a job, an `m.check`, an `m.result` or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRec {
    /// Requirement host of a job, `null` otherwise.
    pub host: Option<String>,
    /// Agent job id of a job, `null` otherwise.
    pub job: Option<u64>,
    pub desc: String,
    pub result: Verdict,
    /// Key figures (exit code, duration, module result, `m.result` data).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub data: serde_json::Map<String, Value>,
    /// Why a line is what it is, when not obvious ("killed by timeout").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Seconds since the test phase started.
    pub at: f64,
}

/// One match: the mapping and its results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchReport {
    /// Requirement host → machine and NICs (§9 shape).
    pub mapping: Mapping,
    pub result: Verdict,
    pub results: Vec<ResultRec>,
    /// Seconds the test phase of this match took.
    pub duration: f64,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub recipe: String,
    pub params: serde_json::Map<String, Value>,
    pub result: Verdict,
    pub matches: Vec<MatchReport>,
    /// `"lab"` or the pool directory.
    pub pool: String,
    /// Wall time of the whole run, lab included.
    pub duration: f64,
    /// Requests sent to agents, per host.
    pub rpcs: BTreeMap<String, u64>,
    /// The run directory.
    pub run_dir: Option<String>,
    /// The netns lab's run id (namespaces `lnst-<id>-<host>`), if any.
    pub lab: Option<String>,
    /// Milliseconds to build the lab and start its agents.
    pub lab_ms: Option<f64>,
    /// Errors met while cleaning up (never hidden).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cleanup_errors: Vec<String>,
    /// Agents over TCP were driven without authentication (`--insecure`):
    /// always in the JSON, and a WARNING line in the summary.
    pub insecure: bool,
}

/// The verdict of a list of results: ERROR if any errored, FAIL if any
/// failed, PASS otherwise (also when empty).
pub fn overall<'a>(it: impl IntoIterator<Item = &'a Verdict>) -> Verdict {
    let mut v = Verdict::Pass;
    for r in it {
        match r {
            Verdict::Error => return Verdict::Error,
            Verdict::Fail | Verdict::Running => v = Verdict::Fail,
            Verdict::Pass => {}
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapper::HostMatch;

    fn rec(host: Option<&str>, job: Option<u64>, desc: &str, v: Verdict) -> ResultRec {
        let mut data = serde_json::Map::new();
        if job.is_some() {
            data.insert("exit_code".into(), 0.into());
            data.insert("duration".into(), 0.5.into());
        }
        ResultRec {
            host: host.map(str::to_string),
            job,
            desc: desc.into(),
            result: v,
            data,
            note: (v == Verdict::Error).then(|| "boom <&>".to_string()),
            at: 1.0,
        }
    }

    fn report() -> RunReport {
        let mut mapping = Mapping::new();
        mapping.insert(
            "h1".into(),
            HostMatch {
                machine: "m1".into(),
                nics: [("eth0".to_string(), "ens1f0".to_string())]
                    .into_iter()
                    .collect(),
            },
        );
        let results = vec![
            rec(Some("h1"), Some(1), "ping 192.168.101.2", Verdict::Pass),
            rec(None, None, "ping h1 -> h2", Verdict::Fail),
            rec(None, None, "r.rhai:3:1: bad \"thing\"", Verdict::Error),
        ];
        RunReport {
            recipe: "r.rhai".into(),
            params: serde_json::Map::new(),
            result: overall(results.iter().map(|r| &r.result)),
            matches: vec![MatchReport {
                mapping,
                result: Verdict::Error,
                results,
                duration: 1.5,
            }],
            pool: "netns lab".into(),
            duration: 2.0,
            rpcs: BTreeMap::new(),
            run_dir: None,
            lab: None,
            lab_ms: None,
            cleanup_errors: vec![],
            insecure: false,
        }
    }

    #[test]
    fn insecure_runs_say_so_in_summary_and_json() {
        let mut r = report();
        assert!(!summary::render(&r).contains("WARNING"));
        assert!(json::render(&r).contains("\"insecure\": false"));
        r.insecure = true;
        let s = summary::render(&r);
        assert!(
            s.lines()
                .any(|l| l.starts_with("WARNING:") && l.contains("--insecure")),
            "{s}"
        );
        assert!(json::render(&r).contains("\"insecure\": true"));
    }

    #[test]
    fn overall_verdicts() {
        assert_eq!(overall(&[Verdict::Pass, Verdict::Pass]), Verdict::Pass);
        assert_eq!(overall(&[Verdict::Pass, Verdict::Fail]), Verdict::Fail);
        assert_eq!(overall(&[Verdict::Fail, Verdict::Error]), Verdict::Error);
        assert_eq!(overall(&[]), Verdict::Pass);
    }

    #[test]
    fn json_has_the_spec_shape() {
        let v: serde_json::Value = serde_json::from_str(&json::render(&report())).unwrap();
        assert_eq!(v["recipe"], "r.rhai");
        assert_eq!(v["result"], "ERROR");
        let m = &v["matches"][0];
        assert_eq!(m["mapping"]["h1"]["machine"], "m1");
        assert_eq!(m["mapping"]["h1"]["nics"]["eth0"], "ens1f0");
        assert_eq!(m["results"][0]["host"], "h1");
        assert_eq!(m["results"][0]["job"], 1);
        assert_eq!(m["results"][0]["data"]["exit_code"], 0);
        assert_eq!(m["results"][1]["host"], serde_json::Value::Null);
        assert_eq!(m["results"][1]["job"], serde_json::Value::Null);
        assert_eq!(m["results"][1]["result"], "FAIL");
    }

    #[test]
    fn summary_lists_mapping_results_and_overall() {
        let s = summary::render(&report());
        assert!(s.contains("h1 -> m1 [eth0=ens1f0]"), "{s}");
        assert!(
            s.contains("PASS  h1       job 1   ping 192.168.101.2  [exit 0, 0.50 s]"),
            "{s}"
        );
        assert!(s.contains("FAIL  -        -       ping h1 -> h2"), "{s}");
        assert!(s.contains("r.rhai: ERROR (3 results, 2 not passed)"), "{s}");
    }

    #[test]
    fn junit_counts_and_escapes() {
        let x = junit::render(&report());
        assert!(x.starts_with("<?xml"));
        assert!(
            x.contains("<testsuites name=\"r.rhai\" tests=\"3\" failures=\"1\" errors=\"1\""),
            "{x}"
        );
        assert!(
            x.contains("<failure message=\"FAIL: ping h1 -&gt; h2\">"),
            "{x}"
        );
        assert!(
            x.contains(
                "<error message=\"r.rhai:3:1: bad &quot;thing&quot;\">(boom &lt;&amp;&gt;)</error>"
            ),
            "{x}"
        );
        assert_eq!(x.matches("<testcase ").count(), 3);
        assert_eq!(x.matches("</testsuite>").count(), 1);
    }
}
