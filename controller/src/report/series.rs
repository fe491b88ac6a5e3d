//! A measurement's history: what the results store returns for one series
//! and what the HTML report draws behind a run's samples (RECIPES.md §12).
//! The store fills these in; the report only reads them.

use serde::{Deserialize, Serialize};

/// Which measurements are comparable: only like is compared with like.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The recipe's file name (`simple_network.rhai`).
    pub recipe: String,
    /// The params that change what is measured, canonical JSON
    /// (`{"mtu":9000}`), sorted keys.
    pub params: String,
    /// The mapping roles involved (`h1->h2`) and their hardware
    /// (driver/speed), so a 10G and a 25G NIC never share a series.
    pub role: String,
    /// The measurement's result line (`perf tcp 192.168.102.2 (h1 -> h2)`).
    pub measurement: String,
    /// `bps`, `cpu_local`, `rtt_avg`, `loss`, …
    pub metric: String,
}

/// One earlier run's value of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// The run id as `lnst-ctl history` prints it.
    pub run_id: String,
    /// When the run started, RFC 3339 UTC.
    pub started: String,
    /// The mean of the run's samples.
    pub mean: f64,
    /// Every sample of the run.
    pub samples: Vec<f64>,
    /// How the run's value was judged: `PASS`, `FAIL`, `IMPROVED`,
    /// `NOISY` or `NO_BASELINE` (RECIPES.md §8 `evaluation.verdict`).
    pub verdict: String,
    /// A change point was detected at this run (the baseline restarts here).
    pub change_point: bool,
}

/// The band a new value is judged against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Runs in the baseline (recent valid runs since the last change point).
    pub n: usize,
    /// Its centre (median of the runs' means).
    pub centre: f64,
    /// The band outside which a value is beyond noise.
    pub low: f64,
    pub high: f64,
}

/// A series' history as the report draws it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesHistory {
    pub key: SeriesKey,
    /// `bps`, `%`, `ms`.
    pub unit: String,
    /// Oldest first.
    pub points: Vec<HistoryPoint>,
    pub baseline: Option<Baseline>,
}
