//! Issue 4's benchmark: create and delete 50 bridges and 50 veth pairs
//! through the `net` layer (create, then undo replay) against a raw loop
//! spawning `ip link add` / `ip link del` for the same, each in its own
//! fresh namespace. Prints both times and the ratio (target ≤ 1.5).
//! Needs root; prints SKIP otherwise.

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lnst_agent::net::{self, NetUndo, Nets, Recorder};
use lnst_common::device::DeviceSpec;
use lnst_common::WireError;

const N: usize = 50;

struct VecRec(Mutex<Vec<NetUndo>>);

impl Recorder for VecRec {
    fn record(&self, undo: NetUndo) -> Result<(), WireError> {
        self.0
            .lock()
            .map_err(|_| WireError::internal("poisoned"))?
            .push(undo);
        Ok(())
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("spawn ip");
    assert!(st.success(), "ip {args:?}");
}

fn raw(ns: &str) -> Duration {
    let t = Instant::now();
    for i in 0..N {
        ip(&["-n", ns, "link", "add", &format!("br{i}"), "type", "bridge"]);
        ip(&[
            "-n",
            ns,
            "link",
            "add",
            &format!("va{i}"),
            "type",
            "veth",
            "peer",
            "name",
            &format!("vb{i}"),
        ]);
    }
    for i in 0..N {
        ip(&["-n", ns, "link", "del", &format!("br{i}")]);
        ip(&["-n", ns, "link", "del", &format!("va{i}")]);
    }
    t.elapsed()
}

async fn ours(nets: &Nets, ns: &str) -> Duration {
    let rec = VecRec(Mutex::new(Vec::new()));
    let t = Instant::now();
    for i in 0..N {
        net::create(
            nets,
            &rec,
            Some(ns),
            &format!("br{i}"),
            &DeviceSpec::Bridge {
                stp: None,
                vlan_filtering: None,
            },
        )
        .await
        .expect("bridge");
        net::create(
            nets,
            &rec,
            Some(ns),
            &format!("va{i}"),
            &DeviceSpec::Veth {
                peer: format!("vb{i}"),
                peer_netns: None,
            },
        )
        .await
        .expect("veth");
    }
    let entries = std::mem::take(&mut *rec.0.lock().expect("lock"));
    let errors = net::undo_all(nets, entries).await;
    assert!(errors.is_empty(), "{errors:?}");
    t.elapsed()
}

fn count_links(ns: &str) -> usize {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: needs root");
        return;
    }
    let a = format!("lnstbench-{}-raw", std::process::id());
    let b = format!("lnstbench-{}-net", std::process::id());
    ip(&["netns", "add", &a]);
    ip(&["netns", "add", &b]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let nets = Nets::new("lnstbench-".into());
    let mut ratios = vec![];
    for round in 0..3 {
        let r = raw(&a);
        let o = rt.block_on(ours(&nets, &b));
        assert_eq!(count_links(&b), 1, "everything deleted");
        let ratio = o.as_secs_f64() / r.as_secs_f64();
        println!(
            "round {round}: raw ip loop {:.0} ms, lnst net layer {:.0} ms, ratio {:.2} (target <= 1.5)",
            r.as_secs_f64() * 1e3,
            o.as_secs_f64() * 1e3,
            ratio
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio {:.2}", ratios[1]);
    nets.forget(&b);
    ip(&["netns", "del", &a]);
    ip(&["netns", "del", &b]);
}
