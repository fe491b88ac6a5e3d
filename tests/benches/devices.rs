//! Recipe-level device bench (issue 4, "Performance"): a recipe creating
//! and deleting 50 bridges and 50 veth pairs on the netns lab, against a raw
//! `ip link add` / `ip link del` loop doing the same in a fresh namespace,
//! interleaved in one run so that load elsewhere hits both alike. Prints
//! the medians and the ratio (goal ≤ 1.5×; LNST: 56 ms per bridge create,
//! 85 ms per delete). Needs root; uses the debug or release binaries beside
//! this bench's target dir.
//!
//!     cargo bench -p lnst-tests --bench devices

#[path = "../../controller/tests/support/results_store.rs"]
mod results_store;
use results_store::isolate_results_store;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const N: usize = 50;
const ROUNDS: usize = 5;

const RECIPE: &str = r#"
//! Creates and deletes 50 bridges and 50 veth pairs.
let n = param("n", 50);
let h1 = host("h1");
fn test(m) {
    let h = m.h1;
    let t = timestamp();
    let devs = [];
    for i in 0..m.params.n {
        devs.push(h.create(`br${i}`, bridge()));
        devs.push(h.create(`v${i}`, veth(#{ peer: `v${i}p` })));
    }
    let create = t.elapsed;
    let t = timestamp();
    for d in devs { d.destroy(); }
    let delete = t.elapsed;
    m.result(true, "devices", #{ create_s: create, delete_s: delete });
}
"#;

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let prof = deps.parent().expect("profile dir");
    // Benches build in target/release; the binaries may be in either.
    for d in [prof.to_path_buf(), prof.with_file_name("debug")] {
        if d.join("lnst-ctl").exists() && d.join("lnst-agent").exists() {
            return d;
        }
    }
    panic!("lnst-ctl/lnst-agent not built: run `cargo build --release --bins` (or `cargo build --bins`)");
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?}");
}

/// The raw loop: returns (create, delete) seconds.
fn raw(ns: &str) -> (f64, f64) {
    ip(&["netns", "add", ns]);
    let t = Instant::now();
    for i in 0..N {
        ip(&["-n", ns, "link", "add", &format!("br{i}"), "type", "bridge"]);
        ip(&[
            "-n",
            ns,
            "link",
            "add",
            &format!("v{i}"),
            "type",
            "veth",
            "peer",
            "name",
            &format!("v{i}p"),
        ]);
    }
    let create = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..N {
        ip(&["-n", ns, "link", "del", &format!("br{i}")]);
        ip(&["-n", ns, "link", "del", &format!("v{i}")]);
    }
    let delete = t.elapsed().as_secs_f64();
    ip(&["netns", "del", ns]);
    (create, delete)
}

/// The recipe on the lab: returns (create, delete, whole run) seconds.
fn recipe(dir: &std::path::Path, bins: &std::path::Path) -> (f64, f64, f64) {
    let r = dir.join("devices.rhai");
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
    let f = |k: &str| data[k].as_f64().unwrap_or_else(|| panic!("{k} in {data}"));
    (f("create_s"), f("delete_s"), wall)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    isolate_results_store();
    if !std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
    {
        println!("SKIP devices bench: needs root");
        return;
    }
    let bins = bin_dir();
    let dir = std::env::temp_dir().join(format!("lnstbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let (mut rc, mut rd, mut lc, mut ld, mut lw) = (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let (c, d) = raw(&format!("lnstbench-{}-{round}", std::process::id()));
        rc.push(c);
        rd.push(d);
        let (c, d, w) = recipe(&dir, &bins);
        lc.push(c);
        ld.push(d);
        lw.push(w);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (rc, rd, lc, ld, lw) = (median(rc), median(rd), median(lc), median(ld), median(lw));
    let per = |s: f64| s * 1000.0 / (2 * N) as f64;
    println!("binaries: {}", bins.display());
    println!("{N} bridges + {N} veth pairs, median of {ROUNDS} interleaved rounds");
    println!("| step | recipe | raw ip loop | ratio |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| create | {:.0} ms ({:.2} ms/dev) | {:.0} ms ({:.2} ms/dev) | {:.2}× |",
        lc * 1e3,
        per(lc),
        rc * 1e3,
        per(rc),
        lc / rc
    );
    println!(
        "| delete | {:.0} ms ({:.2} ms/dev) | {:.0} ms ({:.2} ms/dev) | {:.2}× |",
        ld * 1e3,
        per(ld),
        rd * 1e3,
        per(rd),
        ld / rd
    );
    println!(
        "| create + delete | {:.0} ms | {:.0} ms | {:.2}× (goal ≤ 1.5×) |",
        (lc + ld) * 1e3,
        (rc + rd) * 1e3,
        (lc + ld) / (rc + rd)
    );
    println!(
        "whole `lnst-ctl run` (lab set-up, cleanup): {:.0} ms",
        lw * 1e3
    );
}
