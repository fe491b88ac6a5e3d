//! The `cpu_stat` module: per-CPU utilisation sampled from `/proc/stat`
//! while it runs in the background.
//!
//! Options: `interval` (float seconds, default 1). It runs the agent's own
//! sampler, `lnst-agent cpu-stat --interval S`, which prints one JSON line
//! per interval until the recipe's `kill()`.
//!
//! Result shape:
//!
//! ```text
//! #{ samples: [ #{ t: 1.0, cpus: [ #{ cpu: "all", util: 12.5, user: 2.0, system: 9.5,
//!                                    irq: 0.0, softirq: 1.0, iowait: 0.0, steal: 0.0 },
//!                                 #{ cpu: "cpu0", .. }, .. ] }, .. ],
//!    mean: #{ all: 12.5, cpu0: 20.1, cpu1: 4.9 } }
//! ```
//!
//! `t` is seconds since the sampler started, each figure the percentage of
//! that CPU's time in the interval (`util` = all but idle and iowait), `all`
//! the whole machine; `mean` is the average `util` per CPU over the
//! samples. Passes when at least one sample was taken.

use serde_json::{json, Map, Value};

use super::options::{self, get_float_in, OptSpec, OptType};
use super::{ModuleError, Opts};

const NAME: &str = "cpu_stat";

/// The options `cpu_stat` accepts.
pub const OPTIONS: &[OptSpec] = &[OptSpec::opt("interval", OptType::Float)];

/// Checked `cpu_stat` options.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuStat {
    pub interval: f64,
}

impl CpuStat {
    /// Checks the recipe's options (see the module doc).
    pub fn from_opts(opts: &Opts) -> Result<CpuStat, ModuleError> {
        options::check(NAME, OPTIONS, opts)?;
        Ok(CpuStat {
            interval: get_float_in(NAME, opts, "interval", 0.01, 86400.0)?.unwrap_or(1.0),
        })
    }

    /// `exec "$LNST_AGENT_BIN" cpu-stat --interval S`.
    pub fn command(&self) -> String {
        format!(
            "exec \"$LNST_AGENT_BIN\" cpu-stat --interval {}",
            self.interval
        )
    }
}

/// Reads the sampler's JSON lines (see the module doc for the result).
pub fn parse(stdout: &str, exit_code: Option<i32>) -> Result<Value, String> {
    let mut samples = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format!("cpu-stat printed a line that is not JSON ({e}): {line:?}"))?;
        if !v["cpus"].is_array() {
            return Err(format!("cpu-stat line has no \"cpus\": {line:?}"));
        }
        samples.push(v);
    }
    if let Some(c) = exit_code.filter(|c| *c != 0) {
        return Err(format!("cpu-stat exited with code {c} (see its stderr)"));
    }
    let mut sums: Vec<(String, f64, u32)> = Vec::new();
    for s in &samples {
        for c in s["cpus"].as_array().into_iter().flatten() {
            let (Some(name), Some(util)) = (c["cpu"].as_str(), c["util"].as_f64()) else {
                continue;
            };
            match sums.iter_mut().find(|(n, _, _)| n == name) {
                Some(e) => {
                    e.1 += util;
                    e.2 += 1;
                }
                None => sums.push((name.to_string(), util, 1)),
            }
        }
    }
    let mean: Map<String, Value> = sums
        .into_iter()
        .map(|(n, sum, k)| (n, json!(sum / f64::from(k))))
        .collect();
    Ok(json!({ "samples": samples, "mean": mean }))
}

/// At least one sample.
pub fn passed(result: &Value) -> bool {
    result["samples"].as_array().is_some_and(|s| !s.is_empty())
}

/// `3 samples, all 12.5% avg`.
pub fn key_figures(result: &Value) -> String {
    let n = result["samples"].as_array().map_or(0, Vec::len);
    match result["mean"]["all"].as_f64() {
        Some(all) => format!("{n} samples, all {all:.1}% avg"),
        None => format!("{n} samples"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = concat!(
        "{\"t\": 0.200, \"cpus\": [{\"cpu\": \"all\", \"util\": 10.00, \"user\": 5.00}, {\"cpu\": \"cpu0\", \"util\": 20.00}]}\n",
        "{\"t\": 0.400, \"cpus\": [{\"cpu\": \"all\", \"util\": 30.00, \"user\": 5.00}, {\"cpu\": \"cpu0\", \"util\": 40.00}]}\n",
    );

    #[test]
    fn samples_and_means() {
        let r = parse(OUT, None).unwrap();
        assert_eq!(r["samples"].as_array().unwrap().len(), 2);
        assert_eq!(r["samples"][1]["cpus"][0]["util"], 30.0);
        assert_eq!(r["mean"], json!({"all": 20.0, "cpu0": 30.0}));
        assert!(passed(&r));
        assert_eq!(key_figures(&r), "2 samples, all 20.0% avg");
        let empty = parse("", Some(0)).unwrap();
        assert!(!passed(&empty));
    }

    #[test]
    fn bad_output_is_an_error() {
        assert!(parse("garbage\n", None).unwrap_err().contains("not JSON"));
        assert!(parse("{\"t\": 1}\n", None).unwrap_err().contains("cpus"));
        assert!(parse("", Some(2)).unwrap_err().contains("code 2"));
    }

    #[test]
    fn command() {
        let m = CpuStat::from_opts(json!({"interval": 0.5}).as_object().unwrap()).unwrap();
        assert_eq!(
            m.command(),
            "exec \"$LNST_AGENT_BIN\" cpu-stat --interval 0.5"
        );
        assert!(CpuStat::from_opts(json!({"interval": 0}).as_object().unwrap()).is_err());
    }
}
