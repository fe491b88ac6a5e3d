//! VM lab benchmarks, each against a baseline measured in the same run
//! (`cargo bench -p lnst-ctl --bench vmlab`; needs root, qemu, and the
//! release `lnst-agent`: `cargo build --release --bins` first):
//!
//! - a 2-host (and a 4-host) lab built with agents connected, against one
//!   bare qemu guest of the same kernel reaching its `/init` (a busybox
//!   initramfs that prints a line and powers off), interleaved; and,
//!   for comparison, the same bare guest started as the lab starts qemu
//!   (without transparent huge pages);
//! - each guest's RSS and idle CPU with a connected session;
//! - TCP between two guests over the lab's taps and bridge (iperf3 through
//!   `perf`), next to the same over a veth pair between two namespaces;
//! - HelloWorld on the VM lab, boot included, against the netns lab.

#[path = "../tests/support/results_store.rs"]
mod results_store;
mod support;
use results_store::isolate_results_store;

use support::{median, TmpDir};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lnst_ctl::lab::vm::{guest, kernel, VmLab};
use lnst_ctl::lab::{Lab, LabKind, LabOptions};
use lnst_ctl::mapper::{HostReq, NicReq, Requirements};

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn requirements(n: usize, nics: usize) -> Requirements {
    Requirements {
        hosts: (0..n)
            .map(|i| HostReq {
                name: format!("h{i}"),
                params: BTreeMap::new(),
                nics: (0..nics)
                    .map(|j| NicReq {
                        name: format!("eth{j}"),
                        net: Some(format!("net{j}")),
                        attrs: BTreeMap::new(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// One bare guest: the same kernel image, an initramfs of busybox and an
/// `/init` that prints a marker; spawn to marker, and qemu's CPU time
/// (all threads, in clock ticks) at that moment.
fn bare_guest(image: &Path, dir: &Path, thp: bool) -> (Duration, u64) {
    let initrd = dir.join("bare.cpio");
    let init = "#!/bin/busybox sh\necho LNST-BARE-INIT\necho o > /proc/sysrq-trigger\n/bin/busybox sleep 30\n";
    let files = vec![
        ("bin".to_string(), 0o040755, Vec::new()),
        (
            "bin/busybox".to_string(),
            0o100755,
            guest::static_busybox().expect("busybox"),
        ),
        ("init".to_string(), 0o100755, init.as_bytes().to_vec()),
    ];
    guest::write_archive(&initrd, &files).expect("bare initramfs");
    let t = Instant::now();
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-accel",
        "tcg,tb-size=64",
        "-M",
        "pc",
        "-m",
        "256",
        "-smp",
        "1",
    ])
    .args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
    .args(["-serial", "stdio", "-kernel"])
    .arg(image)
    .arg("-initrd")
    .arg(&initrd)
    .args([
        "-append",
        "console=ttyS0 quiet loglevel=3 panic=-1 tsc=reliable no_timer_check",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if !thp {
        // SAFETY: one prctl between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
                Ok(())
            });
        }
    }
    let mut c = c.spawn().expect("qemu");
    let out = c.stdout.take().expect("stdout");
    let mut seen = None;
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        if line.contains("LNST-BARE-INIT") {
            seen = Some((t.elapsed(), cpu_ticks(c.id())));
            break;
        }
    }
    let _ = c.kill();
    let _ = c.wait();
    seen.expect("the bare guest reached its init")
}

fn opts(agent: &Path, dir: &Path) -> LabOptions {
    LabOptions {
        kind: LabKind::Vm,
        agent_bin: agent.to_path_buf(),
        kernel: None,
        accel: Some("tcg".into()),
        run_dir: dir.to_path_buf(),
        cancel: lnst_ctl::recipe::Cancel::new(),
    }
}

/// Builds a lab of `n` hosts and connects to its agents; returns the
/// time and the lab (still up) with its session.
fn lab_up(
    rt: &tokio::runtime::Runtime,
    agent: &Path,
    dir: &Path,
    n: usize,
    nics: usize,
) -> (Duration, VmLab, lnst_ctl::session::Session) {
    let t = Instant::now();
    let lab = VmLab::build(&requirements(n, nics), &opts(agent, dir)).expect("vm lab builds");
    let s = rt
        .block_on(lnst_ctl::session::Session::connect(lab.addrs()))
        .expect("agents connect");
    (t.elapsed(), lab, s)
}

fn close(rt: &tokio::runtime::Runtime, mut lab: VmLab, s: lnst_ctl::session::Session) {
    rt.block_on(async {
        s.end().await;
        s.close_waiting(false).await;
    });
    let errs = lab.teardown();
    assert!(errs.is_empty(), "{errs:?}");
}

fn proc_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest: Vec<&str> = s
        .rsplit_once(')')
        .map(|x| x.1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    rest.get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + rest
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
}

/// qemu's CPU time per guest of a lab that is up (clock ticks, mean).
fn cpu_per_guest(lab: &VmLab) -> u64 {
    let pids = lab.qemu_pids();
    pids.iter().map(|&p| cpu_ticks(p)).sum::<u64>() / pids.len().max(1) as u64
}

fn bench_bring_up(rt: &tokio::runtime::Runtime, agent: &Path, image: &Path) {
    let dir = TmpDir::new("up");
    let (mut bare, mut two, mut four) = (Vec::new(), Vec::new(), Vec::new());
    let (mut bare_cpu, mut guest_cpu, mut bare_nothp) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let (d, cpu) = bare_guest(image, &dir.0, true);
        bare.push(d);
        bare_cpu.push(cpu);
        bare_nothp.push(bare_guest(image, &dir.0, false).0);
        let (d, lab, s) = lab_up(rt, agent, &dir.0, 2, 1);
        two.push(d);
        guest_cpu.push(cpu_per_guest(&lab));
        close(rt, lab, s);
        let (d, lab, s) = lab_up(rt, agent, &dir.0, 4, 1);
        four.push(d);
        guest_cpu.push(cpu_per_guest(&lab));
        close(rt, lab, s);
    }
    let (b, t2, t4, bn) = (median(bare), median(two), median(four), median(bare_nothp));
    println!(
        "vmlab    bare guest to /init: {} | 2-host lab + agents connected: {} ({:.2}x; goal <= 1.3x) | 4 hosts: {} ({:.2}x; goal <= 2.5x)",
        secs(b),
        secs(t2),
        t2.as_secs_f64() / b.as_secs_f64(),
        secs(t4),
        t4.as_secs_f64() / b.as_secs_f64()
    );
    // The lab runs qemu without transparent huge pages (qemu.rs): against a
    // bare guest started the same way, for comparison.
    println!(
        "vmlab    bare guest to /init without THP, as the lab starts qemu: {} | 2-host {:.2}x | 4-host {:.2}x",
        secs(bn),
        t2.as_secs_f64() / bn.as_secs_f64(),
        t4.as_secs_f64() / bn.as_secs_f64()
    );
    // The same in qemu's CPU time, which the machine's load moves far
    // less than wall time: with N guests on C cores a lab cannot be up
    // before about max(1, N/C) times one guest's CPU.
    let tick = 1.0
        / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
    let median_ticks = |mut v: Vec<u64>| {
        v.sort();
        v[v.len() / 2] as f64 * tick
    };
    let (bc, gc) = (median_ticks(bare_cpu), median_ticks(guest_cpu));
    println!(
        "vmlab    qemu CPU: bare guest to /init {bc:.2} s | a lab guest to its agent connected {gc:.2} s ({:.2}x)",
        gc / bc
    );
}

fn bench_idle(rt: &tokio::runtime::Runtime, agent: &Path) {
    let dir = TmpDir::new("idle");
    let (_, lab, s) = lab_up(rt, agent, &dir.0, 2, 2);
    std::thread::sleep(Duration::from_secs(2));
    let pids = lab.qemu_pids();
    let t0: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    let wall = Duration::from_secs(5);
    std::thread::sleep(wall);
    let hz = 100.0; // USER_HZ on Linux x86_64
    for (i, p) in pids.iter().enumerate() {
        let cpu = (cpu_ticks(*p) - t0[i]) as f64 / hz / wall.as_secs_f64() * 100.0;
        println!(
            "vmlab    guest h{i} (2 NICs, session connected, idle): RSS {:.0} MiB (goal <= 300), CPU {cpu:.1}% of a core (goal <= 5%)",
            proc_field(*p, "VmRSS:") as f64 / 1024.0
        );
    }
    close(rt, lab, s);
}

fn run_ctl(
    recipe: &Path,
    agent: &Path,
    out: &Path,
    extra: &[&str],
) -> (Duration, serde_json::Value) {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_lnst-ctl"))
        .arg("run")
        .arg(recipe)
        .arg("--json")
        .arg("--out")
        .arg(out)
        .arg("--agent-bin")
        .arg(agent)
        .args(extra)
        .output()
        .expect("lnst-ctl");
    let d = t.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (d, serde_json::from_slice(&o.stdout).expect("summary JSON"))
}

fn perf_mean(v: &serde_json::Value) -> f64 {
    v["matches"][0]["results"]
        .as_array()
        .and_then(|rs| rs.iter().find_map(|r| r["data"]["mean"].as_f64()))
        .unwrap_or(0.0)
}

fn bench_tcp_and_hello(agent: &Path) {
    let dir = TmpDir::new("runs");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let perf = root.join("recipes/perf_demo.rhai");
    let (_, vm) = run_ctl(
        &perf,
        agent,
        &dir.0,
        &["--lab", "vm", "--", "duration=5", "runs=1"],
    );
    let (_, ns) = run_ctl(&perf, agent, &dir.0, &["--", "duration=5", "runs=1"]);
    let (g_vm, g_ns) = (perf_mean(&vm) / 1e9, perf_mean(&ns) / 1e9);
    println!(
        "vmlab    TCP between two guests: {g_vm:.2} Gbit/s (goal >= 2) | the same between two namespaces on a veth: {g_ns:.2} Gbit/s ({:.2}x)",
        g_vm / g_ns
    );
    let hello = root.join("recipes/hello_world.rhai");
    let (mut vms, mut nss) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        vms.push(run_ctl(&hello, agent, &dir.0, &["--lab", "vm"]).0);
        nss.push(run_ctl(&hello, agent, &dir.0, &[]).0);
    }
    let (v, n) = (median(vms), median(nss));
    println!(
        "vmlab    HelloWorld, lab included: VM lab {} vs netns lab {} ({:.1}x; LNST on namespaces: 7.74 s)",
        secs(v),
        secs(n),
        v.as_secs_f64() / n.as_secs_f64()
    );
}

fn main() {
    isolate_results_store();
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: VM lab benchmarks need root");
        return;
    }
    // LNST_BENCH_AGENT: the agent the guests run (a release agent with a
    // debug-built bench: `cargo build --release -p lnst-agent`).
    let agent = std::env::var_os("LNST_BENCH_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_BIN_EXE_lnst-ctl")).with_file_name("lnst-agent"));
    if !agent.exists() {
        println!(
            "SKIP: VM lab benchmarks need {} (cargo build --release --bins)",
            agent.display()
        );
        return;
    }
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        println!(
            "SKIP: VM lab benchmarks need qemu-system-x86_64 (apt-get install qemu-system-x86)"
        );
        return;
    }
    let k = kernel::resolve(None, &kernel::cache_root(), &mut |s: &str| eprintln!("{s}"))
        .expect("a kernel for the VM lab");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    bench_bring_up(&rt, &agent, &k.image);
    bench_idle(&rt, &agent);
    bench_tcp_and_hello(&agent);
}
