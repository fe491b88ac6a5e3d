//! Issue 10's chaos test: a recipe that changes everything (the MTU,
//! address and features of a pool NIC, a route, a sysctl, a file, a
//! created bridge, a namespace with a veth, background jobs including a
//! detached one) is interrupted at a random moment by kill -9 of
//! `lnst-ctl`, SIGINT, SIGTERM, or kill -9 of the agent (then restarted,
//! replaying its journal); after each try the host, seen from outside, is
//! exactly as before. The agent runs in a namespace of the test's own, so
//! its "host" is that namespace. `LNST_CHAOS_TRIES` (default 20) tries per
//! kind; `LNST_CHAOS_SEED` repeats a sequence.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ctl, lab_ready, Tmp};

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct AgentProc {
    child: Option<Child>,
    sock: PathBuf,
}
impl AgentProc {
    fn start(agent: &Path, ns: &str, sock: &Path, state: &Path, log: &Path) -> AgentProc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(agent)
            .arg("--unix")
            .arg(sock)
            .arg("--state-dir")
            .arg(state)
            .arg("-v")
            .env("LNST_HEARTBEAT_MS", "200,1000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("READY"), "agent: {line}");
        AgentProc {
            child: Some(child),
            sock: sock.to_path_buf(),
        }
    }
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

/// Waits until the agent takes a new controller (its teardown is over).
fn wait_free(sock: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = lnst_ctl::client::AgentAddr::Unix(sock.to_path_buf());
    let t = Instant::now();
    rt.block_on(async {
        loop {
            match lnst_ctl::client::AgentClient::connect("h", &addr).await {
                Ok(c) => {
                    let _ = c.close().await;
                    return;
                }
                Err(e) if t.elapsed() < Duration::from_secs(15) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("agent not free after 15 s: {e}"),
            }
        }
    });
}

/// The namespace as `ip -j`, `/proc` and the file system show it.
fn snapshot(ns: &str, file: &Path, needle: &str, mark: &str) -> String {
    let links: serde_json::Value =
        serde_json::from_str(&sh(&format!("ip -j -n {ns} link show"))).unwrap_or_default();
    let mut links: Vec<String> = links
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            format!(
                "{} mtu {} master {} mac {} flags {}",
                l["ifname"], l["mtu"], l["master"], l["address"], l["flags"]
            )
        })
        .collect();
    links.sort();
    let addrs = sh(&format!(
        "ip -n {ns} -o addr show | awk '{{print $2, $3, $4}}' | sort"
    ));
    let routes = sh(&format!("ip -n {ns} route show table all | sort"));
    let sysctl = sh(&format!(
        "ip netns exec {ns} cat /proc/sys/net/ipv4/ip_forward"
    ));
    let gro = sh(&format!(
        "ip netns exec {ns} ethtool -k o0 | grep generic-receive-offload"
    ));
    let netns: Vec<String> = sh("ip netns list")
        .lines()
        .filter(|l| l.contains(mark))
        .map(str::to_string)
        .collect();
    let content = std::fs::read_to_string(file).unwrap_or_else(|e| format!("<{e}>"));
    let procs: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let c = std::fs::read(e.path().join("cmdline")).ok()?;
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            c.contains(needle).then_some(c)
        })
        .collect();
    format!(
        "links {links:#?}\naddrs {addrs}\nroutes {routes}\nip_forward {sysctl}\n{gro}\nnetns {netns:?}\nfile {content:?}\nprocs {procs:?}\n"
    )
}

/// A small deterministic generator for the interruption delays.
struct Lcg(u64);
impl Lcg {
    fn next_ms(&mut self, max: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % max
    }
}

