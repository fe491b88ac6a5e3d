//! Everything the run page shows, read from a run directory
//! ([`ReportModel::from_rundir`]): the header from `summary.json`,
//! `params.json` and the directory's name; per match the result lines, the
//! measurements (`perf` results whose `data` has `samples` and `unit`), the
//! job output files and the topology (`mapping.json`, `requirements.json`,
//! `devices.json`, and `environment.json` when the results store wrote
//! one). [`ReportModel::history`] holds the measurements' histories as the
//! store returns them; it is empty until a store is wired in, and then the
//! plots show just the run's own samples.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::mapper::HostMatch;
use crate::report::devices::{self, DeviceRec};
use crate::report::series::SeriesHistory;
use crate::report::{ResultRec, Verdict};

/// Job output up to this size is inlined in the page; larger output is
/// only linked (by a path relative to the HTML file).
pub const INLINE_MAX: u64 = 4096;

/// Why a directory cannot be reported.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: not a run directory ({why}); give a directory `lnst-ctl run` made, such as ./lnst-runs/<time>-<recipe>/")]
    NotARunDir { path: PathBuf, why: String },
    #[error("{path}: cannot read it: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: corrupt JSON ({error}); the run directory is damaged: re-run the recipe, or restore the file")]
    Corrupt {
        path: PathBuf,
        error: serde_json::Error,
    },
}

/// One run, as its page shows it.
#[derive(Debug, Clone)]
pub struct ReportModel {
    /// The run directory, as given.
    pub run_dir: PathBuf,
    /// The run's id: its directory name (`20261204-182025-perf_demo`).
    pub id: String,
    pub recipe: String,
    pub params: Map<String, Value>,
    /// `None` for run directories of an lnst that did not record it.
    pub lnst_version: Option<String>,
    /// RFC 3339 UTC, from `summary.json`'s `started` or the directory name.
    pub started: Option<String>,
    /// Seconds, the whole run.
    pub duration: f64,
    pub result: Verdict,
    /// `netns lab`, `vm lab` or the pool directory.
    pub pool: String,
    /// The lab's run id (namespaces `lnst-<id>-<host>`).
    pub lab: Option<String>,
    pub lab_ms: Option<f64>,
    pub cleanup_errors: Vec<String>,
    pub insecure: bool,
    pub matches: Vec<MatchModel>,
    /// Each match's hosts' environments (`environment.json`), when
    /// recorded; one entry per match of an `--all-matches` run.
    pub environment: Vec<BTreeMap<String, HostEnv>>,
    /// What the page could not show and why (an unreadable optional file).
    pub notes: Vec<String>,
    /// The measurements' histories from the results store; empty without
    /// one. Matched to a measurement by [`ReportModel::history_of`].
    pub history: Vec<SeriesHistory>,
}

/// One match of the run.
#[derive(Debug, Clone)]
pub struct MatchModel {
    pub result: Verdict,
    pub duration: f64,
    pub mapping: BTreeMap<String, HostMatch>,
    pub results: Vec<ResultModel>,
    pub measurements: Vec<Measurement>,
    pub topology: Topology,
}

/// One result line with what the page adds to it.
#[derive(Debug, Clone)]
pub struct ResultModel {
    pub rec: ResultRec,
    /// The summary's key figures (`8.66 Gbit/s, 4 retransmits, 1.03 s`).
    pub figures: String,
    /// The job's stdout and stderr files, for a job line.
    pub outputs: Vec<JobOutput>,
}

/// A job's stdout or stderr file.
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The file.
    pub path: PathBuf,
    pub size: u64,
    /// Its text when it is at most [`INLINE_MAX`] bytes (lossy UTF-8).
    pub inline: Option<String>,
}

/// A measurement: a result line whose data has `samples` and `unit`.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The result line (`perf tcp 192.168.102.2 (h1 -> h2)`), also the
    /// series' `measurement`.
    pub desc: String,
    /// `data.metric` when given, else the unit (`bps`).
    pub metric: String,
    pub unit: String,
    pub samples: Vec<f64>,
    pub mean: f64,
    pub stddev: Option<f64>,
    pub result: Verdict,
    /// `data.evaluation.verdict` when the run was judged against a
    /// baseline (`PASS`, `FAIL`, `IMPROVED`, `NOISY`, `NO_BASELINE`).
    pub evaluation: Option<String>,
}

