//! Results of a run and how they are shown: the types every layer fills
//! in ([`ResultRec`], [`MatchReport`], [`RunReport`]) and the outputs —
//! [`summary`] (stdout), [`json`] (`--json`, `summary.json`), [`junit`]
//! (`junit.xml`) and [`rundir`] (the run directory).

pub mod json;
pub mod junit;
pub mod rundir;
pub mod summary;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::mapper::Mapping;

/// The outcome of one result line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultRec {
    /// Requirement host of a job, `null` otherwise.
    pub host: Option<String>,
    /// Agent job id of a job, `null` otherwise.
    pub job: Option<u64>,
    pub desc: String,
    pub result: Verdict,
    /// Key figures (exit code, duration, module result, `m.result` data).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub data: serde_json::Map<String, Value>,
    /// Why a line is what it is, when not obvious ("killed by timeout").
    #[serde(skip_serializing_if = "Option::is_none")]
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