#[test]
fn chaos_every_interruption_leaves_the_host_as_it_was() {
    let Some(agent) = lab_ready("chaos_every_interruption_leaves_the_host_as_it_was") else {
        return;
    };
    if Command::new("ethtool").arg("--version").output().is_err() {
        println!("SKIP chaos: no ethtool");
        return;
    }
    let tries: usize = std::env::var("LNST_CHAOS_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("LNST_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64);
    println!("chaos: {tries} tries per kind, LNST_CHAOS_SEED={seed}");
    let mut rng = Lcg(seed);
    let t = Tmp::new();
    let pid = std::process::id();
    let ns = Ns(format!("lnsttest-{pid}-chaos"));
    sh(&format!(
        "ip netns add {0} && ip -n {0} link add o0 type veth peer name o1 && ip -n {0} link set lo up",
        ns.0
    ));
    let file = t.0.join("f");
    std::fs::write(&file, "orig").unwrap();
    let mark = format!("-c{pid}");
    let needle = format!("600.{pid}9");
    let sock = t.0.join("a.sock");
    let state = t.0.join("state");
    let log = t.0.join("agent.log");
    let mut a = AgentProc::start(&agent, &ns.0, &sock, &state, &log);
    t.write(
        "pool/box.toml",
        &format!(
            "address = \"unix:{}\"\n[[nic]]\nname = \"o0\"\n",
            sock.display()
        ),
    );
    let recipe = t.write(
        "chaos.rhai",
        &format!(
            r#"let h = host("h");
h.nic("x");
fn test(m) {{
    let h = m.h;
    h.x.mtu = 1400;
    h.x.ip_add("10.77.0.1/24");
    h.x.set_features(#{{ gro: false }});
    h.sysctl("net.ipv4.ip_forward", "1");
    h.route_add(#{{ dst: "10.78.0.0/16", via: "10.77.0.254" }});
    h.write("{file}", "changed");
    h.br0 = bridge();
    let n = h.netns("c{pid}");
    h.v0 = veth(#{{ peer: "v1", peer_netns: n }});
    h.run("setsid sleep {needle} &");
    h.run("sleep {needle}", #{{ bg: true }});
    h.run("sleep 2");
}}
"#,
            file = file.display()
        ),
    );
    let before = snapshot(&ns.0, &file, &needle, &mark);
    assert!(before.contains("o0") && before.contains("orig"), "{before}");
    let started = Instant::now();
    for kind in ["ctl-kill9", "ctl-sigint", "ctl-sigterm", "agent-kill9"] {
        for i in 0..tries {
            let delay = rng.next_ms(1200);
            let mut c = Command::new(ctl())
                .arg("run")
                .arg(&recipe)
                .arg("--pool")
                .arg(t.0.join("pool"))
                .arg("--out")
                .arg(t.0.join("runs"))
                .env("LNST_HEARTBEAT_MS", "200,1000")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay));
            match kind {
                "ctl-kill9" => unsafe {
                    libc::kill(c.id() as i32, libc::SIGKILL);
                },
                "ctl-sigint" => unsafe {
                    libc::kill(c.id() as i32, libc::SIGINT);
                },
                "ctl-sigterm" => unsafe {
                    libc::kill(c.id() as i32, libc::SIGTERM);
                },
                _ => a.kill9(),
            }
            let _ = c.wait();
            if kind == "agent-kill9" {
                a = AgentProc::start(&agent, &ns.0, &sock, &state, &log);
            }
            wait_free(&a.sock);
            let now = snapshot(&ns.0, &file, &needle, &mark);
            if now != before {
                // A detached job may need a moment to be reaped.
                std::thread::sleep(Duration::from_millis(500));
            }
            let now = snapshot(&ns.0, &file, &needle, &mark);
            let diff: Vec<String> = now
                .lines()
                .zip(before.lines())
                .filter(|(a, b)| a != b)
                .map(|(a, b)| format!("now:    {a}\nbefore: {b}"))
                .collect();
            assert!(
                now == before,
                "{kind} try {i} after {delay} ms (LNST_CHAOS_SEED={seed}):\n{}\nagent log:\n{}",
                diff.join("\n"),
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    println!(
        "chaos: {} tries in {:.1} s",
        4 * tries,
        started.elapsed().as_secs_f64()
    );
}