/// The picture of a match: hosts with NICs and soft devices, networks.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub hosts: Vec<TopoHost>,
    /// The `net` labels (L2 segments), sorted.
    pub nets: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TopoHost {
    /// Requirement name (`h1`).
    pub name: String,
    /// The machine it was matched to.
    pub machine: String,
    /// The worst verdict of the result lines on this host (`None`: it ran
    /// no job).
    pub result: Option<Verdict>,
    pub nics: Vec<TopoNic>,
    /// Devices the recipe created on this host or in its namespaces.
    pub soft: Vec<DeviceRec>,
    /// `kernel` and `cpu_model` from the environment, when recorded.
    pub kernel: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TopoNic {
    /// As the recipe names it (`eth0`).
    pub name: String,
    /// The matched interface (`ens1f0`).
    pub ifname: String,
    /// The `net` label it is on.
    pub net: Option<String>,
    /// Driver from the environment, else the link kind seen by the test.
    pub driver: Option<String>,
    pub speed_mbps: Option<u64>,
    pub master: Option<String>,
    pub ips: Vec<String>,
}

/// A host's entry of `environment.json` (written by the results store:
/// `{ "<host>": { "machine", "kernel", "cmdline", "cpu_model", "cpus",
/// "nics": { "<recipe nic>": { "ifname", "driver", ... } } } }`). Read
/// leniently: a field of another type is left out, not an error.
#[derive(Debug, Clone, Default)]
pub struct HostEnv {
    pub machine: Option<String>,
    pub kernel: Option<String>,
    pub cmdline: Option<String>,
    pub cpu_model: Option<String>,
    pub cpus: Option<u64>,
    pub nics: BTreeMap<String, NicEnv>,
}

#[derive(Debug, Clone, Default)]
pub struct NicEnv {
    pub ifname: Option<String>,
    pub driver: Option<String>,
    pub driver_version: Option<String>,
    pub firmware: Option<String>,
    pub bus: Option<String>,
    /// `None` when unknown (a veth has no speed).
    pub speed_mbps: Option<u64>,
    pub mtu: Option<u64>,
    pub mac: Option<String>,
}

/// `environment.json`'s hosts; anything not shaped as expected is skipped.
pub fn environment(v: &Value) -> BTreeMap<String, HostEnv> {
    let text = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    let num = |o: &Value, k: &str| {
        o.get(k).and_then(|n| {
            n.as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        })
    };
    let Some(hosts) = v.as_object() else {
        return BTreeMap::new();
    };
    hosts
        .iter()
        .filter(|(_, h)| h.is_object())
        .map(|(name, h)| {
            let nics = h
                .get("nics")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(n, e)| {
                            (
                                n.clone(),
                                NicEnv {
                                    ifname: text(e, "ifname"),
                                    driver: text(e, "driver"),
                                    driver_version: text(e, "driver_version"),
                                    firmware: text(e, "firmware"),
                                    bus: text(e, "bus"),
                                    speed_mbps: num(e, "speed_mbps"),
                                    mtu: num(e, "mtu"),
                                    mac: text(e, "mac"),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (
                name.clone(),
                HostEnv {
                    machine: text(h, "machine"),
                    kernel: text(h, "kernel"),
                    cmdline: text(h, "cmdline"),
                    cpu_model: text(h, "cpu_model"),
                    cpus: num(h, "cpus"),
                    nics,
                },
            )
        })
        .collect()
}

/// `summary.json` as this reader needs it (more fields are ignored).
#[derive(Debug, Deserialize)]
pub(crate) struct Summary {
    pub(crate) recipe: String,
    #[serde(default)]
    pub(crate) params: Map<String, Value>,
    pub(crate) result: Verdict,
    #[serde(default)]
    pub(crate) matches: Vec<SummaryMatch>,
    #[serde(default)]
    pool: String,
    #[serde(default)]
    pub(crate) duration: f64,
    #[serde(default)]
    lab: Option<String>,
    #[serde(default)]
    lab_ms: Option<f64>,
    #[serde(default)]
    cleanup_errors: Vec<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    lnst_version: Option<String>,
    #[serde(default)]
    pub(crate) started: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SummaryMatch {
    #[serde(default)]
    pub(crate) mapping: BTreeMap<String, HostMatch>,
    result: Verdict,
    #[serde(default)]
    pub(crate) results: Vec<ResultRec>,
    #[serde(default)]
    duration: f64,
}

/// `requirements.json`: the recipe's hosts and their NICs' `net` labels.
#[derive(Debug, Default, Deserialize)]
struct Requirements {
    #[serde(default)]
    hosts: Vec<HostReq>,
}

#[derive(Debug, Deserialize)]
struct HostReq {
    name: String,
    #[serde(default)]
    nics: Vec<NicReq>,
}

#[derive(Debug, Deserialize)]
struct NicReq {
    name: String,
    #[serde(default)]
    net: Option<String>,
}

/// Reads and parses `DIR/NAME`; `Ok(None)` when it does not exist.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
) -> Result<Option<T>, ModelError> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(ModelError::Read { path, error }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| ModelError::Corrupt { path, error })
}

impl ReportModel {
    /// Reads a run directory. A directory without `summary.json` (or not a
    /// directory at all) is [`ModelError::NotARunDir`]; a damaged JSON
    /// file is [`ModelError::Corrupt`] naming it. Optional files
    /// (`requirements.json`, `devices.json`, `environment.json`) may be
    /// missing: the page then says less.
    pub fn from_rundir(dir: &Path) -> Result<ReportModel, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::NotARunDir {
                path: dir.to_path_buf(),
                why: if dir.exists() {
                    "not a directory".into()
                } else {
                    "no such directory".into()
                },
            });
        }
        let summary: Summary =
            read_json(dir, "summary.json")?.ok_or_else(|| ModelError::NotARunDir {
                path: dir.to_path_buf(),
                why: "it has no summary.json".into(),
            })?;
        let params: Map<String, Value> = match read_json(dir, "params.json")? {
            Some(p) => p,
            None => summary.params.clone(),
        };
        let reqs: Requirements = read_json(dir, "requirements.json")?.unwrap_or_default();
        // Written by another part (the results store): a file that does
        // not parse costs the page its environment, not the whole report.
        let mut notes = Vec::new();
        let devs = devices::read(dir).unwrap_or_else(|why| {
            notes.push(format!("soft devices not shown: {why}"));
            None
        });
        let environment = match read_json::<Value>(dir, "environment.json") {
            // An array: one object per match (`--all-matches`).
            Ok(Some(Value::Array(per_match))) => per_match.iter().map(environment).collect(),
            Ok(Some(v)) => vec![environment(&v)],
            Ok(None) => Vec::new(),
            Err(e) => {
                notes.push(format!("environment not shown: {e}"));
                Vec::new()
            }
        };
        let no_env = BTreeMap::new();
        let id = dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let started = summary.started.clone().or_else(|| started_from_name(&id));
        let matches = summary
            .matches
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let devices = devs
                    .as_ref()
                    .and_then(|d| d.matches.get(i))
                    .cloned()
                    .unwrap_or_default();
                build_match(
                    dir,
                    m,
                    &reqs,
                    &devices,
                    environment.get(i).unwrap_or(&no_env),
                )
            })
            .collect();
        Ok(ReportModel {
            run_dir: dir.to_path_buf(),
            id,
            recipe: summary.recipe,
            params,
            lnst_version: summary.lnst_version,
            started,
            duration: summary.duration,
            result: summary.result,
            pool: summary.pool,
            lab: summary.lab,
            lab_ms: summary.lab_ms,
            cleanup_errors: summary.cleanup_errors,
            insecure: summary.insecure,
            matches,
            environment,
            notes,
            history: Vec::new(),
        })
    }

    /// The history of a measurement: the series whose `measurement` is
    /// the result line and whose `metric` is the measurement's metric.
    pub fn history_of(&self, m: &Measurement) -> Option<&SeriesHistory> {
        self.history
            .iter()
            .find(|h| h.key.measurement == m.desc && h.key.metric == m.metric)
    }

    /// Every measurement of the run, in match order.
    pub fn measurements(&self) -> impl Iterator<Item = &Measurement> {
        self.matches.iter().flat_map(|m| m.measurements.iter())
    }
}

