//! Controller benchmarks, each reported against a baseline measured in the
//! same run (`cargo bench -p lnst-ctl --bench ctl`; needs root and the
//! release `lnst-agent`: `cargo build --release --bins` first).
//!
//! - mapping an 8-host recipe onto a 1000-machine pool, against loading
//!   that pool (goal ≤ 100 ms);
//! - netns lab bring-up with connected agents, 2 and 32 hosts, against a
//!   raw `ip netns add` + `ip netns del` per host (goal for 2 hosts ≤ 100 ms);
//! - HelloWorld wall time, lab included, against the same pings run raw
//!   between two hand-made namespaces (goal ≤ 1.12×), and its RPC count.

#[path = "../tests/support/results_store.rs"]
mod results_store;
mod support;
use results_store::isolate_results_store;

use support::{median, TmpDir};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lnst_ctl::mapper::{map_first, HostReq, NicReq, Requirements};
use serde_json::json;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {args:?} failed");
}

fn bench_mapper() {
    let dir = TmpDir::new("pool");
    for i in 0..1000 {
        let arch = if i % 2 == 0 { "x86_64" } else { "aarch64" };
        let text = format!(
            "address = \"192.0.2.{}:9999\"\n[params]\narch = \"{arch}\"\nrack = {}\n\
             [[nic]]\nname = \"e0\"\nnet = \"t{}\"\ndriver = \"ixgbe\"\nspeed = 10000\n\
             [[nic]]\nname = \"e1\"\ndriver = \"igb\"\n\
             [[nic]]\nname = \"e2\"\nnet = \"t{}\"\ndriver = \"mlx5\"\nspeed = 100000\n",
            i % 250 + 1,
            i / 100,
            i % 10,
            (i + 1) % 10
        );
        std::fs::write(dir.0.join(format!("m{i:04}.toml")), text).expect("write pool file");
    }
    let t = Instant::now();
    let pool = lnst_ctl::pool::load_dir(&dir.0).expect("load pool");
    let load = t.elapsed();
    let req = Requirements {
        hosts: (0..8)
            .map(|i| HostReq {
                name: format!("h{i}"),
                params: BTreeMap::from([("arch".into(), json!("aarch64"))]),
                nics: vec![
                    NicReq {
                        name: "a".into(),
                        net: Some("net1".into()),
                        attrs: BTreeMap::from([("speed".into(), json!(10000))]),
                    },
                    NicReq {
                        name: "b".into(),
                        net: Some("net2".into()),
                        attrs: BTreeMap::from([("driver".into(), json!("mlx5"))]),
                    },
                ],
            })
            .collect(),
    };
    let runs: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            map_first(&req, &pool).expect("a match exists");
            t.elapsed()
        })
        .collect();
    let m = median(runs);
    println!(
        "mapper   8 hosts onto 1000 machines: {} (loading the 1000 pool files: {}; ratio {:.2}x; goal <= 100 ms)",
        ms(m),
        ms(load),
        m.as_secs_f64() / load.as_secs_f64()
    );
}

fn requirements(n: usize) -> Requirements {
    Requirements {
        hosts: (0..n)
            .map(|i| HostReq {
                name: format!("h{i}"),
                params: BTreeMap::new(),
                nics: vec![NicReq {
                    name: "eth0".into(),
                    net: Some("net1".into()),
                    attrs: BTreeMap::new(),
                }],
            })
            .collect(),
    }
}

