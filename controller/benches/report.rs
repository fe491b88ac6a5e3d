//! `lnst-ctl report` for a run with 1 000 results (goal ≤ 500 ms):
//! `cargo bench -p lnst-ctl --bench report`. Generates a synthetic run
//! directory — 4 hosts with 2 NICs each and soft devices, 1 000 result
//! lines of which 600 are jobs with stdout and stderr files (most small
//! enough to be inlined, some 64 KiB and only linked) and 50 are
//! measurements with 10 samples — then times, median of 9:
//!
//! - the whole command as a user runs it (the `lnst-ctl` binary, process
//!   start included), without history;
//! - in process, reading the run directory and rendering with a history
//!   of 200 earlier runs for each of the 50 series (what the page costs
//!   once the results store supplies history).

mod support;
use support::{median, TmpDir};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lnst_ctl::report::html::{model::ReportModel, page};
use lnst_ctl::report::series::{Baseline, HistoryPoint, SeriesHistory, SeriesKey};
use serde_json::{json, Value};

const RESULTS: usize = 1000;
const MEASUREMENTS: usize = 50;

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

fn synthetic_run(dir: &Path) {
    let hosts = ["h1", "h2", "h3", "h4"];
    let mut results: Vec<Value> = Vec::new();
    let mut jobs = [0u64; 4];
    for i in 0..RESULTS {
        let verdict = if i % 97 == 0 { "FAIL" } else { "PASS" };
        if i % 20 == 0 && results.len() < RESULTS && i / 20 < MEASUREMENTS {
            let samples: Vec<f64> = (0..10).map(|k| 9e9 + (k as f64) * 1e7).collect();
            results.push(json!({"host": null, "job": null,
                "desc": format!("perf tcp 192.168.1.{} (h1 -> h2)", i / 20), "result": verdict,
                "data": {"samples": samples, "mean": 9.045e9, "stddev": 3e7, "unit": "bps",
                         "figures": "9.05 Gbit/s ± 30.28 Mbit/s over 10 runs"}, "at": i as f64 * 0.01}));
        } else if i % 5 < 3 {
            let h = i % 4;
            jobs[h] += 1;
            let id = jobs[h];
            let base = dir.join("jobs").join(format!("{}-{id}", hosts[h]));
            let big = i % 50 == 1;
            let out = if big {
                "x".repeat(64 * 1024)
            } else {
                format!("PING 192.168.1.2: 56 data bytes <&> line {i}\n").repeat(8)
            };
            write(&base.with_extension("stdout"), &out);
            write(
                &base.with_extension("stderr"),
                if i % 7 == 0 {
                    "warning: something\n"
                } else {
                    ""
                },
            );
            results.push(json!({"host": hosts[h], "job": id, "desc": format!("ping -c 5 192.168.1.{} #{i}", h + 1),
                "result": verdict, "data": {"exit_code": 0, "duration": 0.81, "sent": 5, "received": 5,
                "loss": 0.0, "rtt_avg": 0.05, "figures": "5/5 received, rtt 0.050 ms"}, "at": i as f64 * 0.01}));
        } else {
            results.push(
                json!({"host": null, "job": null, "desc": format!("check number {i} holds"),
                "result": verdict, "at": i as f64 * 0.01}),
            );
        }
    }
    assert_eq!(results.len(), RESULTS);
    let mapping: serde_json::Map<String, Value> = hosts
        .iter()
        .map(|h| {
            (
                h.to_string(),
                json!({"machine": format!("m-{h}"), "nics": {"eth0": "ens1f0", "eth1": "ens1f1"}}),
            )
        })
        .collect();
    let summary = json!({"recipe": "bench.rhai", "params": {"mtu": 9000}, "result": "FAIL",
        "matches": [{"mapping": mapping, "result": "FAIL", "results": results, "duration": 10.0}],
        "pool": "netns lab", "duration": 11.0, "rpcs": {}, "run_dir": null, "lab": "b1", "lab_ms": 40.0,
        "insecure": false, "lnst_version": "0.1.0"});
    write(&dir.join("summary.json"), &summary.to_string());
    let reqs = json!({"hosts": hosts.iter().map(|h| json!({"name": h, "params": {}, "nics": [
        {"name": "eth0", "net": "net1", "attrs": {}}, {"name": "eth1", "net": "net2", "attrs": {}}]})).collect::<Vec<_>>()});
    write(&dir.join("requirements.json"), &reqs.to_string());
    let devs: Vec<Value> = hosts
        .iter()
        .flat_map(|h| {
            [
                json!({"host": h, "netns": null, "name": "br0", "recipe_name": "br0", "kind": "bridge",
                       "created": true, "master": null, "peer": null, "link": null, "mtu": 1500, "ips": ["10.0.0.1/24"], "up": true}),
                json!({"host": h, "netns": null, "name": "ens1f0", "recipe_name": "eth0", "kind": "",
                       "created": false, "master": "br0", "peer": null, "link": null, "mtu": 1500, "ips": [], "up": true}),
            ]
        })
        .collect();
    write(
        &dir.join("devices.json"),
        &json!({"matches": [devs]}).to_string(),
    );
}