/// `20261204-182025-perf_demo` → `2026-12-04T18:20:25Z` (the run
/// directory's name is the UTC start, to the second).
pub fn started_from_name(id: &str) -> Option<String> {
    let b = id.as_bytes();
    if b.len() < 15 || b[8] != b'-' || !b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit) {
        return None;
    }
    Some(format!(
        "{}-{}-{}T{}:{}:{}Z",
        &id[0..4],
        &id[4..6],
        &id[6..8],
        &id[9..11],
        &id[11..13],
        &id[13..15]
    ))
}

/// The worse of two verdicts (ERROR > FAIL > RUNNING > PASS).
fn worse(a: Option<Verdict>, b: Verdict) -> Option<Verdict> {
    let rank = |v: Verdict| match v {
        Verdict::Pass => 0,
        Verdict::Running => 1,
        Verdict::Fail => 2,
        Verdict::Error => 3,
    };
    Some(match a {
        Some(a) if rank(a) >= rank(b) => a,
        _ => b,
    })
}

fn build_match(
    dir: &Path,
    m: SummaryMatch,
    reqs: &Requirements,
    devices: &[DeviceRec],
    env: &BTreeMap<String, HostEnv>,
) -> MatchModel {
    let results: Vec<ResultModel> = m
        .results
        .into_iter()
        .map(|rec| ResultModel {
            figures: crate::report::summary::figures(&rec),
            outputs: job_outputs(dir, &rec),
            rec,
        })
        .collect();
    let measurements = results.iter().filter_map(|r| measurement(&r.rec)).collect();
    let topology = topology(&m.mapping, reqs, devices, env, &results);
    MatchModel {
        result: m.result,
        duration: m.duration,
        mapping: m.mapping,
        results,
        measurements,
        topology,
    }
}