fn bench_lab(agent: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for n in [2usize, 32] {
        let rounds = if n == 2 { 7 } else { 3 };
        let mut labs = Vec::new();
        let mut raws = Vec::new();
        for r in 0..rounds {
            let logs = TmpDir::new(&format!("lab{n}-{r}"));
            let t = Instant::now();
            let mut lab = lnst_ctl::lab::NetnsLab::build(&requirements(n), agent, &logs.0)
                .expect("lab builds");
            let s = rt
                .block_on(lnst_ctl::session::Session::connect(&lab.addrs))
                .expect("agents connect");
            labs.push(t.elapsed());
            rt.block_on(s.close());
            let errs = lab.teardown();
            assert!(errs.is_empty(), "{errs:?}");

            let t = Instant::now();
            let names: Vec<String> = (0..n)
                .map(|i| format!("lnstbench-{}-{i}", std::process::id()))
                .collect();
            for name in &names {
                ip(&["netns", "add", name]);
            }
            raws.push(t.elapsed());
            for name in &names {
                ip(&["netns", "del", name]);
            }
        }
        let (lab, raw) = (median(labs), median(raws));
        println!(
            "lab      {n:>2} hosts built + agents connected: {} vs {} for {n} raw `ip netns add` ({:.2}x){}",
            ms(lab),
            ms(raw),
            lab.as_secs_f64() / raw.as_secs_f64(),
            if n == 2 { "; goal <= 100 ms" } else { "" }
        );
    }
}

/// The raw pings HelloWorld runs, between two namespaces made by hand.
fn raw_pings() -> Duration {
    let a = format!("lnstbench-{}-a", std::process::id());
    let b = format!("lnstbench-{}-b", std::process::id());
    ip(&["netns", "add", &a]);
    ip(&["netns", "add", &b]);
    ip(&[
        "-n", &a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &b,
    ]);
    ip(&["-n", &a, "addr", "add", "192.168.101.1/24", "dev", "eth0"]);
    ip(&["-n", &b, "addr", "add", "192.168.101.2/24", "dev", "eth0"]);
    ip(&["-n", &a, "link", "set", "eth0", "up"]);
    ip(&["-n", &b, "link", "set", "eth0", "up"]);
    let t = Instant::now();
    for (ns, dst) in [(&a, "192.168.101.2"), (&b, "192.168.101.1")] {
        let st = Command::new("ip")
            .args([
                "netns", "exec", ns, "ping", "-q", "-c", "5", "-i", "0.2", "-W", "2", dst,
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("ping");
        assert!(st.success(), "raw ping failed");
    }
    let d = t.elapsed();
    ip(&["netns", "del", &a]);
    ip(&["netns", "del", &b]);
    d
}

fn bench_hello_world(agent: &Path) {
    let ctl = env!("CARGO_BIN_EXE_lnst-ctl");
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes/hello_world.rhai");
    let out = TmpDir::new("runs");
    let mut walls = Vec::new();
    let mut raws = Vec::new();
    let mut rpcs = 0u64;
    for _ in 0..3 {
        raws.push(raw_pings());
        let t = Instant::now();
        let o = Command::new(ctl)
            .arg("run")
            .arg(&recipe)
            .arg("--json")
            .arg("--out")
            .arg(&out.0)
            .arg("--agent-bin")
            .arg(agent)
            .output()
            .expect("run lnst-ctl");
        walls.push(t.elapsed());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("summary JSON");
        rpcs = v["rpcs"]
            .as_object()
            .map(|m| m.values().filter_map(|n| n.as_u64()).sum())
            .unwrap_or(0);
    }
    let (wall, raw) = (median(walls), median(raws));
    println!(
        "hello    HelloWorld wall, lab included: {} vs {} of raw pings ({:.3}x; goal <= 1.12x); {rpcs} RPCs (LNST: 670)",
        ms(wall),
        ms(raw),
        wall.as_secs_f64() / raw.as_secs_f64()
    );
}

fn main() {
    isolate_results_store();
    // `cargo bench` passes --bench; nothing else is accepted.
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: controller benchmarks need root (network namespaces)");
        return;
    }
    let agent = Path::new(env!("CARGO_BIN_EXE_lnst-ctl"))
        .with_file_name("lnst-agent")
        .to_path_buf();
    bench_mapper();
    if !agent.exists() {
        println!(
            "SKIP: lab benchmarks need {} (run `cargo build --release --bins` first)",
            agent.display()
        );
        return;
    }
    bench_lab(&agent);
    bench_hello_world(&agent);
}
