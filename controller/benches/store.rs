//! Results store benchmarks (`cargo bench -p lnst-ctl --bench store`), on
//! the embedded SQLite store in a scratch directory (no root needed):
//!
//! - recording a run of 1 000 results and 10 000 samples (reading its run
//!   directory and writing it in one transaction, what `run` adds at its
//!   end), into a store that already holds runs; against writing that
//!   run's `summary.json`, which every run does anyway (goal ≤ 20 ms);
//! - `lnst-ctl history RECIPE` (the binary) on a store of 10 000 runs of
//!   that recipe, against the same command on an empty store (process
//!   start and open) (goal ≤ 200 ms);
//! - the size of that store (goal ≤ 200 MB);
//! - for information, recording the big run into the test PostgreSQL.

#[path = "../tests/support/results_store.rs"]
mod results_store;
mod support;
use results_store::isolate_results_store;

use support::{median, TmpDir};

#[path = "../tests/support/postgres.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lnst_ctl::db::DbTarget;
use lnst_ctl::store::record::{rfc3339, RunRecord};
use lnst_ctl::store::Store;
use serde_json::{json, Value};

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Two hosts as the netns lab reports them (74 features per NIC, as veth).
fn environment() -> Value {
    let features: serde_json::Map<String, Value> = (0..74)
        .map(|i| (format!("tx-some-offload-feature-{i}"), json!(i % 2 == 0)))
        .collect();
    let host = |m: &str| {
        json!({"machine": m, "kernel": "6.18.44", "cmdline": "console=ttyS0 quiet ".repeat(20),
               "cpu_model": "AMD EPYC", "cpus": 2,
               "nics": {"eth0": {"ifname": "eth0", "driver": "veth", "driver_version": "1.0",
                                 "firmware": "", "bus": "", "speed_mbps": 10000, "mtu": 1500,
                                 "mac": "02:00:00:00:00:01", "features": features}}})
    };
    json!({"h1": host("h1"), "h2": host("h2")})
}

/// A run directory: `results` lines, of which `perf` are perf() lines of
/// `samples` samples each, the rest checks and ping jobs.
fn run_dir(base: &Path, name: &str, results: usize, perf: usize, samples: usize) -> PathBuf {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rs = Vec::new();
    for i in 0..results {
        if i < perf {
            let s: Vec<f64> = (0..samples)
                .map(|k| 9e9 + (k * 7919 % 1000) as f64 * 1e6)
                .collect();
            let mean = s.iter().sum::<f64>() / s.len() as f64;
            rs.push(json!({"host": null, "job": null, "desc": format!("perf tcp 192.168.{i}.2 (h1 -> h2)"),
                "result": "PASS", "at": i as f64,
                "data": {"samples": s, "mean": mean, "stddev": 1e8, "unit": "bps", "client": "h1", "server": "h2",
                         "evaluation": {"verdict": "PASS", "change_pct": 0.5, "baseline_n": 20}}}));
        } else if i % 2 == 0 {
            rs.push(json!({"host": "h1", "job": i, "desc": format!("ping 192.168.{i}.2"), "result": "PASS", "at": i as f64,
                "data": {"sent": 5, "received": 5, "loss": 0.0, "rtt_avg": 0.05, "exit_code": 0, "duration": 1.0}}));
        } else {
            rs.push(json!({"host": null, "job": null, "desc": format!("check {i}"), "result": "PASS", "at": i as f64}));
        }
    }
    let summary = json!({"recipe": "big.rhai", "params": {"runs": 3}, "result": "PASS", "pool": "netns lab",
        "duration": 10.0, "matches": [{"mapping": {"h1": {"machine": "h1", "nics": {"eth0": "eth0"}},
                                                   "h2": {"machine": "h2", "nics": {"eth0": "eth0"}}},
                                       "result": "PASS", "duration": 9.0, "results": rs}]});
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("params.json"), r#"{"runs":3}"#).unwrap();
    std::fs::write(
        dir.join("mapping.json"),
        json!([summary["matches"][0]["mapping"]]).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("environment.json"), environment().to_string()).unwrap();
    std::fs::write(dir.join("big.rhai"), "// a recipe\n".repeat(50)).unwrap();
    dir
}

