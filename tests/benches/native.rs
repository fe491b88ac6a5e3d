//! Native-API bench (issue 11, "Performance"), as root, with the debug or
//! release binaries beside this bench's target dir:
//!
//! - netns lab: a recipe sets a veth's channels and adds 100 neighbours,
//!   against `ethtool -L` and a loop of `ip neigh add` in a fresh
//!   namespace, interleaved round by round (veths have channels but no
//!   coalesce or ring settings);
//! - VM lab (when qemu is there; `LNST_BENCH_VM=0` skips it): in one guest
//!   with two emulated e1000e NICs, the recipe sets coalesce and rings on
//!   one and adds 100 neighbours through the native API, and a shell job
//!   does the same on the other with `ethtool -C`, `ethtool -G` and `ip
//!   neigh add` in a loop, timed inside the guest; which goes first
//!   alternates by round.
//!
//! Goal ≤ 1.5× for both.
//!
//!     cargo bench -p lnst-tests --bench native

#[path = "../../controller/tests/support/results_store.rs"]
mod results_store;
use results_store::isolate_results_store;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const N: usize = 100;
const ROUNDS: usize = 5;

const RECIPE: &str = r#"
//! Sets channels and adds 100 neighbours.
let n = param("n", 100);
let h1 = host("h1");
h1.nic("eth0", #{ net: "n" });
let h2 = host("h2");
h2.nic("eth0", #{ net: "n" });
fn test(m) {
    let h = m.h1;
    let d = h.eth0;
    let t = timestamp();
    d.channels = #{ rx: 2, tx: 2 };
    for i in 0..m.params.n {
        h.neigh_add(#{ dst: `10.60.${i / 200}.${i % 200 + 1}`, lladdr: "02:00:00:00:60:01", dev: "eth0" });
    }
    let took = t.elapsed;
    m.result(true, "native", #{ s: took });
}
"#;

/// The VM lab part: eth0 through the native API, eth1 through commands in
/// a shell job, in the same guest; `raw_first` alternates the order.
const VM_RECIPE: &str = r#"
//! Coalesce, rings and 100 neighbours: native API vs ethtool/ip commands.
param("n", 100);
param("raw_first", true);
let h1 = host("h1");
h1.nic("eth0", #{ net: "a", driver: "e1000e" });
h1.nic("eth1", #{ net: "b", driver: "e1000e" });
fn native(m) {
    let h = m.h1;
    let d = h.eth0;
    let t = timestamp();
    d.coalesce = #{ rx_usecs: 50 };
    d.rings = #{ rx: 512, tx: 512 };
    for i in 0..m.params.n {
        h.neigh_add(#{ dst: `10.60.${i / 200}.${i % 200 + 1}`, lladdr: "02:00:00:00:60:01", dev: "eth0" });
    }
    t.elapsed
}
fn raw(m) {
    let n = m.params.n;
    let j = m.h1.run(`t0=$(date +%s%N); ethtool -C eth1 rx-usecs 50 && ethtool -G eth1 rx 512 tx 512 || exit 1; i=0; while [ $i -lt ${n} ]; do ip neigh add 10.61.$((i / 200)).$((i % 200 + 1)) lladdr 02:00:00:00:61:01 dev eth1 nud permanent || exit 1; i=$((i + 1)); done; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000 ))`, #{ desc: "coalesce, rings, neighbours by ethtool/ip on eth1" });
    let us = j.stdout;
    us.trim();
    us.parse_int().to_float() / 1e6
}
fn test(m) {
    for d in [m.h1.eth0, m.h1.eth1] { d.up(); }
    let r = 0.0;
    let l = 0.0;
    if m.params.raw_first { r = raw(m); l = native(m); } else { l = native(m); r = raw(m); }
    m.check(m.h1.eth0.rings.rx == 512 && m.h1.eth0.coalesce.rx_usecs == 50, "native settings read back");
    m.check(m.h1.neighs("eth0").len() >= m.params.n, "native neighbours there");
    m.result(true, "native", #{ s: l, raw: r });
}
"#;

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let prof = deps.parent().expect("profile dir");
    for d in [prof.to_path_buf(), prof.with_file_name("debug")] {
        if d.join("lnst-ctl").exists() && d.join("lnst-agent").exists() {
            return d;
        }
    }
    panic!("lnst-ctl/lnst-agent not built: run `cargo build --release --bins` (or `cargo build --bins`)");
}

fn run(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect(args[0]);
    assert!(st.success(), "{args:?}");
}

/// The raw commands: returns seconds.
fn raw(ns: &str) -> f64 {
    run(&["ip", "netns", "add", ns]);
    run(&[
        "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "p0",
    ]);
    let t = Instant::now();
    run(&[
        "ip", "netns", "exec", ns, "ethtool", "-L", "eth0", "rx", "2", "tx", "2",
    ]);
    for i in 0..N {
        let dst = format!("10.60.{}.{}", i / 200, i % 200 + 1);
        run(&[
            "ip",
            "-n",
            ns,
            "neigh",
            "add",
            &dst,
            "lladdr",
            "02:00:00:00:60:01",
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
    }
    let took = t.elapsed().as_secs_f64();
    run(&["ip", "netns", "del", ns]);
    took
}

/// The recipe on the lab: returns (timed part, whole run) seconds.
fn recipe(dir: &std::path::Path, bins: &std::path::Path) -> (f64, f64) {
    let r = dir.join("native.rhai");
    std::fs::write(&r, RECIPE).expect("write recipe");
    let t = Instant::now();
    let out = Command::new(bins.join("lnst-ctl"))
        .arg("run")
        .arg(&r)
        .arg("--json")
        .arg("--out")
        .arg(dir.join("runs"))
        .arg("--")
        .arg(format!("n={N}"))
        .output()
        .expect("lnst-ctl");
    let wall = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    let data = &v["matches"][0]["results"][0]["data"];
    (
        data["s"].as_f64().unwrap_or_else(|| panic!("s in {data}")),
        wall,
    )
}

/// One VM lab run of [`VM_RECIPE`]: (native, raw) seconds, or why not.
fn vm_round(
    dir: &std::path::Path,
    bins: &std::path::Path,
    raw_first: bool,
) -> Result<(f64, f64), String> {
    let r = dir.join("native_vm.rhai");
    std::fs::write(&r, VM_RECIPE).expect("write recipe");
    let out = Command::new(bins.join("lnst-ctl"))
        .arg("run")
        .arg(&r)
        .args(["--lab", "vm", "--json", "--out"])
        .arg(dir.join("runs"))
        .arg("--agent-bin")
        .arg(bins.join("lnst-agent"))
        .arg("--")
        .arg(format!("n={N}"))
        .arg(format!("raw_first={raw_first}"))
        .output()
        .expect("lnst-ctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("exit {:?}, no JSON ({e}): {stderr}", out.status.code()))?;
    if !out.status.success() {
        return Err(format!("exit {:?}: {v}\n{stderr}", out.status.code()));
    }
    let d = v["matches"][0]["results"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["desc"] == "native"))
        .map(|r| r["data"].clone())
        .ok_or_else(|| format!("no native result: {v}"))?;
    Ok((d["s"].as_f64().ok_or("s")?, d["raw"].as_f64().ok_or("raw")?))
}

/// A result table: the recipe's `l` seconds against the commands' `r`.
fn table(title: &str, commands: &str, l: f64, r: f64) {
    println!("{title}");
    println!("| recipe | {commands} | ratio |");
    println!("| --- | --- | --- |");
    println!(
        "| {:.0} ms | {:.0} ms | {:.2}× (goal ≤ 1.5×) |",
        l * 1e3,
        r * 1e3,
        l / r
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    isolate_results_store();
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        println!("SKIP native bench: needs root");
        return;
    }
    let bins = bin_dir();
    let dir = std::env::temp_dir().join(format!("lnstbench-native-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let (mut r, mut l, mut w) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        r.push(raw(&format!("lnstbench-{}-n{round}", std::process::id())));
        let (s, wall) = recipe(&dir, &bins);
        l.push(s);
        w.push(wall);
    }
    let mut vm = (vec![], vec![]);
    let mut vm_skip = None;
    let has_qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if std::env::var("LNST_BENCH_VM").as_deref() == Ok("0") {
        vm_skip = Some("LNST_BENCH_VM=0".to_string());
    } else if !has_qemu {
        vm_skip = Some("no qemu-system-x86_64 (lnst-ctl doctor --fix --lab vm)".to_string());
    } else {
        for round in 0..ROUNDS {
            match vm_round(&dir, &bins, round % 2 == 0) {
                Ok((l, r)) => {
                    vm.0.push(l);
                    vm.1.push(r);
                }
                Err(e) => {
                    vm_skip = Some(e);
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (r, l, w) = (median(r), median(l), median(w));
    println!("binaries: {}", bins.display());
    table(
        &format!("channels + {N} neighbours, median of {ROUNDS} interleaved rounds"),
        "raw ethtool/ip loop",
        l,
        r,
    );
    println!(
        "whole `lnst-ctl run` (lab set-up, cleanup): {:.0} ms",
        w * 1e3
    );
    match vm_skip {
        Some(why) => println!("VM lab part not measured: {why}"),
        None => {
            let (l, r) = (median(vm.0), median(vm.1));
            println!();
            table(
                &format!("VM lab, e1000e: coalesce + rings + {N} neighbours, median of {ROUNDS} runs (order alternating)"),
                "ethtool/ip commands in the guest",
                l,
                r,
            );
        }
    }
}