fn history(model: &ReportModel) -> Vec<SeriesHistory> {
    model
        .measurements()
        .map(|m| SeriesHistory {
            key: SeriesKey {
                recipe: "bench.rhai".into(),
                params: "{\"mtu\":9000}".into(),
                role: "h1->h2".into(),
                measurement: m.desc.clone(),
                metric: m.metric.clone(),
            },
            unit: m.unit.clone(),
            points: (0..200)
                .map(|i| HistoryPoint {
                    run_id: format!("run-{i}"),
                    started: format!("2026-{:02}-{:02}T10:00:00Z", 1 + i / 28 % 12, 1 + i % 28),
                    mean: 9e9 + (i % 7) as f64 * 1e7,
                    samples: (0..10).map(|k| 9e9 + k as f64 * 1e7).collect(),
                    verdict: "PASS".into(),
                    change_point: i == 120,
                })
                .collect(),
            baseline: Some(Baseline {
                n: 80,
                centre: 9.03e9,
                low: 8.9e9,
                high: 9.2e9,
            }),
        })
        .collect()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let tmp = TmpDir::new("report");
    let run = tmp.0.join("20261204-120000-bench");
    synthetic_run(&run);
    let out = tmp.0.join("report.html");

    let mut cmd_times = Vec::new();
    for _ in 0..9 {
        let t = Instant::now();
        let st = Command::new(env!("CARGO_BIN_EXE_lnst-ctl"))
            .arg("report")
            .arg(&run)
            .arg("-o")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run lnst-ctl report");
        cmd_times.push(t.elapsed());
        assert!(st.success());
    }
    let size = std::fs::metadata(&out).unwrap().len();

    let mut lib_times = Vec::new();
    let mut hist_size = 0;
    for _ in 0..9 {
        let t = Instant::now();
        let mut m = ReportModel::from_rundir(&run).unwrap();
        m.history = history(&m);
        let html = page::render(&[m], &tmp.0);
        std::fs::write(&out, &html).unwrap();
        lib_times.push(t.elapsed());
        hist_size = html.len();
    }
    let cmd = median(cmd_times);
    let lib = median(lib_times);
    println!(
        "report, {RESULTS} results, {MEASUREMENTS} measurements: `lnst-ctl report` {} (goal ≤ 500 ms), page {:.0} KiB",
        ms(cmd),
        size as f64 / 1024.0
    );
    println!(
        "  in process with 200 runs of history per series: {}, page {:.0} KiB",
        ms(lib),
        hist_size as f64 / 1024.0
    );
    assert!(cmd <= Duration::from_millis(500), "report took {}", ms(cmd));
}
