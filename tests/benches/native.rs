//! Native-API bench (issue 11, "Performance"): a recipe on the netns lab
//! that sets a device's channels and adds 100 neighbours, against the same
//! done by `ethtool -L` and a loop of `ip neigh add` in a fresh namespace,
//! interleaved in one run so that load elsewhere hits both alike (goal ≤
//! 1.5×). The lab's NICs are veths, which have channels but no coalesce
//! or ring settings, so those two are not in the measurement here. Needs
//! root; uses the debug or release binaries beside this bench's target
//! dir.
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
    let _ = std::fs::remove_dir_all(&dir);
    let (r, l, w) = (median(r), median(l), median(w));
    println!("binaries: {}", bins.display());
    println!("channels + {N} neighbours, median of {ROUNDS} interleaved rounds");
    println!("| recipe | raw ethtool/ip loop | ratio |");
    println!("| --- | --- | --- |");
    println!(
        "| {:.0} ms | {:.0} ms | {:.2}× (goal ≤ 1.5×) |",
        l * 1e3,
        r * 1e3,
        l / r
    );
    println!(
        "whole `lnst-ctl run` (lab set-up, cleanup): {:.0} ms",
        w * 1e3
    );
}
