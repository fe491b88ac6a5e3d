//! Live tests of the test modules: each module's command line runs with
//! `sh -c` inside network namespaces this test creates (as the agent would
//! run the job), and the module's parser and pass rule judge the output.
//!
//! `packet_assert` and `cpu_stat` need an `lnst-agent` binary that
//! dispatches the `capture` / `cpu-stat` subcommands: the test uses
//! `$LNST_AGENT_BIN`, else `target/debug/lnst-agent`, and says SKIP when
//! that binary does not have them (the agent's own tests cover the programs).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lnst_ctl::modules::Module;
use serde_json::{json, Value};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Two namespaces joined by a veth pair: `veth0` in `a` (192.0.2.1,
/// fd00::1), `veth1` in `b` (192.0.2.2, fd00::2); removed on drop.
struct Pair {
    a: String,
    b: String,
}

impl Pair {
    fn new() -> Pair {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let p = Pair {
            a: format!("lnsttest-{pid}-m{n}a"),
            b: format!("lnsttest-{pid}-m{n}b"),
        };
        let (a, b) = (&p.a, &p.b);
        for cmd in [
            format!("ip netns add {a}"),
            format!("ip netns add {b}"),
            format!("ip -n {a} link add veth0 type veth peer name veth1 netns {b}"),
            format!("ip -n {a} addr add 192.0.2.1/24 dev veth0"),
            format!("ip -n {b} addr add 192.0.2.2/24 dev veth1"),
            format!("ip -n {a} addr add fd00::1/64 dev veth0 nodad"),
            format!("ip -n {b} addr add fd00::2/64 dev veth1 nodad"),
            format!("ip -n {a} link set lo up"),
            format!("ip -n {b} link set lo up"),
            format!("ip -n {a} link set veth0 up"),
            format!("ip -n {b} link set veth1 up"),
        ] {
            sh(&cmd);
        }
        p
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn sh(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().expect("sh");
    assert!(st.success(), "command failed: {cmd}");
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn module(kind: &str, opts: Value) -> Module {
    Module::new(kind, opts.as_object().cloned().expect("map")).expect("valid module")
}

/// Starts `m`'s command in netns `ns` like the agent's job runner would.
fn spawn(ns: &str, m: &Module, agent_bin: Option<&str>) -> Child {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "sh", "-c", &m.command()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(bin) = agent_bin {
        c.env("LNST_AGENT_BIN", bin);
    }
    c.spawn().expect("spawn")
}

/// Runs `m` in the foreground; returns (result or parse error, passed).
fn run(ns: &str, m: &Module) -> (Result<Value, String>, bool) {
    let out = spawn(ns, m, None).wait_with_output().expect("wait");
    let r = m.parse(&String::from_utf8_lossy(&out.stdout), out.status.code());
    let passed = r.as_ref().is_ok_and(|v| m.passed(v));
    (r, passed)
}

fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
}

#[test]
fn ping_v4_and_v6_without_loss() {
    if !is_root() {
        println!("SKIP: needs root for network namespaces");
        return;
    }
    let p = Pair::new();
    for dst in ["192.0.2.2", "fd00::2"] {
        let m = module(
            "ping",
            json!({"dst": dst, "count": 3, "interval": 0.1, "size": 1000}),
        );
        let (r, passed) = run(&p.a, &m);
        let r = r.unwrap();
        assert!(passed, "{r}");
        assert_eq!(
            (r["sent"].as_u64(), r["received"].as_u64()),
            (Some(3), Some(3))
        );
        assert_eq!(r["loss"], 0.0);
        assert!(r["rtt_avg"].as_f64().unwrap() > 0.0);
        assert!(m
            .key_figures(&r)
            .starts_with("loss 0.0% (3/3 received), rtt avg"));
    }
}

#[test]
fn ping_loss_when_the_link_goes_down() {
    if !is_root() {
        println!("SKIP: needs root for network namespaces");
        return;
    }
    let p = Pair::new();
    let m = module(
        "ping",
        json!({"dst": "192.0.2.2", "count": 10, "interval": 0.1, "timeout": 1}),
    );
    let child = spawn(&p.a, &m, None);
    std::thread::sleep(Duration::from_millis(450));
    sh(&format!("ip -n {} link set veth1 down", p.b));
    let out = child.wait_with_output().expect("wait");
    let r = m
        .parse(&String::from_utf8_lossy(&out.stdout), out.status.code())
        .unwrap();
    let loss = r["loss"].as_f64().unwrap();
    assert!(loss > 0.0 && loss < 100.0, "{r}");
    assert!(!m.passed(&r), "max_loss 0 must fail at {loss}%");
    let lenient = module("ping", json!({"dst": "192.0.2.2", "max_loss": 100}));
    assert!(lenient.passed(&r));
}

#[test]
fn ping_unanswered_is_total_loss_without_rtt() {
    if !is_root() {
        println!("SKIP: needs root for network namespaces");
        return;
    }
    let p = Pair::new();
    let m = module(
        "ping",
        json!({"dst": "192.0.2.99", "count": 2, "interval": 0.2, "timeout": 1}),
    );
    let t0 = Instant::now();
    let (r, passed) = run(&p.a, &m);
    let r = r.unwrap();
    assert!(!passed);
    assert_eq!(r["loss"], 100.0);
    assert!(r["rtt_avg"].is_null());
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "timeout option ignored"
    );
}

#[test]
fn iperf_tcp_and_udp_through_a_ready_server() {
    if !is_root() {
        println!("SKIP: needs root for network namespaces");
        return;
    }
    let p = Pair::new();
    let server = module("iperf_server", json!({"bind": "192.0.2.2", "port": 5301}));
    let ready = server.ready().expect("server has a readiness pattern");
    let re = regex::Regex::new(ready.pattern).unwrap();
    let mut srv = spawn(&p.b, &server, None);
    let mut stdout = BufReader::new(srv.stdout.take().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !re.is_match(&seen) {
        assert!(Instant::now() < deadline, "server not ready: {seen:?}");
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("server exited: {seen:?}");
        }
        seen += &line;
    }
    // No sleep: ready means the client can connect right away.
    let tcp = module(
        "iperf_client",
        json!({"server": "192.0.2.2", "port": 5301, "duration": 1}),
    );
    let (r, passed) = run(&p.a, &tcp);
    let r = r.unwrap();
    assert!(passed, "{r}");
    assert!(r["bps"].as_f64().unwrap() > 0.0);
    assert!(r["retransmits"].is_u64());
    assert!(r["cpu_local"].is_number() && r["cpu_remote"].is_number());
    assert!(!r["intervals"].as_array().unwrap().is_empty());

    let udp = module(
        "iperf_client",
        json!({"server": "192.0.2.2", "port": 5301, "duration": 1, "proto": "udp",
               "bitrate": "20M", "parallel": 2, "reverse": true}),
    );
    let (r, passed) = run(&p.a, &udp);
    let r = r.unwrap();
    assert!(passed, "{r}");
    assert_eq!(r["proto"], "udp");
    assert_eq!(r["streams"], 2);
    assert!(r["lost_percent"].is_number());
    let bps = r["bps"].as_f64().unwrap();
    assert!(bps > 5e6 && bps < 60e6, "2 x 20M: {bps}");

    sigterm(&srv);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let st = srv.wait().unwrap();
    let r = server.parse(&(seen + rest.as_str()), st.code()).unwrap();
    assert_eq!(r["connections"], 2, "{r}");

    // Nobody listening: iperf3's own error message.
    let (r, passed) = run(&p.a, &tcp);
    assert!(!passed);
    assert!(r.unwrap_err().contains("Connection refused"));
}

/// An `lnst-agent` that has the helper subcommands, if there is one.
fn agent_bin() -> Option<String> {
    let bin = std::env::var("LNST_AGENT_BIN").ok().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/debug/lnst-agent").to_string()
    });
    let out = Command::new(&bin)
        .args(["cpu-stat", "--interval", "0.01", "--count", "1"])
        .output()
        .ok()?;
    let ok = out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"cpus\"");
    ok.then_some(bin)
}

