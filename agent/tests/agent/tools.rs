//! Live tests of the hidden `lnst-agent` helper programs (`capture`,
//! `cpu-stat`) in network namespaces this test creates and removes.
//!
//! The agent's `main.rs` dispatch is not needed: the test re-executes its
//! own binary, whose `child_entry` test calls [`capture_main`] or
//! [`cpu_stat_main`] when `LNST_TOOLS_CHILD` names one, exactly as the agent
//! binary will. libtest prints its own lines on stdout around ours, so the
//! parsers below pick out the JSON lines.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lnst_agent::tools::{capture_main, cpu_stat_main};

use super::harness::{is_root, unique};

/// Not a test of its own: the body of the re-executed child process.
#[test]
fn child_entry() {
    let Ok(which) = std::env::var("LNST_TOOLS_CHILD") else {
        return;
    };
    let args: Vec<String> = std::env::var("LNST_TOOLS_ARGS")
        .unwrap_or_default()
        .split('\x1f')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let code = match which.as_str() {
        "capture" => capture_main(&args),
        "cpu-stat" => cpu_stat_main(&args),
        other => panic!("unknown tool {other}"),
    };
    std::process::exit(code);
}

/// libtest's name of [`child_entry`] (`agent::tools::child_entry`): this
/// module's path without the crate name, so a move of the file keeps the
/// re-execution working.
fn child_entry_name() -> String {
    let path = module_path!();
    let in_crate = path.split_once("::").map_or(path, |(_, rest)| rest);
    format!("{in_crate}::child_entry")
}

/// Starts the tool `which` with `args`, inside netns `ns` when given.
fn spawn_tool(which: &str, args: &[&str], ns: Option<&str>) -> Child {
    let exe = std::env::current_exe().expect("test exe");
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.args([
        "--exact",
        &child_entry_name(),
        "--nocapture",
        "--test-threads=1",
    ])
    .env("LNST_TOOLS_CHILD", which)
    .env("LNST_TOOLS_ARGS", args.join("\x1f"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd.spawn().expect("spawn tool")
}

/// Two namespaces joined by a veth pair (`veth0` in `a` with 192.0.2.1,
/// `veth1` in `b` with 192.0.2.2), removed on drop.
struct Pair {
    a: String,
    b: String,
}

impl Pair {
    fn new() -> Pair {
        let p = Pair {
            a: unique("a"),
            b: unique("b"),
        };
        for cmd in [
            format!("ip netns add {}", p.a),
            format!("ip netns add {}", p.b),
            format!(
                "ip -n {} link add veth0 type veth peer name veth1 netns {}",
                p.a, p.b
            ),
            format!("ip -n {} addr add 192.0.2.1/24 dev veth0", p.a),
            format!("ip -n {} addr add 192.0.2.2/24 dev veth1", p.b),
            format!("ip -n {} link set veth0 up", p.a),
            format!("ip -n {} link set veth1 up", p.b),
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

/// Reads the child's stderr until a `READY` line (or panics after 10 s).
fn wait_ready(child: &mut Child) -> std::thread::JoinHandle<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.trim() == "READY" {
                let _ = tx.send(());
            } else {
                rest.push_str(&line);
                rest.push('\n');
            }
        }
        rest
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("capture did not print READY within 10 s");
    rest
}

/// Sends SIGTERM and returns (exit code, stdout).
fn stop(child: Child) -> (Option<i32>, String) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
    )
}

/// The lines of `stdout` that hold a JSON object starting with `prefix`,
/// with libtest's `test agent::tools::child_entry ... ` cut off the first one.
fn json_lines<'a>(stdout: &'a str, prefix: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter_map(|l| l.find(prefix).map(|i| &l[i..]))
        .collect()
}

/// The `packets` figure of the JSON line in `stdout`.
fn packets(stdout: &str) -> u64 {
    let line = *json_lines(stdout, "{\"packets\"")
        .first()
        .unwrap_or_else(|| panic!("no result line in {stdout:?}"));
    let n = line
        .trim_start_matches("{\"packets\": ")
        .split(',')
        .next()
        .unwrap_or("");
    n.parse().unwrap_or_else(|_| panic!("bad line {line:?}"))
}

