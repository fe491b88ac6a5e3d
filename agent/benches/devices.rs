//! `devices()` from the notification-fed cache against the old way (a link
//! dump, an address dump and a driver ioctl per device), and the read-back
//! of `set_mtu`, in a fresh namespace with 10 veth pairs carrying an IPv4
//! and an IPv6 address each (21 devices). Prints medians. Needs root.

use std::process::Command;
use std::time::{Duration, Instant};

use lnst_agent::net::{self, Nets, NoRecord};
use lnst_common::device::DevRef;

const CALLS: usize = 300;

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("spawn ip");
    assert!(st.success(), "ip {args:?}");
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: needs root");
        return;
    }
    let ns = format!("lnstbench-{}-dev", std::process::id());
    ip(&["netns", "add", &ns]);
    for i in 0..10 {
        let (a, b) = (format!("va{i}"), format!("vb{i}"));
        ip(&[
            "-n", &ns, "link", "add", &a, "type", "veth", "peer", "name", &b,
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.9.{i}.1/24"),
            "dev",
            &a,
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("fd09::{i}:1/64"),
            "dev",
            &a,
            "nodad",
        ]);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let nets = Nets::new("lnstbench-".into());
    rt.block_on(async {
        let n = Some(ns.as_str());
        assert_eq!(net::devices(&nets, n).await.expect("devices").len(), 21);
        let mut cached = Vec::new();
        let mut dumped = Vec::new();
        for _ in 0..CALLS {
            let t = Instant::now();
            net::devices(&nets, n).await.expect("devices");
            cached.push(t.elapsed());
            let t = Instant::now();
            net::links::devices_uncached(&nets, n)
                .await
                .expect("devices");
            dumped.push(t.elapsed());
        }
        let dev = DevRef {
            netns: Some(ns.clone()),
            name: "va0".into(),
        };
        let mut mtu = Vec::new();
        for i in 0..CALLS {
            let t = Instant::now();
            net::set_mtu(&nets, &NoRecord, &dev, 1400 + (i % 2) as u32)
                .await
                .expect("set_mtu");
            mtu.push(t.elapsed());
        }
        let (c, d) = (median(cached), median(dumped));
        println!(
            "devices() of 21 devices: cache {c:.0} µs (1 RTM_GETSTATS dump, 0 ioctls), \
             dump {d:.0} µs (link + address dumps, 21 driver ioctls): {:.1}x",
            d / c
        );
        println!(
            "set_mtu with read-back from the cache: {:.0} µs",
            median(mtu)
        );
    });
    ip(&["netns", "del", &ns]);
}
