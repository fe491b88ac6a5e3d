//! Issue 10 fault 3: nothing blocking on the agent's runtime. While the
//! kernel holds `rtnl_lock` (tearing down a namespace full of devices,
//! as after a perf run) and the host's CPUs are busy, requests that need
//! that lock (`ip link set mtu` over netlink in several namespaces,
//! `ethtool -k` ioctls) wait in the kernel; the agent must keep answering
//! pings and sending heartbeats meanwhile. Checked from outside: the
//! longest ping round trip against how long the kernel held the lock
//! (measured with `ip link set` from a thread of the test).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lnst_common::device::DevRef;
use lnst_common::{Request, Response};

use super::harness::*;

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Busy loops at the test's own priority, killed on drop.
struct Hogs(Vec<Child>);
impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_flow_while_requests_wait_for_rtnl_on_a_busy_host() {
    if !root() {
        return;
    }
    let a = Agent::start();
    let c = Arc::new(a.client().await);
    // The agent's heartbeat comes every second: counted lost after 1.5 s
    // of silence, it fails the requests below.
    c.set_silence_timeout(Duration::from_millis(1500));
    // Four namespaces, each its own netlink connection in the agent.
    let nss: Vec<Netns> = (0..4).map(|_| Netns::new().unwrap()).collect();
    for ns in &nss {
        ip(&[
            "-n", &ns.0, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ]);
    }
    let dev = |ns: &Netns| DevRef {
        netns: Some(ns.0.clone()),
        name: "v0".into(),
    };
    for ns in &nss {
        c.request(Request::SetMtu {
            dev: dev(ns),
            mtu: 1400,
        })
        .await
        .unwrap();
    }
    let _hogs = Hogs(
        (0..2)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    let mut last = String::new();
    for pairs in [1500, 3000, 4500] {
        // A namespace whose teardown holds rtnl_lock for a while.
        let big = Netns::new().unwrap();
        let batch = a.dir.0.join("batch");
        let text: String = (0..pairs)
            .map(|i| format!("link add a{i} type veth peer name b{i}\n"))
            .collect();
        std::fs::write(&batch, text).unwrap();
        ip(&["-n", &big.0, "-batch", &path_str(&batch)]);

        let stop = Arc::new(AtomicBool::new(false));
        let mut load = Vec::new();
        for ns in &nss {
            for features in [false, true] {
                let (c, stop, d) = (c.clone(), stop.clone(), dev(ns));
                load.push(tokio::spawn(async move {
                    let mut mtu = 1400;
                    while !stop.load(Ordering::Relaxed) {
                        mtu = if mtu == 1400 { 1300 } else { 1400 };
                        let req = if features {
                            Request::Features { dev: d.clone() }
                        } else {
                            Request::SetMtu {
                                dev: d.clone(),
                                mtu,
                            }
                        };
                        if let Err(e) = c.request(req).await {
                            panic!("{e}");
                        }
                    }
                }));
            }
        }
        // The kernel's hold of rtnl_lock, seen by `ip link set` in a
        // namespace of the test's own.
        let probe_ns = nss[0].0.clone();
        let stop2 = stop.clone();
        let probe = std::thread::spawn(move || {
            let mut held = Duration::ZERO;
            while !stop2.load(Ordering::Relaxed) {
                let t = Instant::now();
                let o = Command::new("ip")
                    .args(["-n", &probe_ns, "link", "set", "v1", "mtu", "1280"])
                    .output()
                    .unwrap();
                if !o.status.success() {
                    break;
                }
                held = held.max(t.elapsed());
            }
            held
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        drop(big);
        let mut worst = Duration::ZERO;
        while t0.elapsed() < Duration::from_secs(4) {
            let t = Instant::now();
            match c.request(Request::Ping).await {
                Ok(Response::Pong) => {}
                other => panic!("{other:?}\nagent log:\n{}", a.log_text()),
            }
            worst = worst.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for l in load {
            l.await.unwrap();
        }
        let held = probe.join().unwrap();
        assert!(!c.is_lost(), "agent lost: {}", a.log_text());
        last = format!("{pairs} veth pairs: rtnl_lock held up to {held:?}, worst ping {worst:?}");
        println!("{last}");
        if held < Duration::from_millis(500) {
            // Too short to tell a blocked runtime from a busy host: retry
            // with a bigger namespace.
            continue;
        }
        assert!(worst * 2 < held, "pings waited for the kernel: {last}");
        c.close().await.unwrap();
        return;
    }
    println!("SKIP: the kernel never held rtnl_lock long enough to tell ({last})");
}