fn set_start(dir: &Path, t: f64) {
    let meta = json!({"started": rfc3339(t), "started_unix": t, "lnst_version": "0.1.0",
                      "user": "bench", "controller_host": "bench"});
    std::fs::write(dir.join("run.json"), meta.to_string()).unwrap();
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    isolate_results_store();
    let tmp = TmpDir::new("store");
    let db = tmp.0.join("results.db");
    let target = DbTarget::Sqlite(db.clone());
    let mut store = Store::open(&target).unwrap();

    // 1. Recording a big run.
    let big = run_dir(&tmp.0, "20261204-120000-big", 1000, 100, 100);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(big.join("summary.json")).unwrap()).unwrap();
    let (mut rec_t, mut base_t, mut read_t) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..25 {
        set_start(&big, 1.8e9 + i as f64);
        let t0 = Instant::now();
        let r = RunRecord::from_run_dir(&big).unwrap();
        read_t.push(t0.elapsed());
        let (_, new) = store.record(&r).unwrap();
        rec_t.push(t0.elapsed());
        assert!(new);
        assert_eq!(
            (
                r.results.len(),
                r.measurements
                    .iter()
                    .map(|m| m.samples.len())
                    .sum::<usize>()
                    >= 10_000
            ),
            (1000, true)
        );
        let t0 = Instant::now();
        std::fs::write(
            tmp.0.join("summary-copy.json"),
            serde_json::to_string_pretty(&summary).unwrap() + "\n",
        )
        .unwrap();
        base_t.push(t0.elapsed());
    }
    let (rec, base, read) = (median(rec_t), median(base_t), median(read_t));
    let per_big = file_size(&db) / 25;
    println!(
        "record a run of 1000 results, 10000 samples: {} (of which reading its run directory {}; writing its summary.json: {}, {:.1}×) — goal ≤ 20 ms",
        ms(rec),
        ms(read),
        ms(base),
        rec.as_secs_f64() / base.as_secs_f64()
    );
    drop(store);

    // 1b. The same into PostgreSQL (the throwaway test server), when there.
    if let Some(pg) = pg::TestPostgres::get() {
        let mut store = Store::open(&DbTarget::Postgres(pg.new_db())).unwrap();
        let mut t = Vec::new();
        for i in 0..9 {
            set_start(&big, 1.9e9 + i as f64);
            let t0 = Instant::now();
            let r = RunRecord::from_run_dir(&big).unwrap();
            store.record(&r).unwrap();
            t.push(t0.elapsed());
        }
        println!(
            "the same run into PostgreSQL (unix socket, fsync off): {}",
            ms(median(t))
        );
    }

    // 2. History of a recipe with 10 000 runs (perf_demo-sized: a ping, a
    // perf of 3 samples, a check; two hosts' environments).
    let db2 = tmp.0.join("history.db");
    let target2 = DbTarget::Sqlite(db2.clone());
    let mut store = Store::open(&target2).unwrap();
    let small = run_dir(&tmp.0, "20261204-130000-small", 4, 1, 3);
    set_start(&small, 1.7e9);
    let proto = RunRecord::from_run_dir(&small).unwrap();
    let t0 = Instant::now();
    let n = 10_000;
    for i in 0..n {
        let mut r = proto.clone();
        r.uid = format!("bench-{i}");
        r.meta.started_unix = 1.7e9 + i as f64 * 60.0;
        r.meta.started = rfc3339(r.meta.started_unix);
        for m in &mut r.measurements {
            // Some change over time, so the trend and change points work.
            let level = if i < n / 2 { 9.5e9 } else { 8.5e9 };
            let wiggle = ((i * 7919) % 100) as f64 * 1e6;
            if m.key.metric == "bps" {
                m.samples = vec![level + wiggle, level - wiggle, level];
                m.mean = level;
            }
        }
        store.record(&r).unwrap();
    }
    let fill = t0.elapsed();
    drop(store);
    let size = file_size(&db2) + file_size(&db2.with_extension("db-wal"));
    let ctl = env!("CARGO_BIN_EXE_lnst-ctl");
    let empty = tmp.0.join("empty.db");
    let history = |db: &Path, points: &str| {
        let t0 = Instant::now();
        let o = Command::new(ctl)
            .args(["history", "big.rhai", "--points", points, "--db"])
            .arg(db)
            .output()
            .expect("lnst-ctl history");
        let d = t0.elapsed();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (d, String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let (_, out) = history(&db2, "50");
    assert!(out.starts_with("10000 runs of big.rhai"), "{out}");
    assert!(out.contains("baseline "), "{out}");
    let (_, out) = history(&db2, "10000");
    assert!(out.contains("change points at run(s) 5001"), "{out}");
    let (mut h_t, mut e_t, mut all_t) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..9 {
        h_t.push(history(&db2, "50").0);
        e_t.push(history(&empty, "50").0);
        all_t.push(history(&db2, "10000").0);
    }
    let (h, e, all) = (median(h_t), median(e_t), median(all_t));
    println!(
        "`lnst-ctl history` of a recipe with {n} runs: {} (on an empty store: {}, {:.1}×) — goal ≤ 200 ms",
        ms(h),
        ms(e),
        h.as_secs_f64() / e.as_secs_f64()
    );
    println!(
        "  with every run in the trends (--points 10000, change points over all): {}",
        ms(all)
    );
    println!(
        "store of {n} perf_demo-sized runs: {:.1} MB ({:.1} KB per run; filled in {:.1} s) — goal ≤ 200 MB",
        size as f64 / 1e6,
        size as f64 / n as f64 / 1e3,
        fill.as_secs_f64()
    );
    println!(
        "a run of 1000 results and 10000 samples takes {:.0} KB in the store",
        per_big as f64 / 1e3
    );
}