/// The `jobs/HOST-ID.stdout|stderr` files of a job line that exist.
fn job_outputs(dir: &Path, r: &ResultRec) -> Vec<JobOutput> {
    let (Some(host), Some(job)) = (&r.host, r.job) else {
        return Vec::new();
    };
    let base = format!("{}-{job}", host.replace('/', "_"));
    ["stdout", "stderr"]
        .into_iter()
        .filter_map(|stream| {
            let path = dir.join("jobs").join(format!("{base}.{stream}"));
            let size = std::fs::metadata(&path).ok()?.len();
            let inline = (size <= INLINE_MAX)
                .then(|| std::fs::read(&path).ok())
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            Some(JobOutput {
                stream,
                path,
                size,
                inline,
            })
        })
        .collect()
}

/// A result line with `data.samples` (numbers) and `data.unit`.
pub fn measurement(r: &ResultRec) -> Option<Measurement> {
    let samples: Vec<f64> = r
        .data
        .get("samples")?
        .as_array()?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let unit = r.data.get("unit")?.as_str()?.to_string();
    let mean = r
        .data
        .get("mean")
        .and_then(Value::as_f64)
        .unwrap_or_else(|| {
            if samples.is_empty() {
                f64::NAN
            } else {
                samples.iter().sum::<f64>() / samples.len() as f64
            }
        });
    Some(Measurement {
        desc: r.desc.clone(),
        metric: r
            .data
            .get("metric")
            .and_then(Value::as_str)
            .unwrap_or(&unit)
            .to_string(),
        unit,
        samples,
        mean,
        stddev: r.data.get("stddev").and_then(Value::as_f64),
        result: r.result,
        evaluation: r
            .data
            .get("evaluation")
            .and_then(|e| e.get("verdict"))
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn topology(
    mapping: &BTreeMap<String, HostMatch>,
    reqs: &Requirements,
    devices: &[DeviceRec],
    env: &BTreeMap<String, HostEnv>,
    results: &[ResultModel],
) -> Topology {
    // Hosts in the recipe's order, then any only the mapping knows.
    let mut names: Vec<String> = reqs.hosts.iter().map(|h| h.name.clone()).collect();
    for h in mapping.keys() {
        if !names.contains(h) {
            names.push(h.clone());
        }
    }
    let mut nets = std::collections::BTreeSet::new();
    let hosts = names
        .into_iter()
        .map(|name| {
            let hm = mapping.get(&name);
            let req = reqs.hosts.iter().find(|h| h.name == name);
            let henv = env.get(&name);
            let mut nic_names: Vec<String> = req
                .map(|r| r.nics.iter().map(|n| n.name.clone()).collect())
                .unwrap_or_default();
            for n in hm.iter().flat_map(|hm| hm.nics.keys()) {
                if !nic_names.contains(n) {
                    nic_names.push(n.clone());
                }
            }
            let nics = nic_names
                .into_iter()
                .map(|nic| {
                    let ifname = hm
                        .and_then(|hm| hm.nics.get(&nic))
                        .cloned()
                        .unwrap_or_else(|| nic.clone());
                    let net = req
                        .and_then(|r| r.nics.iter().find(|n| n.name == nic))
                        .and_then(|n| n.net.clone());
                    if let Some(n) = &net {
                        nets.insert(n.clone());
                    }
                    let nenv = henv.and_then(|e| e.nics.get(&nic));
                    let seen = devices
                        .iter()
                        .find(|d| d.host == name && !d.created && d.recipe_name == nic);
                    TopoNic {
                        driver: nenv.and_then(|e| e.driver.clone()).or_else(|| {
                            seen.and_then(|d| d.kind.clone()).filter(|k| !k.is_empty())
                        }),
                        speed_mbps: nenv.and_then(|e| e.speed_mbps),
                        master: seen.and_then(|d| d.master.clone()),
                        ips: seen.map(|d| d.ips.clone()).unwrap_or_default(),
                        name: nic,
                        ifname,
                        net,
                    }
                })
                .collect();
            let soft = devices
                .iter()
                .filter(|d| d.host == name && d.created)
                .cloned()
                .collect();
            let result = results
                .iter()
                .filter(|r| r.rec.host.as_deref().map(|h| h.split('/').next()) == Some(Some(&name)))
                .fold(None, |acc, r| worse(acc, r.rec.result));
            TopoHost {
                machine: hm.map(|h| h.machine.clone()).unwrap_or_default(),
                result,
                nics,
                soft,
                kernel: henv.and_then(|e| e.kernel.clone()),
                name,
            }
        })
        .collect();
    Topology {
        hosts,
        nets: nets.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_from_the_directory_name() {
        assert_eq!(
            started_from_name("20261204-182025-perf_demo").as_deref(),
            Some("2026-12-04T18:20:25Z")
        );
        assert_eq!(started_from_name("my-run"), None);
        assert_eq!(started_from_name("2026120x-182025-a"), None);
    }

    #[test]
    fn environment_is_read_leniently() {
        let v = serde_json::json!({
            "h1": { "kernel": "6.1.0", "cpus": 2, "nics": { "eth0": {
                "ifname": "ens1f0", "driver": "ixgbe", "speed_mbps": 10000.0, "mtu": "bad" } } },
            "h2": { "nics": { "eth0": { "speed_mbps": null } } },
            "junk": 3
        });
        let e = environment(&v);
        assert_eq!(e.len(), 2);
        let n = &e["h1"].nics["eth0"];
        assert_eq!(
            (n.driver.as_deref(), n.speed_mbps, n.mtu),
            (Some("ixgbe"), Some(10000), None)
        );
        assert_eq!(e["h1"].cpus, Some(2));
        assert_eq!(e["h2"].nics["eth0"].speed_mbps, None);
    }

    #[test]
    fn measurements_need_samples_and_unit() {
        let mut data = Map::new();
        data.insert("samples".into(), serde_json::json!([1.0, 3.0]));
        let mut r = ResultRec {
            host: None,
            job: None,
            desc: "perf x".into(),
            result: Verdict::Pass,
            data,
            note: None,
            at: 0.0,
        };
        assert!(measurement(&r).is_none());
        r.data.insert("unit".into(), "bps".into());
        let m = measurement(&r).unwrap();
        assert_eq!((m.metric.as_str(), m.mean), ("bps", 2.0));
    }
}