#[test]
fn capture_counts_exactly_the_packets_sent() {
    if !is_root() {
        println!("SKIP: capture needs root for network namespaces");
        return;
    }
    let pair = Pair::new();
    // Started in b, where veth1 sees both the requests and the replies.
    let mut req = spawn_tool(
        "capture",
        &[
            "--iface",
            "veth1",
            "--filter",
            "icmp[icmptype] == icmp-echo",
        ],
        Some(&pair.b),
    );
    let mut all = spawn_tool(
        "capture",
        &["--iface", "veth1", "--filter", "icmp"],
        Some(&pair.b),
    );
    let mut udp = spawn_tool(
        "capture",
        &["--iface", "veth1", "--filter", "udp"],
        Some(&pair.b),
    );
    let _e1 = wait_ready(&mut req);
    let _e2 = wait_ready(&mut all);
    let _e3 = wait_ready(&mut udp);
    sh(&format!(
        "ip netns exec {} ping -n -q -c 7 -i 0.05 192.0.2.2 >/dev/null",
        pair.a
    ));
    let (code, out) = stop(req);
    assert_eq!(code, Some(0), "stdout {out}");
    assert_eq!(packets(&out), 7, "echo requests");
    let (code, out) = stop(all);
    assert_eq!(code, Some(0));
    assert_eq!(packets(&out), 14, "echo requests and replies");
    let (code, out) = stop(udp);
    assert_eq!(code, Some(0));
    assert_eq!(packets(&out), 0, "no udp was sent");
}

#[test]
fn capture_reports_bad_filter_and_interface() {
    if !is_root() {
        println!("SKIP: capture needs root");
        return;
    }
    let pair = Pair::new();
    let child = spawn_tool(
        "capture",
        &["--iface", "veth1", "--filter", "icmp and and"],
        Some(&pair.b),
    );
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("compiling filter") && !err.contains("READY"),
        "{err}"
    );

    let child = spawn_tool("capture", &["--iface", "nosuchdev0"], Some(&pair.b));
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nosuchdev0"), "{err}");
}

/// Checks one cpu-stat line: `all` plus one entry per CPU, all in 0..=100.
fn check_cpu_line(line: &str, ncpu: usize) {
    let entries: Vec<&str> = line.split("{\"cpu\": \"").skip(1).collect();
    assert_eq!(entries.len(), ncpu + 1, "{line}");
    assert!(entries[0].starts_with("all\""), "{line}");
    for e in entries {
        let util: f64 = e
            .split("\"util\": ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no util in {e}"));
        assert!((0.0..=100.0).contains(&util), "{line}");
    }
}

#[test]
fn cpu_stat_prints_plausible_samples() {
    let ncpu = std::fs::read_to_string("/proc/stat")
        .expect("/proc/stat")
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    let t0 = Instant::now();
    let child = spawn_tool("cpu-stat", &["--interval", "0.2", "--count", "3"], None);
    let out = child.wait_with_output().expect("wait");
    let elapsed = t0.elapsed();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines = json_lines(&stdout, "{\"t\"");
    assert_eq!(lines.len(), 3, "{stdout}");
    for l in &lines {
        check_cpu_line(l, ncpu);
    }
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");

    // Without --count it runs until SIGTERM and then exits 0.
    let child = spawn_tool("cpu-stat", &["--interval", "0.1"], None);
    std::thread::sleep(Duration::from_millis(450));
    let (code, stdout) = stop(child);
    assert_eq!(code, Some(0));
    let n = json_lines(&stdout, "{\"t\"").len();
    assert!((2..=6).contains(&n), "{n} samples: {stdout}");
}

/// `lnst-agent capture` runs `lnst-capture` from beside it, the only
/// binary that links libpcap; a copy of the agent without it says what to
/// install.
#[test]
fn agent_runs_capture_from_beside_it_and_links_no_libpcap() {
    let agent = env!("CARGO_BIN_EXE_lnst-agent");
    let capture = env!("CARGO_BIN_EXE_lnst-capture");
    let ldd = |bin: &str| {
        let o = Command::new("ldd").arg(bin).output().expect("ldd");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(!ldd(agent).contains("libpcap"), "{}", ldd(agent));
    assert!(ldd(capture).contains("libpcap"), "{}", ldd(capture));
    // Through the agent, lnst-capture parses the arguments (exit 2).
    let o = Command::new(agent)
        .args(["capture", "--bogus"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("usage: lnst-agent capture"), "{err}");
    // An agent installed alone.
    let dir = std::env::temp_dir().join(unique("lnst-capture-missing"));
    std::fs::create_dir_all(&dir).unwrap();
    let lone = dir.join("lnst-agent");
    std::fs::copy(agent, &lone).unwrap();
    let o = Command::new(&lone)
        .args(["capture", "--iface", "lo"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot run {}",
            dir.join("lnst-capture").display()
        )) && err.contains("Setting up an agent"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