#[test]
fn packet_assert_and_cpu_stat_through_the_agent_binary() {
    if !is_root() {
        println!("SKIP: needs root for network namespaces");
        return;
    }
    let Some(bin) = agent_bin() else {
        println!("SKIP: no lnst-agent with the capture/cpu-stat subcommands (set LNST_AGENT_BIN)");
        return;
    };
    let p = Pair::new();
    let pa = module(
        "packet_assert",
        json!({"iface": "veth1", "filter": "icmp[icmptype] == icmp-echo", "min": 7, "max": 7}),
    );
    let cpu = module("cpu_stat", json!({"interval": 0.2}));
    let mut cap = spawn(&p.b, &pa, Some(&bin));
    let cs = spawn(&p.b, &cpu, Some(&bin));
    let mut err = BufReader::new(cap.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(
        regex::Regex::new(pa.ready().unwrap().pattern)
            .unwrap()
            .is_match(&line),
        "{line}"
    );
    sh(&format!(
        "ip netns exec {} ping -n -q -c 7 -i 0.05 192.0.2.2 >/dev/null",
        p.a
    ));
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&cap);
    sigterm(&cs);
    for (m, child) in [(&pa, cap), (&cpu, cs)] {
        let out = child.wait_with_output().unwrap();
        let r = m
            .parse(&String::from_utf8_lossy(&out.stdout), out.status.code())
            .unwrap();
        assert!(m.passed(&r), "{}: {r}", m.desc());
    }
}
